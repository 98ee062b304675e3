"""``colorrl train``: the trainer from a terminal, with a progress bar.

Its flags are made from the settings table of ``core.config``: every setting has one
(``--reward.w_split 2.0``, ``--train.lr 3e-4``), with the table's help, type and range, and the
common ones a short name too (``--lr``, ``--batch-size``, ``--episodes``, ``--minutes``, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_colorrl.core.config import SETTINGS, TRAINING_RECIPES, Setting

#: Short flags for the settings used most (every setting also has its --section.name flag).
SHORT_FLAGS = {
    "train.episodes": "--episodes", "train.minutes": "--minutes",
    "train.batch_size": "--batch-size", "train.lr": "--lr", "train.precision": "--precision",
    "train.device": "--device", "train.seed": "--seed", "train.threads": "--threads",
}
SECTIONS = {"": "method", "reward": "rewards", "network": "network",
            "normalization": "normalisation", "train": "training", "inference": "inference"}
_SETTING_DEST = "setting:"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a ColorRL agent on images and instance labels",
        description="Train a ColorRL agent. Data: --data DIR (DIR/train/{images,masks} and "
        "optional DIR/val/{images,masks}) or --images/--labels folders with files of matching "
        "names. Settings come from the defaults, then --recipe, then --config, then the setting "
        "flags given here. Under torchrun (--nproc-per-node N, --nnodes M) every process is one "
        "worker with its own episodes and data shard; gradients are averaged "
        "(DistributedDataParallel) and rank 0 alone writes the checkpoint, the log and the "
        "progress bar (see docs/cluster.md).",
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, help="folder with train/ and optional val/")
    data.add_argument("--images", type=Path, help="folder of training images")
    data.add_argument("--labels", type=Path, help="folder of training labels (same names)")
    data.add_argument("--val-images", type=Path, help="folder of validation images")
    data.add_argument("--val-labels", type=Path, help="folder of validation labels")
    data.add_argument("--ndim", type=int, choices=(2, 3), default=None,
                      help="2 for images, 3 for volumes (default: from the data)")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--out", type=Path, default=Path("colorrl.pt"),
                           help="checkpoint to write (default: colorrl.pt)")
    run_group.add_argument("--recipe", choices=tuple(TRAINING_RECIPES), default=None,
                           help="named trainer settings: 'paper' (the authors' A3C settings, "
                           "lr 1e-4; the default) or 'fast' (lr 6e-4 with clipping, normalised "
                           "advantages: learns more per CPU-minute); --config and the setting "
                           "flags override it")
    run_group.add_argument("--overwrite", action="store_true",
                           help="replace an existing --out checkpoint (and its best model)")
    run_group.add_argument("--config", type=Path, help="JSON file of settings (partial is fine)")
    run_group.add_argument("--resume", type=Path, help="continue from this checkpoint")
    run_group.add_argument("--log", "--log-file", dest="log", type=Path, default=None,
                           help="append one JSON line per update to this file (under torchrun "
                           "write --log-file: torchrun reads --log as an abbreviation of its "
                           "own options)")
    run_group.add_argument("--size", type=int, default=None,
                           help="network input size S on every axis (input_size): 2D images "
                           "are resized to S x S, volumes cropped to S^3")
    run_group.add_argument("--steps", type=_steps, default=None,
                           help="number of coloring steps T (1-16), or 'auto' (the default: "
                           "from the labels' neighbour count)")
    groups = {section: p.add_argument_group(f"{title} settings")
              for section, title in SECTIONS.items()}
    budget = groups["train"].add_mutually_exclusive_group()
    for spec in SETTINGS:
        if spec.path in ("ndim", "steps", "input_size"):
            continue  # --ndim, --steps and --size above
        where = budget if spec.path in ("train.episodes", "train.minutes") else groups[
            spec.section]
        names = [f"--{spec.path}"] + ([SHORT_FLAGS[spec.path]] if spec.path in SHORT_FLAGS
                                      else [])
        where.add_argument(*names[::-1], dest=_SETTING_DEST + spec.path, default=None,
                           **_argument(spec))
    p.set_defaults(func=run)


def _argument(spec: Setting) -> dict[str, Any]:
    """argparse options of one setting: its type, its help with the default and the range."""
    default = list(spec.default) if spec.is_tuple else spec.default
    help_text = f"{spec.help} (default {default}; {spec.range_text()})".replace("%", "%%")
    options: dict[str, Any] = {"help": help_text, "type": _parser(spec)}
    if spec.choices is not None:
        options["choices"] = spec.choices
    else:
        options["metavar"] = spec.kind.__name__.upper()
    if spec.is_tuple:
        options["nargs"] = "+"
    return options


def _parser(spec: Setting):
    def parse(text: str) -> Any:
        if spec.optional and text.lower() in ("none", "null"):
            return None
        if spec.kind is bool:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise argparse.ArgumentTypeError(f"give true or false, not {text!r}")
            return text.lower() in ("true", "yes", "1")
        try:
            return spec.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"give {spec.range_text()}, not {text!r}") from None

    parse.__name__ = spec.kind.__name__
    return parse


def _steps(text: str) -> int | str:
    if text.lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number or 'auto', not {text!r}") from None


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags, as dotted paths (they beat --recipe and --config)."""
    settings = {key[len(_SETTING_DEST):]: value for key, value in vars(args).items()
                if key.startswith(_SETTING_DEST) and value is not None}
    if args.size is not None:
        settings["input_size"] = args.size
    if args.steps is not None:
        settings["steps"] = args.steps
    return settings


def run(args: argparse.Namespace) -> int:
    from napari_colorrl.core.data.checks import check_disk_space, ensure_writable
    from napari_colorrl.core.model.checkpoint import check_checkpoint_output, training_disk_bytes
    from napari_colorrl.core.training.distributed import is_main_process
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
    from napari_colorrl.core.training.trainer import train

    # Before reading any data: a bad output would only fail at the first checkpoint.
    check_checkpoint_output(args.out, resume=args.resume, overwrite=args.overwrite)
    ensure_writable(args.out.parent, what="checkpoint")
    if args.log is not None:
        ensure_writable(args.log.parent, what="log")
    request = TrainingRequest(
        data=args.data, images=args.images, labels=args.labels, val_images=args.val_images,
        val_labels=args.val_labels, ndim=args.ndim, config_file=args.config,
        recipe=args.recipe, resume=args.resume, settings=settings_from_args(args),
    )
    setup = prepare_training(request)
    check_disk_space(args.out.parent, training_disk_bytes(setup.config, bool(setup.val)),
                     what="the checkpoints")
    generator = train(setup.config, setup.train, setup.val, out=args.out, resume=args.resume)
    if not is_main_process():  # a torchrun worker other than rank 0: train, print nothing
        for _ in generator:
            pass
        return 0
    for line in setup.messages:
        print(line)
    return drive(generator, args.out, args.log)


def drive(generator, out: Path, log: Path | None) -> int:
    import json
    from dataclasses import asdict

    from tqdm import tqdm

    bar = tqdm(total=1000, desc="training", unit="‰", bar_format=(
        "{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}"))
    last_val = None
    log_file = open(log, "a") if log is not None else None  # noqa: SIM115
    try:
        for report in generator:
            if report.validation is not None:
                last_val = report.validation
            post = f"update {report.update} reward {report.reward:+.3f}"
            if last_val is not None:
                post += f" val SBD {last_val['sbd']:.3f} AP50 {last_val['ap50']:.3f}"
            bar.set_postfix_str(post)
            bar.n = int(report.progress * 1000)
            bar.refresh()
            if log_file is not None:
                log_file.write(json.dumps(asdict(report)) + "\n")
                log_file.flush()
    except KeyboardInterrupt:
        generator.close()
        bar.close()
        print(f"stopped; checkpoint written to {out}")
        return 130
    finally:
        if log_file is not None:
            log_file.close()
    bar.close()
    print(f"checkpoint written to {out}")
    if last_val is not None:
        print("last validation: " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
    return 0
