"""The ``colorrl`` command line: train, predict, evaluate, demo.

Every subcommand calls the same Qt-free core as the napari docks. Errors the user can fix are
printed as one line naming the problem and the fix, with a non-zero exit status; ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__


class UsageError(Exception):
    """A problem with the user's input, reported as one line."""


def _add_predict(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=_cmd_predict)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted labels against ground truth",
        description="Pair label files by name stem and print every metric per image and the "
        "mean: SBD, DiC, |DiC|, AP50, AP75, mAP, MWCov, MUCov, AvgFP, AvgFN, VOI split/merge, "
        "ARAND, AJI.",
    )
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted label files")
    p.add_argument("--gt", required=True, type=Path, help="folder of ground-truth label files")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .core.checks import ensure_writable
    from .core.inference import Segmenter
    from .core.io import list_images, read_image, write_labels, write_tiff

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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.checks import ensure_writable
    from .core.io import list_pairs, read_labels
    from .core.metrics import METRIC_NAMES, evaluate, mean_metrics

    pairs = list_pairs(args.pred, args.gt)
    if args.json is not None:
        ensure_writable(args.json.parent, what="JSON results")
    per_image: dict[str, dict[str, float]] = {}
    for pred_path, gt_path in pairs:
        pred, gt = read_labels(pred_path), read_labels(gt_path)
        if pred.shape != gt.shape:
            raise UsageError(
                f"{pred_path.name} has shape {pred.shape} but {gt_path.name} has {gt.shape}; "
                f"predictions must have the ground truth's shape."
            )
        per_image[pred_path.stem] = evaluate(pred, gt)
    mean = mean_metrics(list(per_image.values()))
    print(format_table(per_image, mean, METRIC_NAMES))
    if args.json is not None:
        args.json.write_text(json.dumps({"mean": mean, "images": per_image}, indent=2))
        print(f"wrote {args.json}")
    return 0


def format_table(
    rows: dict[str, dict[str, float]], mean: dict[str, float], names: Sequence[str]
) -> str:
    """A plain-text table: one row per image, then the mean."""
    width = max([len("mean"), *(len(k) for k in rows)])
    head = " ".join([f"{'image':<{width}}", *(f"{n:>9}" for n in names)])
    lines = [head, "-" * len(head)]
    for key, values in [*rows.items(), ("mean", mean)]:
        lines.append(" ".join([f"{key:<{width}}", *(f"{values[n]:>9.4f}" for n in names)]))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorrl",
        description="ColorRL instance segmentation (reinforced coloring), headless.",
    )
    parser.add_argument("--version", action="version", version=f"napari-colorrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_predict(sub)
    _add_evaluate(sub)
    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list:
    """Subcommands defined in their own modules (train, demo)."""
    registers = []
    try:
        from .cli_train import add_train_parser

        registers.append(add_train_parser)
    except ImportError:  # pragma: no cover - only while the trainer is absent
        pass
    try:
        from .demo import add_demo_parser

        registers.append(add_demo_parser)
    except ImportError:  # pragma: no cover
        pass
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            if not args.debug:
                warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("colorrl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error becomes one clear line
        if args.debug:
            raise
        if not isinstance(err, (UsageError, ValueError, OSError, RuntimeError, MemoryError)):
            print(f"colorrl: unexpected error: {type(err).__name__}: {_one_line(err)} "
                  f"(run with --debug for details)", file=sys.stderr)
            return 1
        print(f"colorrl: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each on stderr, without the source line."""
    print(f"colorrl: warning: {_one_line(message)}", file=sys.stderr)
