"""Writing label files and TIFFs, and any file, atomically: into a temporary file in the
destination folder, renamed into place only when complete, so a failed or interrupted write
leaves the previous file as it was (no Qt, no napari, no torch)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .files import TIFF_SUFFIXES, as_label_array, smallest_uint


def write_labels(path: str | Path, labels: np.ndarray, tag: str | None = None) -> Path:
    """Write labels as a zlib-compressed TIFF in uint16, or uint32 when ids exceed 65535.

    tag: the TIFF Software tag (``PREDICTION_TAG`` for predictions), default tifffile's."""
    path = _tiff_path(path)
    data = as_label_array(labels, source="The labels to write")
    top = int(data.max()) if data.size else 0
    if top > np.iinfo(np.uint32).max:
        raise ValueError(f"Label id {top} does not fit in uint32; relabel the objects 1..N.")
    data = np.ascontiguousarray(data.astype(smallest_uint(top, (np.uint16, np.uint32))))
    return _write_tiff_atomic(path, data, photometric="minisblack", what="label file", tag=tag)


def write_tiff(path: str | Path, array: np.ndarray, tag: str | None = None) -> Path:
    """Write any array as a zlib-compressed TIFF (booleans as uint8; (H, W, 3|4) uint8 as RGB);
    tag: as in ``write_labels``."""
    path = _tiff_path(path)
    data = np.ascontiguousarray(array, dtype=np.uint8 if np.asarray(array).dtype == bool else None)
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4) and data.dtype == np.uint8
    return _write_tiff_atomic(path, data, photometric="rgb" if rgb else "minisblack", what="TIFF",
                              tag=tag)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], what: str = "file") -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it into place.

    The temporary file lives in the destination folder (so ``os.replace`` is atomic) and is
    removed when ``write`` fails; an existing ``path`` is left untouched in that case. The parent
    folder is created. A folder that cannot be written raises PermissionError naming it.
    """
    path = Path(path)
    parent = path.parent
    tmp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never clobber another writer's file; mode 0o666 lets the umask apply.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except PermissionError as err:
        raise PermissionError(
            f"Cannot write the {what} {path}: the folder {parent} is not writable "
            f"({err.strerror}). Choose another output location."
        ) from None
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        free, written = _free_bytes(parent), 0  # free space before the part is removed
        with contextlib.suppress(OSError):
            written = tmp.stat().st_size
            tmp.unlink()
        if isinstance(err, Exception) and _disk_full(err, free):
            kept = f"; the previous {what} is kept as it was" if path.exists() else ""
            raise OSError(
                errno.ENOSPC,
                f"The disk is full: the {what} {path} could not be written (stopped after "
                f"{_megabytes(written)}, {_megabytes(_free_bytes(parent))} free in {parent})"
                f"{kept}. Free some space or write to another disk.",
            ) from None
        raise
    return path


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def _megabytes(n: int) -> str:
    return "an unknown amount" if n < 0 else f"{n / 1024**2:.1f} MB"


def _disk_full(err: Exception, free: int) -> bool:
    """Whether a write failed for want of space: ENOSPC or EDQUOT, or another I/O error (torch
    reports a short write as "unexpected pos ...") when the disk had under 4 MiB left."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, (OSError, RuntimeError)) and 0 <= free < 4 * 1024**2


def _write_tiff_atomic(
    path: Path, data: np.ndarray, photometric: str, what: str, tag: str | None = None
) -> Path:
    import tifffile

    options = {"photometric": photometric, "compression": "zlib"}
    if tag is not None:
        options["software"] = tag
    return atomic_write(path, lambda fh: tifffile.imwrite(fh, data, **options), what=what)


def _tiff_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ValueError(f"Cannot write {path}: only TIFF output is supported, name it *.tif.")
    return path
