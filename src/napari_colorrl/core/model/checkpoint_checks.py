"""Checks of a checkpoint's contents before anything large is allocated: the size of the
network its config describes, every tensor of its weights against a meta-device build (names,
shapes, compact storage) and its training state (random states, optimizer) before ``--resume``
uses it. Nothing here builds a network with memory or loads a tensor into one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import ColorRLConfig


class CheckpointError(ValueError):
    """A file that cannot be loaded as a napari-colorrl checkpoint (the message says why)."""


#: Networks whose float32 weights exceed this are refused (the paper's 2D network: about 40 MiB).
MAX_WEIGHT_BYTES = 2 * 1024**3
#: torch's CPU random state is a uint8 tensor of this many bytes (a CUDA one is far smaller).
_MAX_RNG_BYTES = 64 * 1024
_MAX_NUMPY_RNG_CHARS = 10_000
#: Weights below this are never refused for lack of free memory.
_MIN_WEIGHT_CHECK = 64 * 1024**2


def _size(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 / 10 else f"{n / 1024**2:.1f} MiB"


def weight_bytes(config: ColorRLConfig) -> int:
    """Bytes of the float32 weights of the network ``config`` describes (nothing is built)."""
    from .networks import parameter_count

    return 4 * parameter_count(config)


def check_network_size(config: ColorRLConfig, limit: int | None = None) -> None:
    """ValueError when the network ``config`` asks for is too large to build.

    Too large: more than ``limit`` bytes of float32 weights (default ``MAX_WEIGHT_BYTES``) or more
    than the free memory. Computed from the config alone, so it runs before anything is allocated.
    """
    from ..runtime import available_bytes

    needed = weight_bytes(config)
    limit = MAX_WEIGHT_BYTES if limit is None else int(limit)
    features = list(config.network.features)
    if needed > limit:
        raise ValueError(
            f"the network it describes (features {features}, input_features "
            f"{config.network.input_features}) would need {_size(needed)} of weights, more than "
            f"the {_size(limit)} allowed; use a smaller network.features."
        )
    free = available_bytes("cpu")
    # Small networks are left to the memory checks of the work itself (image size, batch).
    if free is not None and needed > max(free, _MIN_WEIGHT_CHECK):
        raise ValueError(
            f"the network it describes (features {features}) would need {_size(needed)} of "
            f"weights but only {_size(free)} of memory is free; use a smaller network or free "
            f"memory."
        )


def expected_state_shapes(config: ColorRLConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the state_dict of ``build_network(config)``.

    Built on torch's meta device: shapes without memory. Call ``check_network_size`` first.
    """
    from .networks import build_network

    with torch.device("meta"):
        model = build_network(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _compact(tensor: torch.Tensor) -> bool:
    """False for a tensor that views more elements than its storage holds (stride-0 tricks)."""
    if tensor.numel() == 0:
        return True
    if any(st < 0 for st in tensor.stride()):
        return False
    try:
        storage = tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):  # pragma: no cover - exotic tensor kinds
        return False
    return tensor.numel() * tensor.element_size() <= storage and (
        all(st > 0 for st, n in zip(tensor.stride(), tensor.shape) if n > 1))


def check_model_state(
    state: Mapping[str, Any], config: ColorRLConfig, path: str | Path, what: str = "weights",
    container: str = "checkpoint",
) -> None:
    """CheckpointError unless ``state`` holds exactly the tensors, with the shapes, that the
    network of ``config`` has (checked against a meta-device build, before anything is loaded).
    container: what ``path`` is, in the message ("checkpoint", "package")."""
    expected = expected_state_shapes(config)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"The {container} {path} has no valid {what}; it is damaged.")
    missing = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} "
        f"(expected {expected[k]})"
        for k, v in state.items()
        if k in expected and (not isinstance(v, torch.Tensor) or tuple(v.shape) != expected[k])
    ]
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and (
        not _compact(v) or not (v.is_floating_point() or k.endswith("num_batches_tracked")))]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if unknown:
        problems.append(f"unknown {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    if wrong:
        problems.append(f"wrong shape {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
    if bad:
        problems.append(f"malformed tensors {', '.join(bad[:3])}")
    if problems:
        raise CheckpointError(
            f"The {what} in {container} {path} do not fit the network its configuration "
            f"describes ({'; '.join(problems)}); the file is damaged or was edited. Use another "
            f"{container}."
        )


def check_training_state(checkpoint: Any, path: str | Path = "the checkpoint") -> None:
    """CheckpointError for saved training state (of a ``checkpoint.Checkpoint``) that is
    malformed or too large to use.

    Checks, before any of it is used for ``--resume``: the torch/CUDA random states (small,
    compact uint8 tensors), the numpy random state (a short JSON text), the raw training weights
    (``extra["training_weights"]``, like the model's) and the optimizer state (every tensor
    compact and of its parameter's shape). Nothing is allocated.
    """
    extra = checkpoint.extra or {}
    for key in ("torch_rng", "cuda_rng"):
        if key not in extra:
            continue
        value = extra[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"Checkpoint {path} has an invalid {key} (not a tensor); it "
                                  f"is damaged. Start a new run instead of resuming.")
        if (value.dtype != torch.uint8 or value.ndim != 1 or value.numel() > _MAX_RNG_BYTES
                or not _compact(value)):
            raise CheckpointError(
                f"Checkpoint {path} has a malformed random state {key} (dtype {value.dtype}, "
                f"shape {tuple(value.shape)}, strides {value.stride()}); it is damaged or was "
                f"crafted. Start a new run instead of resuming."
            )
    numpy_rng = extra.get("numpy_rng")
    if numpy_rng is not None:
        if not isinstance(numpy_rng, str) or len(numpy_rng) > _MAX_NUMPY_RNG_CHARS:
            raise CheckpointError(f"Checkpoint {path} has a malformed numpy_rng; it is damaged. "
                                  f"Start a new run instead of resuming.")
    if extra.get("training_weights") is not None:
        check_model_state(extra["training_weights"], checkpoint.config, path,
                          what="training weights")
    _check_optimizer_state(checkpoint, path)


def _check_optimizer_state(checkpoint: Any, path: str | Path) -> None:
    state = checkpoint.optimizer_state
    if state is None:
        return
    shapes = list(expected_parameter_shapes(checkpoint.config))
    fail = f"Checkpoint {path} has a malformed optimizer_state"
    advice = "; it is damaged or was edited. Start a new run instead of resuming."
    per_param, groups = state.get("state", {}), state.get("param_groups", [])
    if not isinstance(per_param, Mapping) or not isinstance(groups, list):
        raise CheckpointError(fail + advice)
    for index, entry in per_param.items():
        if not isinstance(index, int) or not 0 <= index < len(shapes) or not isinstance(
                entry, Mapping):
            raise CheckpointError(f"{fail} (entry {index!r}){advice}")
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                continue
            scalar = value.numel() == 1 and name == "step"
            if not _compact(value) or (not scalar and tuple(value.shape) != shapes[index]):
                raise CheckpointError(
                    f"{fail} ({name} of parameter {index} has shape {tuple(value.shape)}, "
                    f"expected {shapes[index]}){advice}"
                )


def expected_parameter_shapes(config: ColorRLConfig) -> list[tuple[int, ...]]:
    """Shapes of ``build_network(config).parameters()`` in order (a meta-device build)."""
    from .networks import build_network

    with torch.device("meta"):
        model = build_network(config)
    return [tuple(p.shape) for p in model.parameters()]
