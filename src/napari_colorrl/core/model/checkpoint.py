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
``torch.load(..., weights_only=True)`` only, so loading a file never runs code from it; what they
hold is checked before anything large is allocated (``checkpoint_checks.py``).
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
from .checkpoint_checks import CheckpointError, check_model_state, check_network_size

FORMAT = "napari-colorrl"
FORMAT_VERSION = 1


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
