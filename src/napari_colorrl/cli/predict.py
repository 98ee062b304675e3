"""``colorrl predict``: segment images or folders with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a trained model",
        description="Segment one image or a folder of images with a trained ColorRL model. "
        "Writes one label TIFF per image (same spatial shape as the input, uint16/uint32), "
        "named like the input with .tif.",
    )
    p.add_argument("--model", required=True, help="checkpoint file, or a bundled model name")
    p.add_argument("--input", required=True, type=Path, help="an image file or a folder of them")
    p.add_argument("--output", required=True, type=Path, help="folder for the label TIFFs")
    p.add_argument(
        "--min-size", type=int, default=None,
        help="remove objects smaller than this many pixels/voxels (default: the model's)",
    )
    p.add_argument(
        "--save-steps", action="store_true",
        help="also write NAME_steps.tif (the T binary step maps) and NAME_colors.tif",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_colorrl.core.data.checks import ensure_writable
    from napari_colorrl.core.data.files import list_images, read_image, write_labels, write_tiff
    from napari_colorrl.core.inference import Segmenter

    images = list_images(args.input)
    ensure_writable(args.output, what="label files")
    segmenter = Segmenter.load(args.model, device=args.device)
    for path in tqdm(images, desc="segmenting", unit="image", disable=len(images) < 2):
        image = read_image(path)
        result = segmenter.segment(image, min_size=args.min_size)
        write_labels(args.output / f"{path.stem}.tif", result.instances)
        if args.save_steps:
            write_tiff(args.output / f"{path.stem}_steps.tif", result.steps)
            write_tiff(args.output / f"{path.stem}_colors.tif", result.colors)
    print(f"wrote {len(images)} label file(s) to {args.output}")
    return 0
