"""``colorrl evaluate``: score predicted label files against ground truth."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from napari_colorrl.cli import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted labels against ground truth",
        description="Pair label files by name stem and print every metric per image and the "
        "mean: SBD, DiC, |DiC|, AP50, AP75, mAP, MWCov, MUCov, AvgFP, AvgFN, VOI split/merge, "
        "ARAND, AJI. The NAME_steps/NAME_colors files of predict --save-steps are skipped.",
    )
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted label files")
    p.add_argument("--gt", required=True, type=Path, help="folder of ground-truth label files")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_colorrl.core.data.checks import ensure_writable
    from napari_colorrl.core.data.files import list_pairs, prediction_files, read_labels
    from napari_colorrl.core.data.writing import atomic_write
    from napari_colorrl.core.metrics import METRIC_NAMES, evaluate, mean_metrics

    pairs = list_pairs(args.pred, args.gt, images=prediction_files(args.pred))
    if args.json is not None:
        if args.json.is_dir():
            raise UsageError(f"--json {args.json} is a folder; give a file name such as "
                             f"{args.json / 'scores.json'}.")
        if args.json.exists() and not args.overwrite:
            raise UsageError(f"--json {args.json} already exists; choose another file name or "
                             f"pass --overwrite to replace it.")
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
        text = json.dumps({"mean": mean, "images": per_image}, indent=2).encode()
        atomic_write(args.json, lambda fh: fh.write(text), what="JSON results")
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
