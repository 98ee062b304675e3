"""Does the fast inference layout change what a trained model segments?

``Segmenter`` puts a model's weights in the CPU's fast memory layout (``fast_layers
.use_fast_layout``); validation during training uses the stock layout. Float rounding differs
between the two, so near-tie pixel decisions can flip (tests/core/model/test_fast_layers.py
checks the layers against stock PyTorch with random weights); this benchmark measures it on a
trained checkpoint, on a real validation split:

    python -m benchmarks.fast_layout nuclei-2d --data DATA/dsb2018_fluo
    python -m benchmarks.fast_layout runs/learn-cvppp/model.best.pt --data DATA/cvppp_a1

It prints the share of step-map pixels that differ and the mean SBD / AP50 with each layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ._report import header


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
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
    lines = [*header(f"Fast layout: {args.model}"),
             f"- {len(val)} images of `{args.data.name}/val`, {args.threads} thread(s); "
             f"step-map pixels that differ: {differing} of {total} "
             f"({100 * differing / total:.3f}%)", "",
             "| layout | SBD | AP50 |", "|---|---|---|"]
    for name, rows in scores.items():
        sbd_mean, ap_mean = np.mean(rows, axis=0)
        lines.append(f"| {name} | {sbd_mean:.4f} | {ap_mean:.4f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
