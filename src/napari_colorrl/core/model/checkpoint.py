"""Saving and loading napari-colorrl checkpoints: one plain-data torch file per model.

A checkpoint is a dict holding only tensors, strings, numbers, lists and dicts:

``format``          "napari-colorrl"
``format_version``  int (``FORMAT_VERSION``)
``config``          the full ``ColorRLConfig`` as a JSON string
``model_state``     the network's state_dict
``optimizer_state`` the optimizer's state_dict, or None
``step``            number of training updates; ``episodes``: number of training episodes
``extra``           a dict of plain data (metrics, elapsed time, RNG states as tensors/lists)
``version``         the napari-colorrl version that wrote it

Files are written atomically (temporary file + ``os.replace``) and read with
``torch.load(..., weights_only=True)`` only, so loading a file never runs code from it.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..config import ColorRLConfig
from ..data.writing import atomic_write

FORMAT = "napari-colorrl"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be loaded as a napari-colorrl checkpoint (the message says why)."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file."""

    config: ColorRLConfig
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    step: int = 0
    episodes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    format_version: int = FORMAT_VERSION


def save_checkpoint(
    path: str | Path,
    *,
    config: ColorRLConfig,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any] | None = None,
    step: int = 0,
    episodes: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path.

    model_state / optimizer_state: ``module.state_dict()`` / ``optimizer.state_dict()``.
    extra: plain data only (str, int, float, bool, None, lists, dicts with str keys, tensors);
    numpy scalars and arrays are converted to Python numbers and tensors. Anything else raises
    TypeError naming the entry. A folder that cannot be written raises PermissionError.
    """
    from ... import __version__

    if not isinstance(config, ColorRLConfig):
        raise TypeError(f"config must be a ColorRLConfig, got {type(config).__name__}.")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "model_state": _state_dict(model_state),
        "optimizer_state": None
        if optimizer_state is None
        else _plain(dict(optimizer_state), "optimizer_state"),
        "step": int(step),
        "episodes": int(episodes),
        "extra": _plain(dict(extra or {}), "extra"),
        "version": str(__version__),
    }
    return atomic_write(path, lambda fh: torch.save(payload, fh), what="checkpoint")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    Uses ``torch.load(weights_only=True)``: files holding Python objects other than plain data are
    refused. Raises ``CheckpointError`` for a missing, empty, truncated or corrupt file, a file of
    another kind (e.g. a bare state_dict), or one written by a newer napari-colorrl.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} is a folder, not a file.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint file {path} is empty (an interrupted copy or save?).")
    if path.suffix.lower() == ".zip":
        raise CheckpointError(
            f"{path} is a bioimage.io package (a .zip, as `colorrl export` writes), not a "
            f"training checkpoint: it holds no optimizer or training state, so a run cannot "
            f"resume from it. Resume from the checkpoint it was exported from, or fine-tune the "
            f"package with --init.")
    return _parse(path, read_plain_data(path, f"Checkpoint file {path}", map_location))


def read_plain_data(source: str | Path | BinaryIO, subject: str, map_location: Any = "cpu"
                    ) -> Any:
    """``torch.load(source, weights_only=True)``: tensors, numbers, text, lists and dicts only.

    subject names the file in the messages ("Checkpoint file X"). CheckpointError for a file
    that would unpickle a Python object (naming it; nothing runs), and for a corrupt, truncated
    or unreadable one. Used for checkpoints and for the weights of bioimage.io packages.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
            return torch.load(source, map_location=map_location, weights_only=True)
    except PermissionError as err:
        raise CheckpointError(f"{subject} cannot be read: {err.strerror}.") from None
    except pickle.UnpicklingError as err:
        raise CheckpointError(_refusal(subject, str(err))) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, IndexError, ... on bad bytes
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{subject} is corrupt, truncated or not a torch file ({reason}). "
            f"Save it again, or copy it again if it was transferred."
        ) from None


def load_weights(
    model: torch.nn.Module,
    checkpoint: Checkpoint,
    path: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Load the checkpoint's weights (and optimizer state) into ``model``; CheckpointError when
    they do not fit the network its configuration describes (a damaged or edited file)."""
    try:
        model.load_state_dict(checkpoint.model_state)
        if optimizer is not None and checkpoint.optimizer_state is not None:
            optimizer.load_state_dict(checkpoint.optimizer_state)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"The weights in checkpoint {path} do not fit the network its configuration describes "
            f"({first}); the file is damaged or was edited. Use another checkpoint."
        ) from None


def _parse(path: Path, data: Any) -> Checkpoint:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(_foreign(path, data))
    version = data.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"Checkpoint {path} has no valid format_version; it is damaged.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {path} was written by napari-colorrl {data.get('version', '?')} in "
            f"checkpoint format {version}; this napari-colorrl reads up to format "
            f"{FORMAT_VERSION}. Upgrade napari-colorrl to load it."
        )
    try:
        config = ColorRLConfig.from_json(data["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"Checkpoint {path} holds an unusable configuration: {err}") from None
    model_state = data.get("model_state")
    if not isinstance(model_state, dict) or not all(
        isinstance(v, torch.Tensor) for v in model_state.values()
    ):
        raise CheckpointError(f"Checkpoint {path} holds no network weights (model_state).")
    optimizer_state = data.get("optimizer_state")
    if optimizer_state is not None and not isinstance(optimizer_state, dict):
        raise CheckpointError(f"Checkpoint {path} has an invalid optimizer_state.")
    extra = data.get("extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"Checkpoint {path} has an invalid 'extra' entry.")
    try:
        check_network_size(config)
    except ValueError as err:
        raise CheckpointError(f"Checkpoint {path} was refused: {err}") from None
    return Checkpoint(
        config=config,
        model_state=model_state,
        optimizer_state=optimizer_state,
        step=int(data.get("step", 0)),
        episodes=int(data.get("episodes", 0)),
        extra=extra,
        version=str(data.get("version", "")),
        format_version=version,
    )


# --- checks before anything large is allocated -------------------------------------------------
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


def network_from_checkpoint(checkpoint: Checkpoint, path: str | Path) -> torch.nn.Module:
    """The checkpoint's network with its weights: size and every tensor's name and shape are
    checked before the network is built (``load_checkpoint`` already checked the size)."""
    from .networks import build_network

    try:
        check_network_size(checkpoint.config)
    except ValueError as err:
        raise CheckpointError(f"Checkpoint {path} was refused: {err}") from None
    check_model_state(checkpoint.model_state, checkpoint.config, path)
    model = build_network(checkpoint.config)
    load_weights(model, checkpoint, path)
    return model


def check_training_state(checkpoint: Checkpoint, path: str | Path = "the checkpoint") -> None:
    """CheckpointError for saved training state that is malformed or too large to use.

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


def _check_optimizer_state(checkpoint: Checkpoint, path: str | Path) -> None:
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


def _refusal(subject: str, message: str) -> str:
    match = re.search(r"GLOBAL ([\w.]+)", message)
    if match is None:
        return (
            f"{subject} was refused: it is corrupt or not a plain-data checkpoint "
            f"(napari-colorrl only loads tensors, numbers and text, never pickled Python objects)."
        )
    return (
        f"{subject} was refused because it is not a plain-data checkpoint: loading it "
        f"would import the Python object {match.group(1)!r}, which could run code. napari-colorrl "
        f"only loads files holding tensors, numbers and text; do not use files from untrusted "
        f"sources."
    )


def _foreign(path: Path, data: Any) -> str:
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        keys = ", ".join(list(map(str, data))[:3])
        return (
            f"{path} is a bare PyTorch state_dict (tensors {keys}, ...), not a napari-colorrl "
            f"checkpoint: it lacks the configuration (steps T, input size, network shape). Use a "
            f"file written by napari-colorrl training."
        )
    kind = type(data).__name__
    return (
        f"{path} is a torch file holding a {kind} but not a napari-colorrl checkpoint (no "
        f"'format': {FORMAT!r} entry). Use a file written by napari-colorrl training."
    )


def _state_dict(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """The network's state_dict as given (an OrderedDict keeps its ``_metadata``), checked."""
    if not isinstance(state, Mapping):
        raise TypeError(f"model_state must be a state_dict, got {type(state).__name__}.")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"model_state[{key!r}] is a {type(value).__name__}, not a tensor; pass "
                f"module.state_dict()."
            )
    return state


def _plain(value: Any, where: str) -> Any:
    """``value`` with numpy scalars/arrays converted; TypeError for non-plain objects."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; use str.")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(
        f"{where} holds a {type(value).__name__}, which a plain-data checkpoint cannot store; "
        f"convert it to numbers, strings, lists, dicts or tensors (e.g. json.dumps)."
    )
