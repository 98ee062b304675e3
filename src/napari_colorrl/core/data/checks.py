"""Checks of what the user feeds the core, each failing with a message that names the fix.

Errors the user must fix raise ``ValueError`` (or ``PermissionError`` for an output that cannot
be written); inputs that still work but deserve attention emit a ``ColorRLWarning``, which the CLI
prints as one line and a napari thread worker turns into a notification.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import Sample, as_label_array, shapes_match

#: Label ids above this are relabelled 1..N: the training core works on int32 ids.
MAX_LABEL_ID = np.iinfo(np.int32).max


class ColorRLWarning(UserWarning):
    """An input that works but probably not as the user meant (the message says what to do)."""


def warn(message: str) -> None:
    warnings.warn(message, ColorRLWarning, stacklevel=3)


def check_image(image: np.ndarray, name: str = "The image") -> None:
    """Raise for an empty or non-numeric image; warn for NaN/inf values or a constant image."""
    image = np.asarray(image)
    if image.size == 0 or 0 in image.shape:
        raise ValueError(f"{name} is empty (shape {image.shape}); give an image with pixels.")
    if image.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} has dtype {image.dtype}; give a grayscale or RGB image of integers or "
            f"floats."
        )
    if image.dtype.kind == "f":
        finite = np.isfinite(image)
        if not finite.all():
            bad = int(image.size - np.count_nonzero(finite))
            warn(
                f"{name} holds {bad} NaN or infinite value(s); they were replaced by the "
                f"image's lowest finite value. Fix or mask them for a better result."
            )
            if not finite.any():
                return
            image = image[finite]
    if image.min() == image.max():
        warn(
            f"{name} is constant (every pixel is {image.flat[0].item()!r}): there is nothing to "
            f"segment. Check that the right layer or file (and channel) was chosen."
        )


def check_training_samples(samples: Sequence, ndim: int, what: str = "training") -> list[Sample]:
    """Checked copies of (image, labels) samples, ready for the ``Environment``.

    Labels must be whole, non-negative numbers (floats holding whole numbers are accepted) of the
    image's spatial shape; ids too large for int32 are relabelled 1..N. Raises ValueError naming
    the sample and the fix; warns for images with NaN/inf or no contrast.
    """
    checked: list[Sample] = []
    for sample in samples:
        name = f"The {what} sample {sample.name!r}"
        image = np.asarray(sample.image)
        labels = as_label_array(
            np.asarray(sample.labels), source=f"The labels of the {what} sample {sample.name!r}")
        if labels.ndim != ndim:
            raise ValueError(
                f"{name} has {labels.ndim}D labels {labels.shape} but the model is {ndim}D; "
                f"use a {labels.ndim}D model for {labels.ndim}D data."
                if labels.ndim in (2, 3) else
                f"{name} has labels of shape {labels.shape}; give 2D or 3D labels."
            )
        if not shapes_match(image.shape, labels.shape):
            raise ValueError(
                f"{name}: the image has shape {image.shape} but its labels {labels.shape}; an "
                f"image and its labels must have the same size (RGB or up to 4 channels may be "
                f"added first or last)."
            )
        if image.ndim == ndim + 1 and image.shape[1:] == labels.shape != image.shape[:-1]:
            image = np.moveaxis(image, 0, -1)  # channels first: the labels say so; put them last
        check_image(image, f"The image of the {what} sample {sample.name!r}")
        if labels.size and int(labels.max()) > MAX_LABEL_ID:
            ids, inverse = np.unique(labels, return_inverse=True)  # ids sorted: 0 stays 0
            labels = (inverse.reshape(labels.shape) + int(ids[0] != 0)).astype(np.int32)
        checked.append(Sample(name=sample.name, image=image, labels=labels))
    if what == "training" and checked and not any(s.labels.any() for s in checked):
        raise ValueError(
            "The training labels are empty: no sample holds an object (every id is 0). Label at "
            "least one object per image (ids 1..N, 0 = background)."
        )
    return checked


def ensure_writable(path: str | Path, what: str = "output") -> Path:
    """Create the folder ``path`` if needed and check that a file can be written in it.

    Raises PermissionError naming the folder and the fix; nothing is left behind.
    """
    folder = Path(path).expanduser()
    probe = folder / f".colorrl-write-test-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise PermissionError(
            f"Cannot write the {what} in {folder}: {reason}. Choose an output location in a "
            f"folder you can write to."
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


def _size(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 / 10 else f"{n / 1024**2:.1f} MiB"


def check_disk_space(folder: str | Path, needed_bytes: int, what: str = "the output") -> None:
    """OSError naming the free and the needed space when ``folder`` (or, if it does not exist
    yet, its nearest existing parent) has less than ``needed_bytes`` free."""
    place = Path(folder).expanduser().absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return  # unknown: the atomic write still keeps the previous file if the disk fills
    if needed_bytes > free:
        raise OSError(
            f"Not enough disk space for {what} in {folder}: it needs about {_size(needed_bytes)} "
            f"but only {_size(free)} is free. Free some space or write to another disk."
        )
