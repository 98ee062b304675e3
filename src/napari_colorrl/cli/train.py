"""``colorrl train``: the trainer from a terminal, with a progress bar.

Its flags are made from the settings table of ``core.config``: every setting has one
(``--reward.w_split 2.0``, ``--train.lr 3e-4``), with the table's help, type and range, and the
common ones a short name too (``--lr``, ``--batch-size``, ``--episodes``, ``--minutes``, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_colorrl.core.config import SETTINGS
from napari_colorrl.core.recipes import TRAINING_RECIPES
from napari_colorrl.core.settings import Setting

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
        "names. Settings come from the defaults (for this machine: the network and a budget in "
        "minutes), then --recipe (default 'fast'), then --config, then the setting flags given "
        "here; --init MODEL fine-tunes a model instead. Under torchrun (--nproc-per-node N, "
        "--nnodes M) every process is one worker with its own episodes and data shard; "
        "gradients are averaged (DistributedDataParallel) and rank 0 alone writes the "
        "checkpoint, the log and the progress bar (see docs/cluster.md).",
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
                           help="named trainer settings: 'fast' (the default: lr 6e-4 with "
                           "clipping, normalised advantages; learns most per CPU-minute) or "
                           "'paper' (the authors' A3C settings, lr 1e-4); --config and the "
                           "setting flags override it")
    run_group.add_argument("--overwrite", action="store_true",
                           help="replace an existing --out checkpoint (and its best model)")
    run_group.add_argument("--config", type=Path, help="JSON file of settings (partial is fine)")
    start = run_group.add_mutually_exclusive_group()
    start.add_argument("--resume", type=Path, help="continue the run of this checkpoint")
    start.add_argument("--init", metavar="MODEL", default=None,
                       help="fine-tune: start a new run from the weights and method settings "
                       "(T, network, normalisation, input, rewards) of this checkpoint, "
                       "bioimage.io package (.zip, from colorrl export) or bundled model (e.g. "
                       "nuclei-2d), with a fresh training schedule")
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
    from napari_colorrl.core.model.checkpoint_paths import (
        check_checkpoint_output,
        training_disk_bytes,
    )
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
        init=args.init,
    )
    setup = prepare_training(request)
    check_disk_space(args.out.parent, training_disk_bytes(setup.config, bool(setup.val)),
                     what="the checkpoints")
    def start(should_stop):
        return train(setup.config, setup.train, setup.val, out=args.out, resume=args.resume,
                     init=args.init, should_stop=should_stop)

    if not is_main_process():  # a torchrun worker other than rank 0: train, print nothing
        return drive(start, args.out, None, quiet=True)
    for line in setup.messages:
        print(line)
    return drive(start, args.out, args.log)


def drive(start, out: Path, log: Path | None, quiet: bool = False) -> int:
    """Run ``start(should_stop)``'s training generator with a progress bar; the exit code.

    Ctrl-C and SIGTERM stop the run after the current update with the checkpoint written
    (``core.training.stopping``); the exit code is then 130 or 143, as for death by the signal.
    "checkpoint written" is printed only when the file was written by this run.
    """
    import json
    import time
    from dataclasses import asdict

    from tqdm import tqdm

    from napari_colorrl.core.training.stopping import StopSignals

    began = time.time()
    last, last_val = None, None
    with StopSignals(announce=not quiet) as stop:
        generator = start(stop.requested)
        bar = None if quiet else tqdm(total=1000, desc="training", unit="‰", bar_format=(
            "{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}"))
        log_file = open(log, "a") if log is not None else None  # noqa: SIM115
        try:
            for last in generator:
                if last.validation is not None:
                    last_val = last.validation
                if log_file is not None:
                    log_file.write(json.dumps(asdict(last)) + "\n")
                    log_file.flush()
                if bar is None:
                    continue
                post = f"update {last.update} reward {last.reward:+.3f}"
                if last_val is not None:
                    post += f" val SBD {last_val['sbd']:.3f} AP50 {last_val['ap50']:.3f}"
                bar.set_postfix_str(post)
                bar.n = int(last.progress * 1000)
                bar.refresh()
        except KeyboardInterrupt:  # a second signal: the update was abandoned
            generator.close()  # (saves, if the interrupt landed here rather than in training)
            if bar is not None:
                bar.close()
            if not quiet:
                print(f"stopped at once by {stop.name if stop.requested() else 'Ctrl-C'}; "
                      + _written(out, began))
            return stop.exit_code
        finally:
            if log_file is not None:
                log_file.close()
    if bar is not None:
        bar.close()
    if quiet:
        return stop.exit_code if stop.requested() else 0
    if stop.requested():
        where = "" if last is None else (
            f" at update {last.update} ({100 * last.progress:.0f}% of the budget)")
        print(f"stopped by {stop.name}{where}; " + _written(out, began))
        return stop.exit_code
    print(_written(out, began))
    if last_val is not None:
        print("last validation: " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
    return 0


def _written(out: Path, since: float) -> str:
    """What is true of the checkpoint: written by this run, or not (then why nothing is lost)."""
    try:
        fresh = out.stat().st_mtime >= since - 1.0
    except OSError:
        fresh = False
    if fresh:
        return f"checkpoint written to {out}"
    if out.exists():
        return f"no new checkpoint was written; {out} is as it was before this run"
    return "no checkpoint was written (training stopped before its first update ended)"
