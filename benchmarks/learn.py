"""Does the agent learn? Train on a real set's train/ for a time budget, score on val/.

Trains ColorRL with ``colorrl train``'s own code path (same config handling, same generator),
logs every update, then scores the best checkpoint (by validation SBD + AP50, with the minimum
object size chosen on validation) on every validation image at full size with the project's
metrics. Prints the figures, plots the learning curve (reward parts and validation scores against
time) to docs/images/learning-NAME.png and writes a section of docs/benchmarks.md.

    python benchmarks/learn.py --data ../shared/data/cvppp_a1 \\
        --config benchmarks/configs/cvppp_small_split2.json --steps 6 --minutes 60 \\
        --name cvppp-small-split2
    python benchmarks/learn.py --data ../shared/data/cvppp_a1 \\
        --config benchmarks/configs/cvppp_fast.json --quick --name cvppp-quick --no-doc
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, add_run_arguments, command, machine, stamp, write_section  # noqa: E402

SUMMARY_2D = ("sbd", "abs_dic", "ap50", "map", "aji")
SUMMARY_3D = ("sbd", "abs_dic", "ap50", "voi_split", "voi_merge", "arand")


def summary(config) -> tuple[str, ...]:
    """The metrics the paper reports for such data: CVPPP/nuclei in 2D, EM-style in 3D."""
    return SUMMARY_3D if config.ndim == 3 else SUMMARY_2D


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, minutes=60.0, config_help="JSON config of the run",
                      quick_help="3 minutes, 4 validation images")
    parser.add_argument("--resume", type=Path, default=None)
    parser.add_argument("--note", default="", help="a line added to the docs section (e.g. "
                        "the training command of a --score-only run)")
    parser.add_argument("--score-only", action="store_true",
                        help="no training: score runs/learn-NAME/model(.best).pt and plot its "
                        "log.jsonl (e.g. a run made with colorrl train --out/--log there)")
    args = parser.parse_args()

    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
    from napari_colorrl.core.training.trainer import train

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to measure")
        return 1
    name = args.name or args.data.name
    minutes = 3.0 if args.quick else args.minutes
    overrides = {"train": {"val_max_images": 4}} if args.quick else {}
    run_dir = ROOT / "runs" / f"learn-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path, out = run_dir / "log.jsonl", run_dir / "model.pt"
    if args.resume is None and not args.score_only:
        log_path.write_text("")
    setup = prepare_training(TrainingRequest(
        data=args.data, config_file=args.config, minutes=minutes, steps=args.steps,
        seed=args.seed, overrides=overrides, resume=args.resume))
    for line in setup.messages:
        print(line)
    config = setup.config
    if not args.score_only:
        train_logged(train(config, setup.train, setup.val, out=out, resume=args.resume), log_path,
               name)

    scored, segmenter, mean, per_image, seconds = score_run(out, setup,
                                                             choose_size=args.score_only)
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    print(f"\n{name}: {len(setup.val)} validation images, model {scored.name} "
          f"(min_size {segmenter.config.min_size}), {rows[-1]['update']} updates, "
          f"{rows[-1]['episodes']} episodes in {rows[-1]['elapsed'] / 60:.1f} min")
    print("  " + ", ".join(f"{k} {mean[k]:.3f}" for k in summary(config)))
    (run_dir / "scores.json").write_text(json.dumps({"mean": mean, "images": per_image},
                                                    indent=2))
    if args.no_doc:
        return 0

    curve = ROOT / "docs" / "images" / f"learning-{name}.png"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plot_curve.py"), str(log_path),
                    "--out", str(curve), "--title", f"ColorRL on {args.data.name}"], check=True)
    write_section(f"learning-{name}", _section(name, args, setup, rows, mean, scored,
                                               segmenter.config, seconds, curve))
    return 0


def score_run(out: Path, setup, *, choose_size: bool = False):
    """Score a run's best checkpoint (else its last) on every validation image at full size.

    choose_size: choose the minimum object size on validation first, as training does at each
    validation (for checkpoints whose stored size was fixed). Returns (scored checkpoint path,
    segmenter, mean metrics, per-image metrics, seconds per image)."""
    from tqdm import tqdm

    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    best = out.with_suffix(".best.pt")
    scored = best if best.is_file() else out
    segmenter = Segmenter.load(scored, device=setup.config.train.device)
    if choose_size:
        from napari_colorrl.core.training.selection import validate

        chosen = validate(segmenter.model, segmenter.config, setup.val, segmenter.device,
                          choose_min_size=True)
        segmenter.config = segmenter.config.replace(min_size=int(chosen["min_size"]))
    start = time.perf_counter()
    per_image = {}
    for sample in tqdm(setup.val, desc="scoring val/", unit="image"):
        per_image[sample.name] = evaluate(segmenter.segment(sample.image).instances,
                                          sample.labels)
    seconds = (time.perf_counter() - start) / max(1, len(setup.val))
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
        f"## Learning: {name}",
        "",
        f"- machine: {machine()}",
        f"- command: `{command()}`",
        f"- date: {stamp()}",
        *([f"- note: {args.note}"] if args.note else []),
        f"- data: `{args.data.name}`, {len(setup.train)} training and {len(setup.val)} "
        f"validation images; network input {'x'.join(map(str, config.input_size))} "
        f"({config.input_mode}), scored at full size; T = {config.steps}; network "
        f"{list(config.network.features)}; batch {config.train.batch_size}",
        f"- training: {last['update']} updates, {last['episodes']} episodes in "
        f"{last['elapsed'] / 60:.1f} min ({last['elapsed'] / max(1, last['update']):.2f} s per "
        f"update; rewards {100 * _mean(rows, 'reward_share'):.1f}%, environment "
        f"{100 * _mean(rows, 'environment_share'):.1f}%, network "
        f"{100 * _mean(rows, 'network_share'):.1f}% of an update)",
        f"- scored model: `{scored.name}`, minimum object size {config.min_size} px (chosen on "
        f"validation); inference {1000 * seconds:.0f} ms per image including post-processing",
        "",
        "| on all validation images | " + " | ".join(summary(config)) + " |",
        "|---|" + "---|" * len(summary(config)),
        "| ColorRL (this project) | " + " | ".join(f"{mean[k]:.3f}" for k in summary(config))
        + " |",
        "",
        "Validation during training (first images of val/, size chosen at each point):",
        "",
    ]
    if vals and "average_sbd" in vals[0][2]:
        # Weight averaging (train.weight_average): both sets of weights on the same images.
        lines += [
            "| minutes | update | SBD training / average | abs DiC training / average "
            "| AP50 training / average |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {m:.1f} | {u} | {v['training_sbd']:.3f} / {v['average_sbd']:.3f} "
                  f"| {v['training_abs_dic']:.2f} / {v['average_abs_dic']:.2f} "
                  f"| {v['training_ap50']:.3f} / {v['average_ap50']:.3f} |"
                  for m, u, v in vals]
        lines += ["", _average_gain(vals)]
    else:
        lines += ["| minutes | update | SBD | abs DiC | AP50 |", "|---|---|---|---|---|"]
        lines += [f"| {m:.1f} | {u} | {v['sbd']:.3f} | {v['abs_dic']:.2f} | {v['ap50']:.3f} |"
                  for m, u, v in vals]
    lines += ["", f"![learning curve on {name}](images/{curve.name})", ""]
    return "\n".join(lines)


def _average_gain(vals) -> str:
    """One line: the averaged weights against the training weights, same run, same images."""
    later = vals[len(vals) // 2:]
    ratio = (sum(v["average_sbd"] for _, _, v in later)
             / max(1e-9, sum(v["training_sbd"] for _, _, v in later)))
    wins = sum(v["average_sbd"] > v["training_sbd"] for _, _, v in vals)
    best_t = max(v["training_sbd"] for _, _, v in vals)
    best_a = max(v["average_sbd"] for _, _, v in vals)
    return (f"Averaged weights against training weights: higher SBD at {wins} of {len(vals)} "
            f"validations; mean SBD over the second half of the run {ratio:.3f}x; best SBD "
            f"{best_a:.3f} against {best_t:.3f}.")


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / max(1, len(rows))


if __name__ == "__main__":
    raise SystemExit(main())
