"""Does the agent learn? Train on a real set's train/ for a time budget, score on val/.

Trains ColorRL with ``colorrl train``'s own code path (same config handling, same generator) from
a recipe of ``benchmarks/recipes`` (or a config file), logs every update to
runs/learn-NAME/log.jsonl, then scores the best checkpoint (by SBD + AP50 on the selection share
carved from train/, where the minimum object size is chosen too) on every val/ image at full size
with the project's metrics. Plots the learning curve (reward parts and validation scores against
time) and prints the result as a Markdown block (machine, command, date, tables).

    python -m benchmarks.learn --data DATA/cvppp_a1 --recipe cvppp --minutes 60 --seed 0
    python -m benchmarks.learn --data DATA/cvppp_a1 --recipe cvppp_small_split3 --quick
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._report import RUNS, add_run_arguments, header, prepare_run, run_name
from .plot_curve import plot, read_log

SUMMARY_2D = ("sbd", "abs_dic", "ap50", "map", "aji")
SUMMARY_3D = ("sbd", "abs_dic", "ap50", "voi_split", "voi_merge", "arand")


def summary(config) -> tuple[str, ...]:
    """The metrics the paper reports for such data: CVPPP/nuclei in 2D, EM-style in 3D."""
    return SUMMARY_3D if config.ndim == 3 else SUMMARY_2D


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    add_run_arguments(parser, minutes=60.0, quick_help="3 minutes, 4 validation images")
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--score-only", action="store_true",
                        help="no training: score runs/learn-NAME/model(.best).pt and plot its "
                        "log.jsonl (e.g. a run made with colorrl train --out/--log there)")
    parser.add_argument("--curve", type=Path, default=None,
                        help="where to draw the learning curve (default runs/learn-NAME/curve.png)")
    args = parser.parse_args()

    from napari_colorrl.core.training.trainer import train

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to measure")
        return 1
    name = run_name(args)
    run_dir = RUNS / f"learn-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path, out = run_dir / "log.jsonl", run_dir / "model.pt"
    if args.resume is None and not args.score_only:
        log_path.write_text("")
    setup = prepare_run(args, run_dir, minutes=3.0 if args.quick else args.minutes,
                        changes={"train": {"val_max_images": 4}} if args.quick else None,
                        resume=args.resume)
    config = setup.config
    if not args.score_only:
        train_logged(train(config, setup.train, setup.val, out=out, resume=args.resume), log_path,
                     name)

    scored, segmenter, mean, per_image, seconds = score_run(out, setup,
                                                             choose_size=args.score_only)
    rows = read_log(log_path)
    (run_dir / "scores.json").write_text(json.dumps({"mean": mean, "images": per_image},
                                                    indent=2))
    curve = plot(rows, args.curve or run_dir / "curve.png", f"ColorRL on {args.data.name}")
    print()
    print(_section(name, args, setup, rows, mean, scored, segmenter.config, seconds, curve))
    return 0


def score_run(out: Path, setup, *, choose_size: bool = False):
    """Score a run's best checkpoint (else its last) on every val/ image (``setup.scored``) at
    full size.

    choose_size: choose the minimum object size (and, with ``train.tune_depth``, the depth) on the
    selection share (``setup.val``) first, as training does at each validation (for checkpoints
    whose stored choices were fixed). Returns
    (scored checkpoint path, segmenter, mean metrics, per-image metrics, seconds per image)."""
    from tqdm import tqdm

    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    best = out.with_suffix(".best.pt")
    scored = best if best.is_file() else out
    segmenter = Segmenter.load(scored, device=setup.config.train.device)
    if choose_size:
        from napari_colorrl.core.training.selection import validate

        chosen = validate(segmenter.model, segmenter.config, setup.val, segmenter.device,
                          choose_min_size=True, scale=segmenter.scale,
                          choose_depth=segmenter.config.train.tune_depth)
        segmenter.config = segmenter.config.replace(
            min_size=int(chosen["min_size"]), depth=int(chosen.get("depth", 0)))
    start = time.perf_counter()
    per_image = {}
    for sample in tqdm(setup.scored, desc="scoring val/", unit="image"):
        per_image[sample.name] = evaluate(segmenter.segment(sample.image).instances,
                                          sample.labels)
    seconds = (time.perf_counter() - start) / max(1, len(setup.scored))
    return scored, segmenter, mean_metrics(list(per_image.values())), per_image, seconds


def train_logged(reports, log_path: Path, name: str) -> None:
    """Drive the training generator with a progress bar, one JSON line per update."""
    from dataclasses import asdict

    from tqdm import tqdm

    bar = tqdm(total=1000, desc=f"training {name}", unit="‰")
    last_val = None
    with log_path.open("a") as log:
        for report in reports:
            log.write(json.dumps(asdict(report)) + "\n")
            log.flush()
            if report.validation:
                last_val = report.validation
            post = f"update {report.update} reward {report.reward:+.3f}"
            if last_val:
                post += f" val SBD {last_val['sbd']:.3f} |DiC| {last_val['abs_dic']:.1f}"
                post += f" AP50 {last_val['ap50']:.3f}"
            bar.set_postfix_str(post)
            bar.n = int(report.progress * 1000)
            bar.refresh()
    bar.close()


def _section(name, args, setup, rows, mean, scored, config, seconds, curve) -> str:
    vals = [(r["elapsed"] / 60, r["update"], r["validation"]) for r in rows if r["validation"]]
    last = rows[-1]
    lines = [
        *header(f"Learning: {name}"),
        f"- recipe: `{args.recipe or args.config}`",
        f"- data: `{args.data.name}`, {len(setup.train)} training, {len(setup.val)} "
        f"selection (carved from train/) and {len(setup.scored)} scored "
        f"validation images; network input {'x'.join(map(str, config.input_size))} "
        f"({config.input_mode}), scored at full size; T = {config.steps}; network "
        f"{list(config.network.features)}; batch {config.train.batch_size}",
        f"- training: {last['update']} updates, {last['episodes']} episodes in "
        f"{last['elapsed'] / 60:.1f} min ({last['elapsed'] / max(1, last['update']):.2f} s per "
        f"update; rewards {100 * _mean(rows, 'reward_share'):.1f}%, environment "
        f"{100 * _mean(rows, 'environment_share'):.1f}%, network "
        f"{100 * _mean(rows, 'network_share'):.1f}% of an update)",
        f"- scored model: `{scored.name}`, minimum object size {config.min_size} px, depth "
        f"{config.passes} of {config.steps} steps (both chosen on the selection share); inference "
        f"{1000 * seconds:.0f} ms per image including post-processing",
        "",
        "| on all validation images | " + " | ".join(summary(config)) + " |",
        "|---|" + "---|" * len(summary(config)),
        "| ColorRL (this project) | " + " | ".join(f"{mean[k]:.3f}" for k in summary(config))
        + " |",
        "",
        f"Validation during training ({min(config.train.val_max_images, len(setup.val))} of the "
        f"{len(setup.val)} images of the selection share carved from train/, minimum size and "
        f"depth chosen at each point):",
        "",
    ]
    lines += ["| minutes | update | SBD | abs DiC | AP50 |", "|---|---|---|---|---|"]
    lines += [f"| {m:.1f} | {u} | {v['sbd']:.3f} | {v['abs_dic']:.2f} | {v['ap50']:.3f} |"
              for m, u, v in vals]
    lines += ["", f"Learning curve: `{curve}`", ""]
    return "\n".join(lines)


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / max(1, len(rows))


if __name__ == "__main__":
    raise SystemExit(main())
