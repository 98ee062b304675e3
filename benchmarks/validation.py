"""Time of one validation during training, and of its scoring against the earlier way.

A validation (``core.training.selection.validate``, the choice of minimum size and depth on
the selection images) segments each image once and then scores every depth with every
candidate size. This benchmark times, on one checkpoint and the first N training images of a
data set (as many as a selection share holds):

1. the whole validation, as training runs it;
2. its scoring alone, two ways in turn (interleaved): from one contingency table per image and
   depth (``metrics.evaluate_min_sizes``, what ``validate`` does) and, the baseline, what it
   did before 2026-12-07: remove the small objects for every size and count the overlaps again
   for each metric (``sbd``, ``abs_dic``, ``ap``), with a check that both give the same scores
   for every depth and size.

    python -m benchmarks.validation --model runs/learn-NAME/model.best.pt --data DATA/cvppp_a1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ._report import header
from ._timing import interleaved, table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.validation",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint (.pt)")
    parser.add_argument("--data", type=Path, required=True,
                        help="a data set folder with train/images and train/masks")
    parser.add_argument("--images", type=int, default=18,
                        help="how many training images to validate on (default 18)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from napari_colorrl.core.data.files import load_dataset_dir
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.method.postprocess import instances_from_colors, remove_small
    from napari_colorrl.core.metrics import abs_dic, ap, evaluate_min_sizes, sbd
    from napari_colorrl.core.training.selection import (
        VALIDATION_METRICS,
        min_size_candidates,
        validate,
    )

    # As training holds it: the training layout, every step run (the depth is what is chosen).
    segmenter = Segmenter.load(args.model, device="cpu", fast_layout=False)
    segmenter.use_depth(0)
    config = segmenter.config
    samples = load_dataset_dir(args.data)[0][:args.images]
    gts = [np.asarray(s.labels) for s in samples]

    def whole() -> dict:
        return validate(segmenter.model, config, samples, segmenter.device,
                        choose_min_size=True, scale=segmenter.scale, choose_depth=True)

    start = time.perf_counter()
    results = [segmenter.segment(s.image, min_size=0, keep_steps=True) for s in samples]
    segment_seconds = time.perf_counter() - start
    sizes = min_size_candidates(config.min_size, int(min(r.objects.size for r in results)))
    objects = [[r.objects if depth == config.steps else
                instances_from_colors(r.colors_after(depth), connectivity=config.connectivity)
                for r in results] for depth in range(config.steps, 0, -1)]
    pixels = [[r.plan.default_min_size(size) for size in sizes] for r in results]

    def one_table() -> list:
        return [[evaluate_min_sizes(o, g, px, VALIDATION_METRICS)
                 for o, g, px in zip(per_depth, gts, pixels)] for per_depth in objects]

    def each(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        return {"sbd": sbd(pred, gt), "abs_dic": abs_dic(pred, gt), "ap50": ap(pred, gt, 0.5)}

    def again_per_size() -> list:
        return [[[each(remove_small(o, p) if p else o, g) for p in px]
                 for o, g, px in zip(per_depth, gts, pixels)] for per_depth in objects]

    # The first call of each, untimed, is the warm-up: the choice, and the check of agreement.
    chosen = whole()
    same = all(np.isclose(a[name], b[name], rtol=0, atol=1e-12)
               for da, db in zip(one_table(), again_per_size())
               for ia, ib in zip(da, db) for a, b in zip(ia, ib) for name in VALIDATION_METRICS)
    times = interleaved({"validation": whole, "one table": one_table,
                         "again per size": again_per_size}, args.repeats, warmup=0)
    median = {name: float(np.median(t)) for name, t in times.items()}
    lines = header("Validation time") + [
        f"- model: `{args.model}`, T = {config.steps}; {len(samples)} training images of "
        f"`{args.data.name}`, {len(sizes)} candidate sizes x {config.steps} depths",
        f"- chosen: minimum size {chosen['min_size']:.0f}, depth {chosen['depth']:.0f} "
        f"(SBD {chosen['sbd']:.3f}, AP50 {chosen['ap50']:.3f}); "
        f"both scorings agree on every depth and size: {'yes' if same else 'NO'}",
        f"- segmentation of the images (once, every step kept): {segment_seconds:.2f} s",
        "",
        table(["", "median s", f"min / max s ({args.repeats} rounds)", "x baseline"], [
            [name, f"{median[name]:.2f}", f"{min(times[name]):.2f} / {max(times[name]):.2f}",
             f"{median['again per size'] / median[name]:.2f}x" if name != "validation" else "-"]
            for name in times]),
    ]
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
