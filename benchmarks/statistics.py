"""Which crops should give an image's instance-norm statistics? One model, the same images,
three rules, scored against the truth:

- ``before``: every other whole input-size crop of the tile grid from the top-left corner, at
  least one (the rule until 2026-12-06: an image between one and two input sizes per axis,
  such as a 100^3 volume for a 64^3 model, took the statistics of its corner crop alone);
- ``now``: the product's rule (``Segmenter.statistics_crops``: crops spread evenly from one
  end of each axis to the other, at least two along an axis longer than the input);
- ``own``: the whole image in one pass, normalised by itself (no statistics crops).

    python -m benchmarks.statistics                 # bundled models on synthetic nuclei
    python -m benchmarks.statistics --model runs/learn-gonuclear3d/model.best.pt \\
        --data DATA/gonuclear3d                     # a model on the val/ images of a data set

Prints per image AP50, SBD and the seconds of one segmentation under each rule, and the mean of
each rule with its ratio to ``before``.
"""

from __future__ import annotations

import argparse
import itertools
import time
import types

import numpy as np
import torch

from ._report import header
from ._timing import table
from .synthetic_set import ROUND_DENSITY

#: (model, shape, seed) of the synthetic cases: the bundled models on the round nuclei they were
#: trained on, at sizes where the rules differ (between one and two input sizes per axis, and an
#: axis whose last whole crop is not at its end).
SYNTHETIC = (
    *[("nuclei-2d", shape, seed) for shape in ((320, 320), (400, 400), (520, 700), (1000, 1000))
      for seed in (0, 1)],
    *[("nuclei-3d", shape, seed) for shape in ((100, 100, 100), (64, 120, 120), (128, 128, 128))
      for seed in (0, 1)],
)
RULES = ("before", "now", "own")


def before_rule(self, plan):
    """``Segmenter.statistics_crops`` as it was until 2026-12-06 (the baseline)."""
    from napari_colorrl.core.tile_statistics import STATISTICS_CROPS
    from napari_colorrl.core.tiling import TileGrid

    grid, stride = plan.grid, self.stride
    crop = tuple(min(n, max(stride, int(c) // stride * stride))
                 for n, c in zip(grid.network_shape, self.config.input_size))
    crops = TileGrid.make(grid.image_shape, grid.network_shape, crop, 0, align=stride)
    if plan.own_statistics(crop):
        return crops, []
    cap = max(1, int(round(STATISTICS_CROPS[self.config.ndim] ** (1 / len(crop)))))
    full = [sum(1 for start in a.starts if start + c <= a.network_size)
            for a, c in zip(crops.axes, crop)]
    picks = [sorted({round(float(v)) for v in np.linspace(
        0, count - 1, min(cap, max(1, round(count / 2))))}) for count in full]
    wanted = set(itertools.product(*picks))
    return crops, [tile for tile in crops if tile.index in wanted]


def own_rule(self, plan):
    """No statistics crops: every tile (here the one tile) is normalised by itself."""
    from napari_colorrl.core.inference import Segmenter

    return Segmenter.statistics_crops(self, plan)[0], []


def segment_with(segmenter, rule: str, image: np.ndarray, **scale):
    """(instances, seconds, statistics crops) of one segmentation under ``rule``."""
    from napari_colorrl.core.inference import Segmenter

    method = {"before": before_rule, "own": own_rule,
              "now": Segmenter.statistics_crops}[rule]
    segmenter.statistics_crops = types.MethodType(method, segmenter)
    try:
        plan = segmenter.plan(image.shape[:segmenter.config.ndim], **scale)
        tile = max(plan.network_shape) if rule == "own" else None
        crops = len(segmenter.statistics_crops(
            segmenter.plan(image.shape[:segmenter.config.ndim], tile_size=tile, **scale))[1])
        start = time.perf_counter()
        result = segmenter.segment(image, keep_steps=False, tile_size=tile, **scale)
        return result.instances, time.perf_counter() - start, crops
    finally:
        del segmenter.statistics_crops


def cases(args):
    """(name, model, image, labels) of every case."""
    if args.data is not None:
        from napari_colorrl.core.data.files import find_split, list_pairs, load_pairs

        for sample in load_pairs(list_pairs(*find_split(args.data, "val"))):
            yield sample.name, args.model, sample.image, sample.labels
        return
    from napari_colorrl.core.data.synthetic import make_round_nuclei

    for model, shape, seed in SYNTHETIC:
        radius, density = (8.0, 1.1e-3) if len(shape) == 2 else (6.0, ROUND_DENSITY)
        image, labels = make_round_nuclei(shape, radius=radius, density=density, seed=seed + 10)
        yield f"{'x'.join(map(str, shape))} seed {seed}", model, image, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.statistics",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="nuclei-3d",
                        help="with --data: a model file or a bundled model name")
    parser.add_argument("--data", default=None,
                        help="a data set folder: its val/ images are scored (default: synthetic)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import ap, sbd

    loaded: dict[str, Segmenter] = {}
    rows, scores = [], {rule: [] for rule in RULES}
    for name, model, image, labels in cases(args):
        segmenter = loaded.setdefault(model, Segmenter.load(model, device="cpu"))
        segment_with(segmenter, "now", image)  # warm-up
        row = [f"{model}: {name}"]
        for rule in RULES:
            pred, seconds, crops = segment_with(segmenter, rule, image)
            result = (ap(pred, labels, 0.5), sbd(pred, labels), seconds)
            scores[rule].append(result)
            row += [f"{result[0]:.3f}", f"{result[1]:.3f}", f"{seconds:.2f} ({crops})"]
        rows.append(row)
        print(" | ".join(row), flush=True)
    means = {rule: np.mean(np.asarray(values), axis=0) for rule, values in scores.items()}
    base = means["before"]
    rows.append(["**mean**"] + [
        f"{means[r][0]:.3f} ({means[r][0] / base[0]:.2f}x)" if i == 0 else
        f"{means[r][1]:.3f} ({means[r][1] / base[1]:.2f}x)" if i == 1 else
        f"{means[r][2]:.2f} ({means[r][2] / base[2]:.2f}x)"
        for r in RULES for i in range(3)])
    heads = ["image"] + [f"{rule} {what}" for rule in RULES
                         for what in ("AP50", "SBD", "s (crops)")]
    print("\n".join(header("Instance-norm statistics: which crops")))
    print(table(heads, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
