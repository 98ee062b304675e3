"""Which training levers help? The same budget per variant, one after the other, scored alike.

Every variant trains from the same base config (a ``benchmarks/configs`` JSON) with a few
settings changed, for the same number of minutes, on the same train/ images, with the same seed,
and its best checkpoint is scored on every validation image at full size (minimum object size
chosen on validation, as training does). The table reports each variant against the first one
(the base recipe) in the same run, so that machine and load cancel out: run nothing else
meanwhile. Writes runs/levers-NAME/results.json and a section of docs/benchmarks.md.

    python benchmarks/levers.py --data ../shared/data/dsb2018_fluo \\
        --config benchmarks/configs/dsb_fast.json --minutes 8 --name dsb
    python benchmarks/levers.py --data ../shared/data/dsb2018_fluo \\
        --config benchmarks/configs/dsb_fast.json --quick --no-doc
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, add_run_arguments, command, machine, pick, stamp, write_section  # noqa: E402
from learn import score_run, summary, train_logged  # noqa: E402

# name -> (what it changes, overrides of the base config). "base" is the recipe as it is.
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the base recipe unchanged", {}),
    "small-net": ("network features [8, 16, 32, 64, 128] (more updates per minute)",
                  {"network": {"features": [8, 16, 32, 64, 128]}}),
    "epochs-2": ("each batch of episodes used for 2 PPO-clipped update epochs",
                 {"train": {"update_epochs": 2}}),
    "batch-2": ("2 episodes per update instead of 4 (twice the updates)",
                {"train": {"batch_size": 2}}),
    "batch-8": ("8 episodes per update instead of 4 (half the updates, less noise)",
                {"train": {"batch_size": 8}}),
    "warmup": ("the supplement's single-sample warm-up for the first 20 updates",
               {"train": {"warmup_updates": 20}}),
    "entropy-low": ("entropy bonus 0.01 falling to 0.001 (less random coloring late)",
                    {"train": {"entropy_coef": 0.01, "entropy_coef_final": 0.001}}),
    "lr-3e-4": ("Adam 3e-4 then 5e-5 instead of 6e-4 then 1e-4",
                {"train": {"lr": 3e-4, "lr_final": 5e-5}}),
}


def _deep(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, minutes=8.0, config_help="base JSON config",
                      quick_help="1 minute per variant, 4 validation images during training")
    parser.add_argument("--variants", default="base,small-net,epochs-2,entropy-low",
                        help="comma-separated, the first is the reference; known: "
                        + ", ".join(VARIANTS))
    args = parser.parse_args()

    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
    from napari_colorrl.core.training.trainer import train

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to measure")
        return 1
    names = pick(parser, args.variants, VARIANTS, "variant")
    name = args.name or args.data.name
    minutes = 1.0 if args.quick else args.minutes
    common = {"train": {"val_max_images": 4}} if args.quick else {}
    run_dir = ROOT / "runs" / f"levers-{name}"
    results_path = run_dir / "results.json"
    results = {}
    metrics: tuple[str, ...] = ()
    for variant in names:
        what, extra = VARIANTS[variant]
        print(f"\n== {variant}: {what}")
        vdir = run_dir / variant
        vdir.mkdir(parents=True, exist_ok=True)
        log_path, out = vdir / "log.jsonl", vdir / "model.pt"
        log_path.write_text("")
        setup = prepare_training(TrainingRequest(
            data=args.data, config_file=args.config, minutes=minutes, steps=args.steps,
            seed=args.seed, overrides=_deep(common, extra)))
        metrics = summary(setup.config)
        train_logged(train(setup.config, setup.train, setup.val, out=out), log_path, variant)
        _, segmenter, mean, _, seconds = score_run(out, setup)
        rows = [json.loads(line) for line in log_path.read_text().splitlines() if line]
        last = rows[-1]
        results[variant] = {
            "what": what, "overrides": extra, "updates": last["update"],
            "episodes": last["episodes"], "minutes": last["elapsed"] / 60,
            "s_per_update": last["elapsed"] / max(1, last["update"]),
            "min_size": segmenter.config.min_size, "infer_ms": 1000 * seconds, "mean": mean}
        print(f"{variant}: {last['update']} updates; " + ", ".join(
            f"{k} {mean[k]:.3f}" for k in metrics))
        results_path.write_text(json.dumps(results, indent=2))

    table = _table(results, names, metrics)
    print("\n" + table)
    if not args.no_doc:
        write_section(f"levers-{name}", "\n".join([
            f"## Training levers: {name}",
            "",
            f"- machine: {machine()}",
            f"- command: `{command()}`",
            f"- date: {stamp()}",
            f"- data: `{args.data.name}`; base config `{args.config.as_posix()}`; {minutes:g} min "
            f"of training per variant, one variant at a time, seed {args.seed}; best checkpoint "
            "scored on all validation images at full size",
            "",
            table,
            "",
            "Ratios are against the first row, trained in the same run. A short budget favours "
            "variants that learn fast early; what a lever does over 60 minutes can differ.",
            ""]))
    return 0


def _table(results: dict, names: list[str], metrics: tuple[str, ...]) -> str:
    ref = results[names[0]]["mean"]
    head = ["variant", "what it changes", "updates", "s/update", *metrics,
            *(f"{k} vs {names[0]}" for k in metrics[:1] + (("ap50",) if "ap50" in metrics[1:]
                                                           else ()))]
    ratio_keys = metrics[:1] + (("ap50",) if "ap50" in metrics[1:] else ())
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in names:
        r = results[variant]
        cells = [variant, r["what"], str(r["updates"]), f"{r['s_per_update']:.2f}",
                 *(f"{r['mean'][k]:.3f}" for k in metrics),
                 *(f"{r['mean'][k] / ref[k]:.2f}x" if ref[k] else "n/a" for k in ratio_keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
