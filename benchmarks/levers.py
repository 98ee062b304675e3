"""Which training levers help? The same budget per variant, one after the other, scored alike.

Every variant trains from the same recipe (``--recipe``, or a config file) with a few settings
changed, for the same number of minutes, on the same train/ images, with the same seed, and its
best checkpoint is scored on every val/ image at full size (checkpoint and minimum object size
chosen on the selection share carved from train/, as training does). The table reports each
variant against the first one (the recipe as it is) in the same run, so that machine and load
cancel out: run nothing else meanwhile. With ``--seeds`` every seed trains every variant (all
variants of one seed, then the next seed) and the table gives each score per seed and as mean ±
sd over the seeds, the ratio of the means against the first variant. Each training goes to
runs/levers-NAME/VARIANT-seedS/ (log and checkpoints; the same name with one seed or several),
the scores to runs/levers-NAME/results.json, and the table is printed as a Markdown block.

    python -m benchmarks.levers --data DATA/dsb2018_fluo --recipe dsb --minutes 8
    python -m benchmarks.levers --data DATA/cvppp_a1 --recipe cvppp --minutes 15 --seeds 0,1 \
        --variants base,worst,worst+expected
    python -m benchmarks.levers --data DATA/dsb2018_fluo --recipe dsb --quick
"""

from __future__ import annotations

import argparse
import json
import statistics

from ._report import RUNS, add_run_arguments, header, pick, prepare_run, run_name
from .learn import score_run, summary, train_logged
from .plot_curve import read_log
from .recipes import deep_update, experiment, experiment_names

# name -> (what it changes, overrides of the base config). "base" is the recipe as it is.
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the base recipe unchanged", {}),
    "small-net": ("network features [8, 16, 32, 64, 128] (more updates per minute)",
                  {"network": {"features": [8, 16, 32, 64, 128]}}),
    "batch-2": ("2 episodes per update (`dsb` plays 4: twice the updates)",
                {"train": {"batch_size": 2}}),
    "batch-8": ("8 episodes per update (`dsb` plays 4, `cvppp` 2: fewer updates, less noise)",
                {"train": {"batch_size": 8}}),
    "warmup": ("the supplement's single-sample warm-up for the first 20 updates",
               {"train": {"warmup_updates": 20}}),
    "entropy-low": ("entropy bonus 0.01 falling to 0.001 (less random coloring late)",
                    {"train": {"entropy_coef": 0.01, "entropy_coef_final": 0.001}}),
    "lr-3e-4": ("Adam 3e-4 then 5e-5 instead of 6e-4 then 1e-4",
                {"train": {"lr": 3e-4, "lr_final": 5e-5}}),
    # Issue 17's levers against the merged-object equilibrium (docs/method.md).
    "worst": ("split form 'worst': a collision costs the most shared neighbour's share",
              {"reward": {"split_form": "worst"}}),
    "per-object": ("every object (and the background) weighs the same in the loss",
                   {"train": {"object_weighting": True}}),
    "aux": ("auxiliary foreground and boundary heads on the decoder, weight 0.5",
            {"network": {"aux_heads": True}, "train": {"aux_weight": 0.5}}),
    "coordinates": ("position channels: the image branch also sees each pixel's position "
                    "(CoordConv), so touching look-alike objects can get different codes",
                    {"network": {"coordinates": True}}),
    "expected": ("each step's own reward from its exact expectation in the policy gradient",
                 {"train": {"expected_reward": True}}),
    "coherent": ("coherent exploration: pixels draw their actions correlated over 6 px (75 % "
                 "of the variance shared), so patches change color together",
                 {"train": {"exploration_scale": 6.0, "exploration_correlation": 0.75}}),
    "agreement": ("the code-agreement term, weight 1: a supervised loss on the policy's "
                  "probabilities averaged per object, every object one code and touching "
                  "objects apart", {"train": {"agreement_weight": 1.0}}),
    "agreement-0.2": ("the code-agreement term, weight 0.2",
                      {"train": {"agreement_weight": 0.2}}),
    "repair": ("the code-agreement term's repair form, weight 1: where touching objects "
               "share a code, a cross-entropy toward the policy's own codes with the loosest "
               "bit of one of them flipped", {"train": {"agreement_weight": 1.0,
                                                        "agreement_form": "repair"}}),
    "foreground": ("the supervised foreground term, weight 1: a cross-entropy on the policy's "
                   "own actions where the rewards fix them (the foreground at step 0, code 0 "
                   "on the background)", {"train": {"foreground_weight": 1.0}}),
    "worst-half": ("split form 'worst' at worst_share 0.5: half the most shared neighbour's "
                   "share, half the mean over the neighbours",
                   {"reward": {"split_form": "worst", "worst_share": 0.5}}),
    "worst+expected": ("split form 'worst' and the expected reward of each step",
                       {"reward": {"split_form": "worst"},
                        "train": {"expected_reward": True}}),
    "worst+per-object": ("split form 'worst' and per-object weighting",
                         {"reward": {"split_form": "worst"},
                          "train": {"object_weighting": True}}),
}


def changes_of(name: str) -> tuple[str, dict]:
    """(what it changes, changes) of a variant above or of an experiment file."""
    if name in VARIANTS:
        return VARIANTS[name]
    spec = experiment(name)
    return spec["why"], spec["changes"]


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    add_run_arguments(parser, minutes=8.0,
                      quick_help="1 minute per variant, 4 validation images during training")
    parser.add_argument("--variants", default="base,small-net,entropy-low",
                        help="comma-separated, the first is the reference: "
                        + ", ".join(VARIANTS) + ", or an experiment of benchmarks/recipes "
                        "(its changes applied to the recipe given)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds, each trains every variant (e.g. 0,1); the "
                        "table gives mean ± sd over them (default: --seed alone)")
    args = parser.parse_args()

    from napari_colorrl.core.training.trainer import train

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to measure")
        return 1
    names = pick(parser, args.variants, [*VARIANTS, *experiment_names()], "variant")
    seeds = seeds_of(parser, args.seeds, args.seed)
    name = run_name(args)
    minutes = 1.0 if args.quick else args.minutes
    common = {"train": {"val_max_images": 4}} if args.quick else {}
    run_dir = RUNS / f"levers-{name}"
    results_path = run_dir / "results.json"
    results: dict[str, dict[str, dict]] = {variant: {} for variant in names}
    metrics: tuple[str, ...] = ()
    for seed in seeds:
        args.seed = seed
        for variant in names:
            what, extra = changes_of(variant)
            print(f"\n== {variant}, seed {seed}: {what}")
            vdir = run_dir / f"{variant}-seed{seed}"
            vdir.mkdir(parents=True, exist_ok=True)
            log_path, out = vdir / "log.jsonl", vdir / "model.pt"
            log_path.write_text("")
            setup = prepare_run(args, vdir, minutes=minutes, changes=deep_update(common, extra))
            metrics = summary(setup.config)
            train_logged(train(setup.config, setup.train, setup.val, out=out), log_path, variant)
            _, segmenter, mean, _, seconds = score_run(out, setup)
            rows = read_log(log_path)
            last = rows[-1]
            results[variant][str(seed)] = {
                "what": what, "overrides": extra, "updates": last["update"],
                "episodes": last["episodes"], "minutes": last["elapsed"] / 60,
                "s_per_update": last["elapsed"] / max(1, last["update"]),
                "min_size": segmenter.config.min_size,
                "depth": segmenter.config.passes, "infer_ms": 1000 * seconds, "mean": mean}
            print(f"{variant}, seed {seed}: {last['update']} updates; " + ", ".join(
                f"{k} {mean[k]:.3f}" for k in metrics))
            results_path.write_text(json.dumps(results, indent=2))

    print("\n".join([
        "",
        *header(f"Training levers: {name}"),
        f"- data: `{args.data.name}`; recipe `{args.recipe or args.config}`; {minutes:g} min of "
        f"training per variant and seed, one training at a time, seed(s) "
        f"{', '.join(map(str, seeds))}; best checkpoint scored on all validation images at "
        "full size",
        "",
        lever_table(results, names, metrics),
        "",
        "Ratios are of the means over the seeds, against the first row, trained in the same run. "
        "A short budget favours variants that learn fast early; what a lever does over 60 "
        "minutes can differ.",
    ]))
    return 0


def seeds_of(parser: argparse.ArgumentParser, text: str | None, seed: int) -> list[int]:
    """The seeds of ``--seeds`` (comma-separated, each once), else the one of ``--seed``."""
    if text is None:
        return [seed]
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds takes whole numbers separated by commas, not {text!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds needs at least one seed, each once (got {text!r})")
    return seeds


def spread(values: list[float]) -> str:
    """'mean ± sd' of the values over the seeds (the one value alone for a single seed)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def lever_table(results: dict[str, dict[str, dict]], names: list[str],
                metrics: tuple[str, ...]) -> str:
    """The Markdown table of ``results[variant][seed]``: per variant the updates and seconds per
    update (mean over the seeds), each metric as mean ± sd with the per-seed values, and the
    ratio of the first metric's (and AP50's) means against the first variant."""
    ratio_keys = metrics[:1] + (("ap50",) if "ap50" in metrics[1:] else ())
    seeds = list(results[names[0]])
    multi = len(seeds) > 1

    def means(variant: str, key: str) -> list[float]:
        return [results[variant][s]["mean"][key] for s in seeds]

    head = ["variant", "what it changes", "updates", "s/update",
            *(f"{k} ({', '.join('seed ' + s for s in seeds)})" for k in metrics[:1] if multi),
            *metrics, *(f"{k} vs {names[0]}" for k in ratio_keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in names:
        runs = [results[variant][s] for s in seeds]
        ratios = []
        for k in ratio_keys:
            ref = statistics.mean(means(names[0], k))
            ratios.append(f"{statistics.mean(means(variant, k)) / ref:.2f}x" if ref else "n/a")
        cells = [variant, runs[0]["what"], ", ".join(str(r["updates"]) for r in runs),
                 f"{statistics.mean(r['s_per_update'] for r in runs):.2f}",
                 *(", ".join(f"{v:.3f}" for v in means(variant, k)) for k in metrics[:1]
                   if multi),
                 *(spread(means(variant, k)) for k in metrics), *ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
