"""``colorrl train``: the trainer from a terminal, with a progress bar."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_colorrl.core.config import PRECISIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a ColorRL agent on images and instance labels",
        description="Train a ColorRL agent. Data: --data DIR (DIR/train/{images,masks} and "
        "optional DIR/val/{images,masks}, the layout of ../shared/data) or --images/--labels "
        "folders with files of matching names. Settings come from the defaults, then --config, "
        "then the flags given here. Under torchrun (--nproc-per-node N, --nnodes M) every "
        "process is one worker with its own episodes and data shard; gradients are averaged "
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
    group = p.add_argument_group("run")
    group.add_argument("--out", type=Path, default=Path("colorrl.pt"),
                     help="checkpoint to write (default: colorrl.pt)")
    budget = group.add_mutually_exclusive_group()
    budget.add_argument("--episodes", type=int, help="number of training episodes")
    budget.add_argument("--minutes", type=float, help="training time budget in minutes")
    group.add_argument("--size", type=int, default=None,
                     help="network input size S: 2D images are resized to S x S (predictions "
                     "are resized back); for volumes, random crops of S^3")
    group.add_argument("--batch-size", type=int, default=None,
                     help="environments (episodes) per process played batched on its device "
                     "for each update (train.batch_size; effective batch = this x processes)")
    group.add_argument("--precision", choices=PRECISIONS, default=None,
                     help="arithmetic of the training rollout (train.precision): float32 (the "
                     "default) or bfloat16 (faster 2D updates on CPUs and GPUs with native "
                     "bfloat16; validation and inference stay float32)")
    group.add_argument("--steps", default=None, help="number of coloring steps T, or 'auto'")
    group.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps")
    group.add_argument("--seed", type=int, default=None, help="random seed")
    group.add_argument("--recipe", choices=("fast", "paper"), default=None,
                     help="trainer settings: 'paper' (the authors' A3C settings, lr 1e-4; the "
                     "default) or 'fast' (lr 6e-4 with clipping, normalised advantages: learns "
                     "more per CPU-minute); --config and the flags override it")
    group.add_argument("--config", type=Path, help="JSON file of trainer and network settings")
    group.add_argument("--resume", type=Path, help="continue from this checkpoint")
    group.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    group.add_argument("--log", "--log-file", dest="log", type=Path, default=None,
                     help="append one JSON line per update to this file (under torchrun write "
                     "--log-file: torchrun reads --log as an abbreviation of its own options)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_colorrl.core.data.checks import ensure_writable
    from napari_colorrl.core.training.distributed import is_main_process
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training
    from napari_colorrl.core.training.trainer import train

    # Before reading any data: an unwritable output would only fail at the first checkpoint.
    ensure_writable(args.out.parent, what="checkpoint")
    if args.log is not None:
        ensure_writable(args.log.parent, what="log")
    request = TrainingRequest(
        data=args.data, images=args.images, labels=args.labels,
        val_images=args.val_images, val_labels=args.val_labels, ndim=args.ndim,
        config_file=args.config, episodes=args.episodes, minutes=args.minutes,
        size=args.size, steps=args.steps, device=args.device, seed=args.seed,
        threads=args.threads, resume=args.resume, recipe=args.recipe,
        overrides=_train_overrides(args),
    )
    setup = prepare_training(request)
    generator = train(setup.config, setup.train, setup.val, out=args.out, resume=args.resume)
    if not is_main_process():  # a torchrun worker other than rank 0: train, print nothing
        for _ in generator:
            pass
        return 0
    for line in setup.messages:
        print(line)
    return drive(generator, args.out, args.log)


def _train_overrides(args: argparse.Namespace) -> dict:
    """The trainer flags given on the command line, as a partial config (they beat --config)."""
    given = {"batch_size": args.batch_size, "precision": args.precision}
    train = {key: value for key, value in given.items() if value is not None}
    return {"train": train} if train else {}


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
