"""``colorrl predict``: segment images or folders with a trained model, at the model's scale, in
tiles (large images and volumes are read and written a tile at a time)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from napari_colorrl.cli import UsageError
from napari_colorrl.core.config import SETTINGS_BY_PATH


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a positive number, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"give a positive number, not {text!r}")
    return value


def _setting_help(path: str) -> str:
    spec = SETTINGS_BY_PATH[path]
    return f"{spec.help} (default: the model's; {spec.range_text()})".replace("%", "%%")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a trained model",
        description="Segment one image or a folder of images with a trained ColorRL model. "
        "Writes one label TIFF per image (same shape as the input without its colour axis, "
        "uint16/uint32), named like the input with .tif, or, for one input, the label file "
        "--output names (NAME.tif, or NAME.zarr for a zarr array). Images are rescaled so their "
        "objects have the size the model was trained on (--object-size) and segmented in "
        "overlapping tiles; a TIFF too large for memory (or a .zarr input) is read and its "
        "labels written one tile at a time. With --frames a 2D model segments every frame of "
        "a (T, Y, X) or (Z, Y, X) stack, a 3D model every volume of (T, Z, Y, X). Refuses, "
        "before loading the model, outputs that would replace an input, ground truth, another "
        "output or (without --overwrite) any file.",
    )
    p.add_argument("--model", required=True,
                   help="checkpoint file, bioimage.io package (.zip) written by colorrl export, "
                   "or a bundled model name")
    p.add_argument("--input", required=True, type=Path,
                   help="an image file, a zarr array (NAME.zarr) or a folder of images")
    p.add_argument("--output", required=True, type=Path,
                   help="folder for the label TIFFs; for one input also a label file: NAME.tif "
                   "(a TIFF written in tiles) or NAME.zarr (a zarr array)")
    p.add_argument(
        "--object-size", type=_positive, nargs="+", default=None, metavar="D",
        help="diameter of the objects in the images, in pixels (one number, or one per axis, "
        "Z Y X, for anisotropic volumes); the images are rescaled so their objects match the "
        "model's training size. Default: the model's training scale (a 'resize' model still "
        "resizes images of its training shapes whole)")
    p.add_argument(
        "--pixel-size", type=_positive, nargs="+", default=None, metavar="P",
        help="size of a pixel (one number, or one per axis) in the unit of --object-size, "
        "e.g. --object-size 8 --pixel-size 0.5 for 8 um nuclei at 0.5 um per pixel")
    p.add_argument("--tile-size", type=int, nargs="+", default=None, metavar="T",
                   help=_setting_help("inference.tile_size"))
    p.add_argument("--tile-overlap", type=int, default=None, metavar="O",
                   help=_setting_help("inference.tile_overlap"))
    p.add_argument(
        "--min-size", type=int, default=None,
        help="remove objects smaller than this many pixels/voxels (default: the model's)",
    )
    p.add_argument(
        "--depth", type=int, default=None, metavar="K",
        help="make the instances from the colors after the first K coloring steps (1 to T; 0: "
        "all T). Default: the model's, chosen at training on its selection images")
    p.add_argument(
        "--frames", action="store_true",
        help="segment every frame of a stack: a 2D model on (T, Y, X) or (Z, Y, X) images, a "
        "3D model on (T, Z, Y, X) ones (labels of the same shape)")
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
    from napari_colorrl.core.data.checks import ensure_writable
    from napari_colorrl.core.data.files import LABEL_FILE_SUFFIXES, list_images
    from napari_colorrl.core.data.outputs import plan_outputs
    from napari_colorrl.core.inference import Segmenter

    images = list_images(args.input)
    # Before the model is loaded: nothing the user has may be replaced.
    plans = plan_outputs(images, args.output, save_steps=args.save_steps,
                         overwrite=args.overwrite)
    single = args.output.suffix.lower() in LABEL_FILE_SUFFIXES
    ensure_writable(args.output.parent if single else args.output, what="label files")
    segmenter = Segmenter.load(args.model, device=args.device)
    scale = _scale_options(args, segmenter)
    for plan in plans:
        _predict_one(segmenter, plan, args, scale, lazy_output=single)
    where = plans[0].labels if single else args.output
    print(f"wrote {len(plans)} label file(s) to {where}")
    return 0


def _scale_options(args: argparse.Namespace, segmenter) -> dict:
    """The scale and tile options, checked against the model before any image is read."""
    from napari_colorrl.core.data.scale import object_size_pixels
    from napari_colorrl.core.planning import tiling_settings

    ndim = segmenter.config.ndim
    options = {"object_size": None if args.object_size is None else
               (args.object_size[0] if len(args.object_size) == 1 else tuple(args.object_size)),
               "pixel_size": None if args.pixel_size is None else tuple(args.pixel_size),
               "tile_size": None if args.tile_size is None else tuple(args.tile_size),
               "tile_overlap": args.tile_overlap}
    try:
        segmenter.use_depth(args.depth)
        if options["object_size"] is not None:
            object_size_pixels(options["object_size"], options["pixel_size"], ndim)
        elif options["pixel_size"] is not None:
            raise ValueError("--pixel-size converts --object-size: give --object-size too.")
        tiling_settings(segmenter.config, options["tile_size"], options["tile_overlap"])
    except ValueError as err:
        text = str(err).replace("inference.tile_size", "--tile-size").replace(
            "steps to use", "steps to use with --depth").replace(
            "inference.tile_overlap", "--tile-overlap")
        raise UsageError(text) from None
    return options


def _predict_one(segmenter, plan, args: argparse.Namespace, scale: dict,
                 lazy_output: bool) -> None:
    """Segment one input into its planned outputs: in memory and written whole (compressed)
    when it is small, else read and written tile by tile into files that appear only when
    complete."""
    import numpy as np
    from tqdm import tqdm

    from napari_colorrl.core.data.files import PREDICTION_TAG, read_image
    from napari_colorrl.core.data.frames import frame_shape
    from napari_colorrl.core.data.lazy import LabelFile, open_lazy, should_read_lazily
    from napari_colorrl.core.data.normalize import channel_axis
    from napari_colorrl.core.data.writing import write_labels, write_tiff
    from napari_colorrl.core.method.coloring import color_dtype

    lazy = should_read_lazily(plan.source)
    image = open_lazy(plan.source) if lazy else read_image(plan.source)
    ndim, steps = segmenter.config.ndim, segmenter.steps
    # With --frames every axis beyond the model's is a frame axis (but a last one of up to 4:
    # colour channels); without it the image is one image or volume.
    rgb = (len(image.shape) >= ndim + 2 and image.shape[-1] <= 4) if args.frames else None
    try:
        if not args.frames:
            channel_axis(image.shape, ndim)
        shape = frame_shape(image.shape, ndim, rgb)
    except ValueError as err:
        more = " Or pass --frames to segment every frame of a stack." if (
            not args.frames and len(image.shape) > ndim) else ""
        raise UsageError(f"{plan.source}: {err}{more}") from None
    frames = shape[: len(shape) - ndim]
    bar = tqdm(desc=plan.source.name, unit="tile", disable=None, leave=False)

    def advance(update) -> None:
        frame, count, done, tiles = update
        bar.total = tiles * count
        bar.n = (frame - 1) * tiles + done
        bar.refresh()

    step_shape = (*frames, steps, *shape[len(frames):])
    if not lazy and not lazy_output:
        pixels = math.prod(shape)
        _check_results(pixels * (4 + (steps + color_dtype(steps).itemsize
                                      if plan.steps is not None else 0)), shape)
        labels = np.zeros(shape, np.uint32)
        step_maps = np.zeros(step_shape, np.uint8) if plan.steps is not None else None
        colors = np.zeros(shape, color_dtype(steps)) if plan.steps is not None else None
        for update in segmenter.iter_segment_frames(image, labels, rgb=rgb, steps=step_maps,
                                                    colors=colors, min_size=args.min_size,
                                                    **scale):
            advance(update)
        bar.close()
        write_labels(plan.labels, labels, tag=PREDICTION_TAG)
        if plan.steps is not None:
            write_tiff(plan.steps, step_maps, tag=PREDICTION_TAG)
            write_tiff(plan.colors, colors, tag=PREDICTION_TAG)
        return
    outputs = [LabelFile(plan.labels, shape, np.uint32, tag=PREDICTION_TAG)]
    if plan.steps is not None:
        outputs.append(LabelFile(plan.steps, step_shape, np.uint8, tag=PREDICTION_TAG))
        outputs.append(LabelFile(plan.colors, shape, color_dtype(steps), tag=PREDICTION_TAG))
    try:
        arrays = [o.array for o in outputs] + [None, None]
        for update in segmenter.iter_segment_frames(
                image, arrays[0], rgb=rgb, steps=arrays[1], colors=arrays[2],
                min_size=args.min_size, **scale):
            advance(update)
        bar.close()
        for output in outputs:
            output.commit()
    except BaseException:
        bar.close()
        for output in outputs:
            output.discard()
        raise


def _check_results(needed: int, shape: tuple[int, ...]) -> None:
    """MemoryCheckError when the in-memory results of an image (``needed`` bytes) do not fit,
    before they are allocated."""
    from napari_colorrl.core.runtime import check_memory

    check_memory(needed, "cpu", f"Holding the labels of this {' x '.join(map(str, shape))} "
                 f"image in memory", "Write them to a file in tiles instead: --output "
                 "NAME.zarr or NAME.tif.")
