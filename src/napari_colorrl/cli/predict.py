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
        "named like the input with .tif. Refuses, before loading the model, outputs that would "
        "replace an input, ground truth, another output or (without --overwrite) any file.",
    )
    p.add_argument("--model", required=True,
                   help="checkpoint file, bioimage.io package (.zip) written by colorrl export, "
                   "or a bundled model name")
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
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace label files an earlier colorrl predict wrote (never other files)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_colorrl.core.data.checks import ensure_writable
    from napari_colorrl.core.data.files import (
        PREDICTION_TAG,
        list_images,
        plan_outputs,
        read_image,
        write_labels,
        write_tiff,
    )
    from napari_colorrl.core.inference import Segmenter

    images = list_images(args.input)
    # Before the model is loaded: nothing the user has may be replaced.
    plans = plan_outputs(images, args.output, save_steps=args.save_steps,
                         overwrite=args.overwrite)
    ensure_writable(args.output, what="label files")
    segmenter = Segmenter.load(args.model, device=args.device)
    for plan in tqdm(plans, desc="segmenting", unit="image", disable=len(plans) < 2):
        image = read_image(plan.source)
        result = segmenter.segment(image, min_size=args.min_size)
        write_labels(plan.labels, result.instances, tag=PREDICTION_TAG)
        if plan.steps is not None:
            write_tiff(plan.steps, result.steps, tag=PREDICTION_TAG)
            write_tiff(plan.colors, result.colors, tag=PREDICTION_TAG)
    print(f"wrote {len(plans)} label file(s) to {args.output}")
    return 0
