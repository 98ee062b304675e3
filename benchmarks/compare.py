"""ColorRL against the paper's baselines and Cellpose 3, same training budget, same metrics.

Each method trains on ``DATA/train`` for the same number of minutes on this machine and is scored
on every image of ``DATA/val`` at full size with the project's metrics (SBD, |DiC|, AP50, mAP).
Every choice is made on the selection share carved from train/ (``train.selection``), never on
val/:

* ColorRL (this project), trained with ``colorrl train``'s own code path and the given recipe
  (or config file); checkpoint and minimum object size chosen on the selection share.
* U-Net + CC and U-Net + watershed (the paper's baselines) on the project's own U-Net
  (``benchmarks/baselines.py``): threshold, minimum peak distance and size chosen on the
  selection share.
* Cellpose 3 (``cellpose<4``) trained from scratch in its own venv
  (``benchmarks/peer_cellpose.py``).
* Perfect foreground + CC: what is lost without splitting touching objects.

Methods run one after the other (never two at once: the timings would mean nothing on 2 cores).
Results go to ``runs/compare-NAME/results.json`` and are merged there, so methods can be run in
separate calls (``--methods``); the printed table always shows every stored row.

    python -m benchmarks.compare --data DATA/dsb2018_fluo --recipe dsb --minutes 30
    python -m benchmarks.compare --data DATA/cvppp_a1 --recipe cvppp --quick --methods colorrl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ._report import RUNS, add_run_arguments, command, header, pick, prepare_run, run_name, stamp
from .baselines import (
    MIN_DISTANCES,
    THRESHOLDS,
    ForegroundUNet,
    cc_instances,
    choose,
    perfect_foreground_cc,
    watershed_instances,
)
from .learn import train_logged
from .peer_cellpose import run_cellpose as train_cellpose
from .plot_curve import read_log

METHODS = ("colorrl", "unet", "cellpose", "perfect")
COLUMNS = ("sbd", "abs_dic", "ap50", "map")
ROW_NAMES = {
    "colorrl": "ColorRL (this project)",
    "unet_cc": "U-Net + CC",
    "unet_watershed": "U-Net + watershed",
    "cellpose": "Cellpose 3 (from scratch)",
    "perfect": "perfect foreground + CC",
}


def score(preds: dict[str, np.ndarray], val) -> dict[str, float]:
    """Mean of the project's metrics over the validation images."""
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    return mean_metrics([evaluate(preds[s.name], s.labels) for s in val])


def run_colorrl(args, setup, work: Path) -> dict:
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.training.trainer import train

    out, log = work / "colorrl.pt", work / "colorrl.jsonl"
    log.write_text("")
    train_logged(train(setup.config, setup.train, setup.val, out=out), log, "ColorRL")
    rows = read_log(log)
    best = out.with_suffix(".best.pt")
    segmenter = Segmenter.load(best if best.is_file() else out, device="cpu")
    preds, seconds = {}, []
    for sample in setup.scored:
        start = time.perf_counter()
        preds[sample.name] = segmenter.segment(sample.image).instances
        seconds.append(time.perf_counter() - start)
    return {"colorrl": {
        **score(preds, setup.scored), "train_minutes": rows[-1]["elapsed"] / 60,
        "updates": rows[-1]["update"], "infer_ms": 1000 * float(np.median(seconds)),
        "choice": f"min size {segmenter.config.min_size} px, depth {segmenter.config.passes} "
                  f"of {segmenter.config.steps}"}}


def run_unet(args, setup, minutes: float, work: Path) -> dict:
    from tqdm import tqdm

    from napari_colorrl.core.training.selection import min_size_candidates

    unet = ForegroundUNet(setup.config, device="cpu", seed=args.seed)
    bar = tqdm(total=1000, desc="training U-Net", unit="‰")
    last = None
    for last in unet.train(setup.train, minutes):
        bar.n = int(last.progress * 1000)
        bar.set_postfix_str(f"update {last.update} loss {last.loss:.3f}")
        bar.refresh()
    bar.close()
    # Threshold, minimum distance and size chosen on the selection share (setup.val, carved
    # from train/), as ColorRL's checkpoint and minimum size; scored on val/ (setup.scored).
    chosen_on = {s.name: unet.probability(s.image) for s in setup.val}
    probs, prob_seconds = {}, []
    for sample in setup.scored:
        start = time.perf_counter()
        probs[sample.name] = unet.probability(sample.image)
        prob_seconds.append(time.perf_counter() - start)
    names = [s.name for s in setup.val]
    gts = [s.labels for s in setup.val]
    default_size = setup.config.min_size
    sizes = min_size_candidates(default_size, int(min(p.size for p in chosen_on.values())))
    threshold, _ = choose(THRESHOLDS, lambda t: [cc_instances(chosen_on[n], t, default_size)
                                                 for n in names], gts)
    cc_size, _ = choose(sizes, lambda m: [cc_instances(chosen_on[n], threshold, m)
                                          for n in names], gts)
    distance, _ = choose(MIN_DISTANCES, lambda d: [
        watershed_instances(chosen_on[n], threshold, d, default_size) for n in names], gts)
    ws_size, _ = choose(sizes, lambda m: [watershed_instances(chosen_on[n], threshold, distance,
                                                              m) for n in names], gts)
    results = {}
    for key, make, choice in (
        ("unet_cc", lambda p: cc_instances(p, threshold, cc_size),
         f"threshold {threshold}, min size {cc_size} px"),
        ("unet_watershed", lambda p: watershed_instances(p, threshold, distance, ws_size),
         f"threshold {threshold}, min distance {distance} px, min size {ws_size} px"),
    ):
        preds, seconds = {}, []
        for sample, base in zip(setup.scored, prob_seconds):
            start = time.perf_counter()
            preds[sample.name] = make(probs[sample.name])
            seconds.append(base + time.perf_counter() - start)
        results[key] = {**score(preds, setup.scored), "train_minutes": last.elapsed / 60,
                        "updates": last.update, "infer_ms": 1000 * float(np.median(seconds)),
                        "choice": choice}
    return results


def run_cellpose(args, setup, minutes: float, work: Path) -> dict:
    from napari_colorrl.core.data.files import read_labels

    result = train_cellpose(args.data, minutes, work / "cellpose", quick=args.quick)
    masks = Path(result["masks_dir"])
    preds = {}
    for sample in setup.scored:
        found = sorted(masks.glob(f"{Path(sample.name).stem}.*"))
        if not found:
            raise FileNotFoundError(f"Cellpose wrote no mask for {sample.name} in {masks}")
        preds[sample.name] = read_labels(found[0])
    return {"cellpose": {
        **score(preds, setup.scored), "train_minutes": result["train_seconds"] / 60,
        "updates": f"{result['epochs']} epochs",
        "infer_ms": 1000 * float(result["infer_seconds_per_image"]),
        "choice": f"cellpose {result.get('version', '?')}"}}


def run_perfect(setup) -> dict:
    preds = {s.name: perfect_foreground_cc(s.labels) for s in setup.scored}
    return {"perfect": {**score(preds, setup.scored), "train_minutes": None, "updates": None,
                        "infer_ms": None, "choice": "true foreground"}}


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    add_run_arguments(parser, minutes=30.0,
                      quick_help="2 minutes per method, 4 validation images (the U-Net "
                      "baselines use the recipe's network, input size and normalisation)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)}")
    args = parser.parse_args()

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to compare")
        return 1
    methods = pick(parser, args.methods, METHODS, "method")
    minutes = 2.0 if args.quick else args.minutes
    name = run_name(args)
    work = RUNS / f"compare-{name}{'-quick' if args.quick else ''}"
    work.mkdir(parents=True, exist_ok=True)
    setup = prepare_run(args, work, minutes=minutes,
                        changes={"train": {"val_max_images": 4}} if args.quick else None)
    if args.quick:
        setup.val, setup.report = setup.val[:4], setup.report[:4]

    store = work / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    for method in methods:
        print(f"\n== {method} ({minutes:g} min budget) ==")
        if method == "colorrl":
            new = run_colorrl(args, setup, work)
        elif method == "unet":
            new = run_unet(args, setup, minutes, work)
        elif method == "cellpose":
            new = run_cellpose(args, setup, minutes, work)
        else:
            new = run_perfect(setup)
        for row in new.values():
            row.update(budget_minutes=minutes, date=stamp(), command=command())
        results.update(new)
        store.write_text(json.dumps(results, indent=2))
        print(table(results))
    print()
    print(section(name, args, setup, results))
    return 0


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict) -> str:
    head = "| method | " + " | ".join(COLUMNS) + " | trained (min) | updates | inference " \
           "ms/image | chosen on the selection share |"
    lines = [head, "|---|" + "---|" * (len(COLUMNS) + 4)]
    for key in ROW_NAMES:
        if key not in results:
            continue
        row = results[key]
        lines.append(f"| {ROW_NAMES[key]} | " + " | ".join(_fmt(row[c]) for c in COLUMNS)
                     + f" | {_fmt(row['train_minutes'], 1)} | {_fmt(row['updates'], 0)} | "
                     f"{_fmt(row['infer_ms'], 0)} | {row['choice']} |")
    return "\n".join(lines)


def section(name: str, args, setup, results: dict) -> str:
    config = setup.config
    commands = sorted({row["command"] for row in results.values()})
    dates = sorted({row["date"] for row in results.values()})
    budgets = sorted({row["budget_minutes"] for row in results.values()})
    lines = [
        *header(f"Comparison: {name}")[:3],
        *[f"- command: `{c}`" for c in commands],
        f"- date: {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else ""),
        f"- data: `{args.data.name}`, {len(setup.train)} training, {len(setup.val)} "
        f"selection (carved from train/) and {len(setup.scored)} scored "
        f"validation images, all scored at full size; training budget "
        f"{' / '.join(f'{b:g}' for b in budgets)} min per method, one method at a time",
        f"- ColorRL: recipe `{args.recipe or args.config}`, T = {config.steps}, network "
        f"{list(config.network.features)} at "
        f"{'x'.join(map(str, config.input_size))} ({config.input_mode}), batch "
        f"{config.train.batch_size}; the U-Net baselines use the same network (one step channel, "
        f"held at zero), input size, normalisation, augmentation and batch",
        "",
        table(results),
        "",
        "Inference is the median per validation image on the CPU, post-processing included. "
        "Thresholds, distances and minimum sizes are chosen (by SBD + AP50) on the selection "
        "share carved from train/, as ColorRL's checkpoint and minimum size are; val/ is only "
        "scored.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
