"""Does the fast inference layout change what a trained model segments?

``Segmenter`` puts a model's weights in the CPU's fast memory layout (``fast_layers
.use_fast_layout``); validation during training uses the stock layout. Float rounding differs
between the two, so near-tie pixel decisions can flip. ``bench_speed.py`` measures this with
random weights; this script measures it on trained checkpoints, on a real validation split:

    python benchmarks/check_fast_layout.py nuclei-2d --data ../shared/data/dsb2018_fluo
    python benchmarks/check_fast_layout.py runs/learn-cvppp-small/model.best.pt \\
        --data ../shared/data/cvppp_a1

It prints the share of step-map pixels that differ and the mean SBD / AP50 with each layout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint file or bundled model name")
    parser.add_argument("--data", type=Path, required=True, help="folder with val/")
    parser.add_argument("--images", type=int, default=0, help="first N val images (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from napari_colorrl.core.data.files import load_dataset_dir
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import ap, sbd

    if not args.data.is_dir():
        print(f"data set {args.data} not found: nothing to measure")
        return 1
    torch.set_num_threads(args.threads)
    _, val = load_dataset_dir(args.data)
    val = val[: args.images] if args.images else val
    layouts = {"stock": Segmenter.load(args.model, device="cpu", fast_layout=False),
               "fast": Segmenter.load(args.model, device="cpu")}
    differing = total = 0
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
    for sample in val:
        results = {name: seg.segment(sample.image) for name, seg in layouts.items()}
        for name, result in results.items():
            scores[name].append((sbd(result.instances, sample.labels),
                                 ap(result.instances, sample.labels, 0.5)))
        differing += int((results["stock"].steps != results["fast"].steps).sum())
        total += results["stock"].steps.size
    print(f"{args.model}: {len(val)} images of {args.data.name}/val, {args.threads} thread(s)")
    print(f"  step-map pixels that differ: {differing} of {total} ({100 * differing / total:.3f}%)")
    for name, rows in scores.items():
        sbd_mean, ap_mean = np.mean(rows, axis=0)
        print(f"  {name:5s} layout: SBD {sbd_mean:.4f}, AP50 {ap_mean:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
