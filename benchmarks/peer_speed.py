"""Inference speed of ColorRL against Cellpose 3 on the same images, in one run.

Both models are the ones ``benchmarks.compare`` trained (``runs/compare-NAME/``), so they
have seen the same data for the same minutes. Each image of ``DATA/val`` is resized to the
network size of the ColorRL model's config, then segmented by ColorRL
(``Segmenter.segment``: normalisation, T steps, post-processing) and by Cellpose
(``model.eval``: network, flows, mask reconstruction; in its own venv, after one warm-up call,
with the object diameter it was trained at scaled to the resized images). Medians per image.

    python -m benchmarks.peer_speed --data DATA/dsb2018_fluo --name dsb
    python -m benchmarks.peer_speed --data DATA/cvppp_a1 --name cvppp --images 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from ._report import RUNS, header
from .peer_cellpose import time_cellpose


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--name", required=True,
                        help="the benchmarks.compare run (runs/compare-NAME)")
    parser.add_argument("--images", type=int, default=12, help="validation images timed")
    parser.add_argument("--quick", action="store_true", help="3 images")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    from napari_colorrl.core.data.files import load_dataset_dir
    from napari_colorrl.core.data.normalize import resize_image
    from napari_colorrl.core.inference import Segmenter

    work = RUNS / f"compare-{args.name}"
    colorrl_model = work / "colorrl.best.pt"
    cellpose_model = work / "cellpose" / "cellpose_model.pt"
    for path in (colorrl_model, cellpose_model):
        if not path.is_file():
            print(f"{path} not found: run python -m benchmarks.compare --name {args.name} "
                  "first")
            return 1
    torch.set_num_threads(2)
    segmenter = Segmenter.load(colorrl_model, device="cpu")
    size = tuple(segmenter.config.input_size)
    _, val = load_dataset_dir(args.data)
    val = val[: 3 if args.quick else args.images]
    images = []
    for sample in val:
        image = np.asarray(sample.image, dtype=np.float32)
        rgb = image.ndim == 3
        data = np.moveaxis(image, -1, 0) if rgb else image[None]
        resized = resize_image(data, size)
        images.append(np.moveaxis(resized, 0, -1) if rgb else resized[0])
    scale = size[0] / np.asarray(val[0].image).shape[0]

    segmenter.segment(images[0])  # warm-up, as Cellpose gets one
    colorrl_s = []
    for image in tqdm(images, desc="ColorRL", unit="image"):
        start = time.perf_counter()
        segmenter.segment(image)
        colorrl_s.append(time.perf_counter() - start)
    result = json.loads((work / "cellpose" / "result.json").read_text())
    diameter = float(result["mean_diameter"]) * scale
    print("Cellpose (its own venv, one warm-up call first) ...")
    peer = time_cellpose(cellpose_model, images, diameter=diameter, threads=2)
    cellpose_s = [float(s) for s in peer["seconds"]]
    ours, theirs = statistics.median(colorrl_s), statistics.median(cellpose_s)
    lines = [
        "",
        *header(f"Speed against Cellpose 3: {args.name}"),
        f"- {len(images)} validation images of `{args.data.name}` resized to "
        f"{'x'.join(map(str, size))}; models trained by `benchmarks.compare`; "
        f"ColorRL T = {segmenter.config.steps}; Cellpose {peer['version']} with diameter "
        f"{diameter:.1f} px; 2 threads each, one after the other",
        "",
        "| method | median ms/image | images/s | vs ColorRL |",
        "|---|---|---|---|",
        f"| ColorRL (this project) | {1000 * ours:.0f} | {1 / ours:.2f} | 1.00x |",
        f"| Cellpose 3 | {1000 * theirs:.0f} | {1 / theirs:.2f} | {theirs / ours:.2f}x the "
        f"time |",
        "",
        f"Peak memory of the Cellpose process: {peer['peak_rss_mb']:.0f} MB (ColorRL's peak "
        f"memory: `python -m benchmarks.speed`).",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
