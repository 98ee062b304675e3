"""Images and labels too large for memory: read and written a window at a time.

An image may be any array that gives numpy data for a tuple of slices (``array[y0:y1, x0:x1]``)
and has ``shape`` and ``dtype``: a numpy array, a memory-mapped TIFF (``tifffile.memmap``), a
zarr array, a dask array (what napari layers of large data hold, e.g. the highest resolution of
a multiscale layer). Only the windows asked for are read, so nothing here loads a whole image.

Files: TIFF through tifffile (a memory map when the file is stored plainly, else tifffile's zarr
store of its pages and tiles), zarr arrays through zarr (the one library for chunked arrays on
disk, as napari uses). Labels are written the same way: into a TIFF memory map or a zarr array,
window by window.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Images whose data exceed this many bytes (or a quarter of the free memory, if less) are read
#: lazily by ``open_image``; smaller ones are read whole, as before.
LAZY_BYTES = 1024**3
ZARR_SUFFIXES = (".zarr",)


def is_lazy(array: Any) -> bool:
    """True for an array that is not an in-memory numpy array (a memory map counts as lazy)."""
    return not isinstance(array, np.ndarray) or isinstance(array, np.memmap)


class AxesView:
    """A view of ``base`` with some axes fixed at an index (``fixed``: axis -> index), e.g. one
    frame of a stack or a TIFF's singleton axes dropped, that reads and writes only the windows
    asked for (numpy's own views do this too, zarr's indexing does not)."""

    def __init__(self, base: Any, fixed: dict[int, int]):
        self.base = base
        self.fixed = {int(k) % len(base.shape): int(v) for k, v in fixed.items()}
        self.shape = tuple(s for axis, s in enumerate(base.shape) if axis not in self.fixed)
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def _key(self, key: Any) -> tuple:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        parts, items = [], iter(key)
        for axis in range(len(self.base.shape)):
            parts.append(self.fixed[axis] if axis in self.fixed else next(items))
        return tuple(parts)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.base[self._key(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self.base[self._key(key)] = value

    def __array__(self, dtype=None, copy=None):  # noqa: ARG002 - numpy's protocol
        data = self[...]
        return data if dtype is None else data.astype(dtype)


class ImageSource:
    """One image or volume of a ``ndim``-D model, read a window at a time.

    array: numpy or lazy (see the module), of ``ndim`` spatial axes and an optional channel
    axis (first or last, up to 4 channels; ``channel_axis`` "auto" finds it as
    ``normalize.channel_axis`` does, from the shape alone). ValueError, naming the problem,
    for an empty image, a non-numeric dtype or a shape the model cannot take.
    """

    #: Values per channel in the subsample the intensity levels are found on.
    SAMPLE_VALUES = 1_000_000

    def __init__(self, array: Any, ndim: int, channel_axis: int | None | str = "auto"):
        from .normalize import channel_axis as find_channel_axis

        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            array = np.asarray(array)
        shape = tuple(int(s) for s in array.shape)
        if len(shape) == 0 or 0 in shape:
            raise ValueError(f"The image is empty (shape {shape}); give an image with pixels.")
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "biuf":
            raise ValueError(f"The image has dtype {dtype}; give a grayscale or RGB image of "
                             f"integers or floats.")
        if channel_axis == "auto":
            channel_axis = find_channel_axis(shape, ndim)
        elif channel_axis is not None:
            channel_axis = -1 if channel_axis in (-1, len(shape) - 1) else 0
        self.array, self.ndim, self.channel_axis, self.dtype = array, ndim, channel_axis, dtype
        if channel_axis is None:
            self.shape, self.channels = shape, 1
        elif channel_axis == -1:
            self.shape, self.channels = shape[:-1], shape[-1]
        else:
            self.shape, self.channels = shape[1:], shape[0]
        if len(self.shape) != ndim:
            find_channel_axis(shape, ndim)  # raises the message for a wrong number of axes
            raise ValueError(f"The image of shape {shape} has no {ndim} spatial axes.")
        self.lazy = is_lazy(array)

    def read(self, window: Sequence[slice]) -> np.ndarray:
        """The raw values (C, *window) of the spatial ``window`` (in the image's dtype)."""
        window = tuple(window)
        if self.channel_axis is None:
            return np.asarray(self.array[window])[None]
        if self.channel_axis == -1:
            return np.moveaxis(np.asarray(self.array[(*window, slice(None))]), -1, 0)
        return np.asarray(self.array[(slice(None), *window)])

    def sample(self) -> np.ndarray:
        """Raw values (C, ...) the intensity levels are found on: for an image in memory the
        subsample of ``normalize_image`` (every k-th value of each channel, about a million;
        all of a smaller image), so levels and results match the untiled path; for a lazy one
        every k-th pixel along each axis (about a million, read without loading the image)."""
        pixels = math.prod(self.shape)
        if not self.lazy:
            data = self.read(tuple(slice(None) for _ in self.shape))
            flat = data.reshape(self.channels, -1)
            if pixels > self.SAMPLE_VALUES:
                flat = flat[:, :: pixels // self.SAMPLE_VALUES]
            return np.ascontiguousarray(flat)
        step = max(1, int(math.ceil((pixels / self.SAMPLE_VALUES) ** (1.0 / self.ndim))))
        window = tuple(slice(None, None, step) for _ in self.shape)
        return self.read(window).reshape(self.channels, -1)


def squeeze_view(array: Any) -> Any:
    """``array`` without its length-1 axes (but at least 2 axes), lazily: what ``read_image``
    does to an ImageJ (1, Y, X) TIFF."""
    shape = tuple(array.shape)
    fixed, kept = {}, len(shape)
    for axis, size in enumerate(shape):
        if size == 1 and kept > 2:
            fixed[axis] = 0
            kept -= 1
    return AxesView(array, fixed) if fixed else array


def image_bytes(path: str | Path) -> int:
    """Bytes of the pixel data of an image file or zarr array (without reading the pixels)."""
    path = Path(path)
    if path.suffix.lower() in ZARR_SUFFIXES:
        array = open_zarr(path)
        return int(math.prod(array.shape) * np.dtype(array.dtype).itemsize)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return int(math.prod(series.shape) * np.dtype(series.dtype).itemsize)
    return path.stat().st_size


def should_read_lazily(path: str | Path) -> bool:
    """A zarr array always; a TIFF whose pixels exceed ``LAZY_BYTES`` or a quarter of the free
    memory; other files never (PNG/JPEG are read whole)."""
    from ..runtime import available_bytes

    path = Path(path)
    if path.suffix.lower() in ZARR_SUFFIXES:
        return True
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    free = available_bytes("cpu")
    limit = LAZY_BYTES if free is None else min(LAZY_BYTES, free // 4)
    return image_bytes(path) > limit


def open_lazy(path: str | Path) -> Any:
    """A TIFF (memory-mapped, or tifffile's zarr store for compressed or tiled files) or a zarr
    array, read on demand; length-1 axes dropped like ``read_image`` does. ValueError naming
    the file when it cannot be opened."""
    path = Path(path)
    if path.suffix.lower() in ZARR_SUFFIXES:
        return squeeze_view(open_zarr(path))
    import tifffile

    try:
        array = tifffile.memmap(path, mode="r")
    except (ValueError, tifffile.TiffFileError, OSError):
        try:
            import zarr

            store = tifffile.imread(path, aszarr=True, level=0)  # a pyramid: full resolution
            array = zarr.open(store, mode="r")
            if not hasattr(array, "dtype"):  # a group all the same: its first array
                array = array[sorted(name for name, _ in array.arrays())[0]]
        except Exception as err:  # noqa: BLE001 - tifffile and zarr raise many kinds
            raise ValueError(f"Could not read the TIFF file {path} lazily: {err}.") from None
    return squeeze_view(array)


def open_zarr(path: str | Path, mode: str = "r") -> Any:
    """The zarr array at ``path`` (of a group: its first array, e.g. level 0 of an OME-Zarr)."""
    import zarr

    try:
        node = zarr.open(str(path), mode=mode)
    except Exception as err:  # noqa: BLE001 - zarr raises many kinds
        raise ValueError(f"Could not open the zarr array {path}: {err}.") from None
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return node
    arrays = sorted(name for name, _ in node.arrays())
    if not arrays:
        raise ValueError(f"The zarr group {path} holds no array; give the path of an array.")
    return node[arrays[0]]


# --- writing -------------------------------------------------------------------------------------
class LabelFile:
    """A label output written window by window and put in place only when complete.

    It is made under a temporary name next to ``path`` (a TIFF memory map, or a zarr array for a
    ``.zarr`` path); ``commit`` renames it to ``path`` (replacing an earlier prediction, which
    the caller has checked), ``discard`` removes it. Used as a context manager it commits on
    success and discards on any error or interruption, so no half-written file is left.
    """

    def __init__(self, path: str | Path, shape: Sequence[int], dtype: Any = np.uint32, *,
                 tag: str | None = None, chunks: Sequence[int] | None = None):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp"
                                       + self.path.suffix)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix.lower() in ZARR_SUFFIXES:
            import zarr

            chunk = tuple(chunks) if chunks else _chunks(self.shape)
            self.array = zarr.open(str(self.tmp), mode="w-", shape=self.shape, chunks=chunk,
                                   dtype=self.dtype, fill_value=0)
            if tag is not None:
                self.array.attrs["software"] = tag
        else:
            import tifffile

            options: dict[str, Any] = {"photometric": "minisblack"}
            if tag is not None:
                options["software"] = tag
            # A new memory-mapped file is zero-filled by the filesystem (sparse until written).
            self.array = tifffile.memmap(self.tmp, shape=self.shape, dtype=self.dtype,
                                         **options)

    def commit(self) -> Path:
        if isinstance(self.array, np.memmap):
            self.array.flush()
            del self.array
        if self.path.is_dir():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.array = None
        with contextlib.suppress(OSError):
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp)
            else:
                self.tmp.unlink()

    def __enter__(self) -> LabelFile:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def _chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """Chunks of about 1-4 MiB of uint32: whole leading (frame) axes split to 1, spatial axes
    to 512 (2D) or 128 (3D)."""
    spatial = 2 if len(shape) <= 3 else 3
    side = 512 if spatial == 2 else 128
    lead = len(shape) - spatial
    return tuple([1] * max(lead, 0) + [min(int(s), side) for s in shape[max(lead, 0):]])
