"""Fine-tuning a model against training from scratch and against the model unchanged; and one
round of correct-then-retrain on a stack.

Per seed: draws ``--images`` training images; fine-tunes ``--model`` (default the bundled
nuclei-2d) on them for ``--minutes`` (``colorrl train --init``'s code path: the model's method
settings, a fresh schedule, a seeded fifth of the images held out to choose the checkpoint and
the minimum size); trains the same network from scratch on the same images for the same time
(recipe ``--recipe``, the one the model was trained with); scores both and the model unchanged
on every image of val/ at full size. Then the correct-then-retrain loop of the segmentation dock:
a stack of ``--images`` other training images (centre crops of one size) is segmented by the
model, half of its frames are "corrected" (their true labels stand in for the user's painting),
the model is fine-tuned on the corrected frames only, and the frames nobody corrected and val/
are scored before and after that round. Prints the means over the seeds with their spread.

    python -m benchmarks.finetune --data DATA/dsb2018_fluo --minutes 3 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from ._report import RUNS, header
from .recipes import load_recipe, recipe_names, write_recipe

METRICS = ("sbd", "ap50", "abs_dic")


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    parser.add_argument("--model", default="nuclei-2d",
                        help="checkpoint or bundled model to fine-tune (default nuclei-2d)")
    parser.add_argument("--recipe", default="dsb", choices=recipe_names(),
                        help="the recipe for training from scratch (default dsb: the one "
                        "nuclei-2d was trained with)")
    parser.add_argument("--minutes", type=float, default=3.0, help="budget of each training")
    parser.add_argument("--images", type=int, default=10,
                        help="training images per run, and frames of the stack (default 10)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--crop", type=int, default=256, help="frame size of the stack")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from napari_colorrl.core.data.files import load_dataset_dir

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to measure")
        return 1
    train, val = load_dataset_dir(args.data)
    if not val:
        print(f"{args.data} has no val/: nothing to score on")
        return 1
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    folder = RUNS / "finetune"
    folder.mkdir(parents=True, exist_ok=True)
    unchanged = score(args.model, val)
    rows: dict[str, list[dict]] = {"fine-tuned": [], "from scratch": [], "round: before": [],
                                   "round: after": [], "round val: after": []}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train))
        chosen = [train[i] for i in order[: args.images]]
        stack = crop_stack([train[i] for i in order[args.images: 2 * args.images]], args.crop)
        tuned = run(args, chosen, folder / f"tuned-{seed}.pt", seed, init=args.model)
        rows["fine-tuned"].append(score(tuned, val))
        scratch = run(args, chosen, folder / f"scratch-{seed}.pt", seed, init=None)
        rows["from scratch"].append(score(scratch, val))
        before, after, after_val = one_round(args, stack, folder / f"round-{seed}.pt", seed, val)
        rows["round: before"].append(before)
        rows["round: after"].append(after)
        rows["round val: after"].append(after_val)
        (folder / "scores.json").write_text(json.dumps(
            {"unchanged": unchanged, **rows}, indent=2))
    print()
    print(report(args, seeds, len(val), unchanged, rows))
    return 0


def run(args, samples: list, out: Path, seed: int, init: str | None) -> Path:
    """Train on ``samples`` for the budget (fine-tune from ``init``, or from scratch with the
    recipe) as ``colorrl train`` does; the checkpoint chosen on the held-out share."""
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
    from napari_colorrl.core.training.trainer import train

    settings = {"train.minutes": args.minutes, "train.seed": seed, "train.device": "cpu"}
    if args.threads:
        settings["train.threads"] = args.threads
    config_file = None
    if init is None:
        config_file = write_recipe(load_recipe(args.recipe), out.with_suffix(".json"))
    request = TrainingRequest(samples=samples, ndim=2, init=init, config_file=config_file,
                              settings=settings)
    setup = prepare_training(request)
    for _ in train(setup.config, setup.train, setup.val, out=out, init=init):
        pass
    best = out.with_suffix(".best.pt")
    return best if best.is_file() else out


def score(model, samples: list) -> dict:
    """Mean SBD, AP50 and abs DiC of ``model`` on ``samples`` at full size."""
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import evaluate, mean_metrics

    segmenter = Segmenter.load(model, device="cpu")
    return mean_metrics([evaluate(segmenter.segment(s.image).instances, s.labels)
                         for s in samples])


def crop_stack(samples: list, size: int) -> list:
    """Centre crops of one size (smaller images padded with zeros), as the frames of a stack."""
    from napari_colorrl.core.data.files import Sample

    def crop(array: np.ndarray) -> np.ndarray:
        out = np.zeros((size, size, *array.shape[2:]), dtype=array.dtype)
        h, w = min(size, array.shape[0]), min(size, array.shape[1])
        y, x = (array.shape[0] - h) // 2, (array.shape[1] - w) // 2
        out[:h, :w] = array[y:y + h, x:x + w]
        return out

    return [Sample(f"frame{i}", crop(s.image), crop(s.labels)) for i, s in enumerate(samples)]


def one_round(args, stack: list, out: Path, seed: int, val: list) -> tuple[dict, dict, dict]:
    """Segment the stack, correct its first half, fine-tune on the corrected frames; scores of
    the uncorrected half before and after, and of val/ after."""
    from napari_colorrl.core.data.files import Sample

    half = len(stack) // 2
    corrected = [Sample(s.name, s.image, s.labels) for s in stack[:half]]
    untouched = stack[half:]
    before = score(args.model, untouched)
    tuned = run(args, corrected, out, seed, init=args.model)
    return before, score(tuned, untouched), score(tuned, val)


def report(args, seeds, n_val, unchanged, rows) -> str:
    def cell(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    lines = [*header("Fine-tuning against training from scratch"),
             f"- data: `{args.data.name}`; {args.images} training images per run (a fifth held "
             f"out to choose the checkpoint and the minimum size); scored on all {n_val} images "
             f"of val/ at full size; {args.minutes:g} min per training; seeds "
             f"{', '.join(map(str, seeds))} (mean ± sd)",
             f"- model: `{args.model}`; from scratch: recipe `{args.recipe}`", "",
             "| on val/ | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS),
             f"| {args.model} unchanged | " + " | ".join(f"{unchanged[k]:.3f}" for k in METRICS)
             + " |"]
    for name in ("fine-tuned", "from scratch"):
        lines.append(f"| {name}, {args.minutes:g} min | " + " | ".join(
            cell([r[k] for r in rows[name]]) for k in METRICS) + " |")
    lines += ["", f"Correct, then retrain: a stack of {args.images} frames ({args.crop} px), "
              f"half corrected, one fine-tune of {args.minutes:g} min on the corrected frames:",
              "", "| | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, label in (("round: before", "uncorrected frames, before"),
                        ("round: after", "uncorrected frames, after one round"),
                        ("round val: after", "val/, after one round")):
        lines.append(f"| {label} | " + " | ".join(cell([r[k] for r in rows[name]])
                                                   for k in METRICS) + " |")
    lines.append("")
    lines.append(f"Finished {time.strftime('%H:%M UTC', time.gmtime())}.")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
