"""Data-parallel training on torch.distributed: one worker per process, started by torchrun.

``torchrun --nproc-per-node N [--nnodes M ...] -m napari_colorrl train ...`` sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in every process; ``setup`` reads them,
joins the process group (NCCL on GPUs, gloo on CPU) and picks ``cuda:LOCAL_RANK``. Each process
plays its own batch of episodes (``train.batch_size`` environments, run batched on its device)
from its own shard of the training samples with its own random streams; DistributedDataParallel
averages the gradients, so every process holds the same weights after every update. Without
torchrun's variables (or with WORLD_SIZE = 1) nothing here does anything.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..runtime import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job. ``owns_group``: ``setup`` created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and logs and validates."""
        return self.rank == 0


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """RANK as set by torchrun (0 without it)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True in a plain run and in rank 0 of a torchrun job (usable before ``setup``)."""
    return env_rank() == 0


def _device(name: str | None, local_rank: int) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = resolve_device(name)
    if device.type == "mps":
        raise ValueError(
            "Distributed training runs on CUDA GPUs (NCCL) or on CPUs (gloo), not on MPS; "
            "use --device cpu or start a single process."
        )
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(
                f"torchrun started process LOCAL_RANK={local_rank} on a node with {count} CUDA "
                f"device(s); use --nproc-per-node {count} (one process per GPU) or --device cpu."
            )
        device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str | None = "auto") -> tuple[DistributedContext, torch.device]:
    """Join torchrun's process group if there is one; return the context and this rank's device.

    Without torchrun (no WORLD_SIZE, or WORLD_SIZE = 1) this is ``resolve_device(device_name)``.
    Under torchrun, "auto" is CUDA when there is one, else the CPU; any CUDA device becomes
    ``cuda:LOCAL_RANK`` (backend NCCL, one GPU per process); the CPU uses gloo. A process group
    that already exists (e.g. made by a test or a launcher) is used as it is and left open.
    """
    world = dist.get_world_size() if dist.is_initialized() else env_world_size()
    if world <= 1:
        return DistributedContext(), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_name, local_rank)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    context = DistributedContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
        backend=str(dist.get_backend()), owns_group=owns,
    )
    return context, device


def teardown(context: DistributedContext) -> None:
    """Leave the process group if ``setup`` made it. Drop the DDP wrapper before calling this.

    A gloo worker thread takes the GIL to release the tensors of its last collective. If the
    group is destroyed while it has not yet done so, from code that holds the GIL (a garbage
    collection of the DDP wrapper, which holds the group), joining that thread deadlocks (seen
    with torch 2.13 on a busy CPU). So: let the threads finish (sleep releases the GIL), collect
    the wrapper now rather than at some later moment, then leave the group.
    """
    if context.owns_group and dist.is_initialized():
        time.sleep(0.2)
        gc.collect()
        dist.destroy_process_group()


def describe(batch_size: int, lr: float, device_name: str | None = "auto") -> str | None:
    """One line about the distributed run torchrun's variables announce, or None without them."""
    world = env_world_size()
    if world <= 1:
        return None
    name = (device_name or "auto").lower()
    gpu = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    return (
        f"Distributed: {world} processes ({'NCCL, one GPU each' if gpu else 'gloo on CPU'}) x "
        f"{batch_size} environments per process = effective batch {world * batch_size} episodes "
        f"per update; gradients are averaged over processes, lr {lr:g} (not scaled)."
    )


def shard(samples: Sequence, context: DistributedContext) -> list:
    """This rank's share of the training samples (all of them when there are fewer than ranks)."""
    if not context.enabled or len(samples) < context.world_size:
        return list(samples)
    return list(samples[context.rank::context.world_size])


def worker_rng(seed: int, context: DistributedContext, update: int) -> np.random.Generator:
    """Seed this worker's torch stream (actions) and return its numpy stream (samples, augment).

    Each (seed, rank, update) gives independent streams, so workers play different episodes and
    a resumed run does not replay the streams it started with.
    """
    sequence = np.random.SeedSequence([int(seed), int(context.rank), int(update)])
    torch.manual_seed(int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(sequence)


class _Branches(nn.Module):
    """Routes one ``forward`` to either branch of the network (see ``DistributedNet``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image, steps=None, image_features=None, encode_only: bool = False):
        if encode_only:
            return self.net.encode_image(image)
        return self.net(image, steps, image_features=image_features)


class DistributedNet(nn.Module):
    """The network behind DistributedDataParallel, with the network's call signature.

    The rollout encodes the image once (``encode_image``) and reuses the features in T forward
    passes. DDP only hooks ``forward``, and a bare ``ddp.module.encode_image`` would run outside
    it, so ``encode_image`` goes through DDP's forward too (``_Branches``). With
    ``find_unused_parameters=False`` DDP does not try to guess from one forward's outputs which
    parameters a loss uses (with T + 1 forwards before one backward that guess would be wrong:
    the image branch appears only in the first); it waits in ``backward`` for every parameter's
    gradient, and the loss reaches all of them. So ``run_update`` gets the cache and DDP
    averages every gradient, once per backward.
    """

    def __init__(self, net: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.ddp = nn.parallel.DistributedDataParallel(
            _Branches(net),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=False,
        )

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.ddp(image, encode_only=True)

    def forward(self, image, steps, image_features=None):
        return self.ddp(image, steps, image_features=image_features)


def wrap(net: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """``net`` itself in a plain run; a ``DistributedNet`` (made after any weights are loaded:
    DDP broadcasts rank 0's parameters here) in a distributed one. Save ``net.state_dict()``,
    never the wrapper's, so checkpoints have the same keys either way."""
    return DistributedNet(net, device) if context.enabled else net


def mean_over_ranks(stats, context: DistributedContext):
    """A copy of a dataclass of scalars (floats and dicts of floats) averaged over all ranks.

    One all-reduce; a NaN on any rank makes the mean NaN on every rank, so all stop together.
    """
    if not context.enabled:
        return stats
    names, values = [], []
    for f in dataclasses.fields(stats):
        value = getattr(stats, f.name)
        if isinstance(value, dict):
            for key, item in value.items():
                names.append((f.name, key))
                values.append(float(item))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            names.append((f.name, None))
            values.append(float(value))
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(context))
    dist.all_reduce(tensor)
    tensor /= context.world_size
    changes: dict = {}
    for (name, key), value in zip(names, tensor.tolist(), strict=True):
        if key is None:
            changes[name] = value
        else:
            changes.setdefault(name, dict(getattr(stats, name)))[key] = value
    return dataclasses.replace(stats, **changes)


def broadcast_float(value: float, context: DistributedContext) -> float:
    """Rank 0's ``value`` on every rank (``value`` itself in a plain run)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device(context))
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is True on any (``flag`` itself in a plain run)."""
    if not context.enabled:
        return bool(flag)
    tensor = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64,
                          device=_collective_device(context))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


class WorkerFailed(RuntimeError):
    """Another worker of the torchrun job failed while setting up; this one stops too."""


def raise_unless_all_ready(error: BaseException | None, context: DistributedContext) -> None:
    """Raise ``error`` if this worker's setup failed, or ``WorkerFailed`` if another's did.

    Every worker calls this once, after its checks and before its first collective of training
    (DDP's broadcast of the weights): one all-reduce tells each which ranks failed, so a rank
    whose data or resume file is bad stops the whole job at once, with its own message, instead
    of leaving the others waiting until the process group's timeout (30 minutes by default).
    """
    if not context.enabled:
        if error is not None:
            raise error
        return
    failed = torch.zeros(context.world_size, dtype=torch.float64,
                         device=_collective_device(context))
    failed[context.rank] = 1.0 if error is not None else 0.0
    dist.all_reduce(failed)
    if error is not None:
        raise error
    ranks = [rank for rank, flag in enumerate(failed.tolist()) if flag > 0]
    if ranks:
        raise WorkerFailed(
            f"Worker(s) {', '.join(map(str, ranks))} of the torchrun job could not start "
            f"training (their message says why); worker {context.rank} stops too."
        )


def _collective_device(context: DistributedContext) -> torch.device:
    if context.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
