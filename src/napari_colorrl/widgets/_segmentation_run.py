"""The work of one run of the segmentation dock, off the GUI thread and free of Qt: load the
model, segment each frame of the layer tile by tile (yielding progress), keep the results in
memory or, when too large, in a zarr array on disk (``LazyResult``); any failure comes back as
a ``Failure`` for the dock to show, and a Cancel leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_colorrl.widgets import Failure
from napari_colorrl.widgets._layers import frame_indices


@dataclass
class SegmentationRequest:
    """What one run of the dock segments, and how (the dock's fields)."""

    model: str
    device: str
    data: Any  # the layer's full-resolution array (numpy, dask, zarr)
    shape: tuple[int, ...]  # its shape without a colour axis
    rgb: bool
    min_size: int | None = None
    depth: int | None = None  # coloring steps used (None: the model's; 0: all T)
    object_size: Any = None  # None, a number or one per axis
    scale: tuple[float, ...] | None = None  # the layer's scale, when the size is in its units
    tile_size: tuple[int, ...] | None = None
    tile_overlap: int | None = None


#: Results larger than this share of the free memory go to a zarr array on disk (labels only).
IN_MEMORY_SHARE = 0.25


def segmentation_run(model: str, device: str, data: Any, shape: tuple[int, ...],
                      min_size: int | None, **options: Any):
    """Worker body for ``SegmentationRequest(model, device, data, shape, min_size=min_size,
    **options)``: load the model, segment each frame tile by tile (yields (frame, frames,
    tile, tiles)); returns ``(segmenter, results, stacked)``: one core Segmentation per frame,
    or, for results too large for memory, a ``LazyResult`` of labels in a zarr array; or a
    ``Failure``. Stopping the worker between two tiles leaves nothing behind."""
    store = None
    try:
        request = SegmentationRequest(model, device, data, tuple(shape),
                                      rgb=bool(options.pop("rgb", False)), min_size=min_size,
                                      **options)
        from napari_colorrl.core.inference import Segmenter
        from napari_colorrl.core.method.coloring import color_dtype
        from napari_colorrl.core.runtime import available_bytes

        segmenter = Segmenter.load(request.model, request.device)
        segmenter.use_depth(request.depth)
        ndim, shape = segmenter.config.ndim, request.shape
        if len(shape) not in (ndim, ndim + 1, ndim + 2):
            kind = "2D images or stacks of 2D frames" if ndim == 2 else "volumes or stacks of them"
            raise ValueError(
                f"This is a {ndim}D model (it segments {kind}) but the image has {len(shape)} "
                f"axes {shape}; choose a {len(shape) if len(shape) < 4 else 3}D model or another "
                f"layer.")
        options = {"object_size": request.object_size, "tile_size": request.tile_size,
                   "tile_overlap": request.tile_overlap,
                   "pixel_size": None if request.scale is None or request.object_size is None
                   else tuple(request.scale[-ndim:])}
        indices = frame_indices(shape, ndim)
        segmenter.plan(shape[len(shape) - ndim:], **options)  # bad sizes fail before any work
        stacked = len(shape) > ndim
        per_pixel = 8 + segmenter.steps + color_dtype(segmenter.steps).itemsize
        free = available_bytes("cpu")
        if free is not None and np.prod(shape) * per_pixel > IN_MEMORY_SHARE * free:
            store = LazyResult.create(shape)
            run = segmenter.iter_segment_frames(request.data, store.labels,
                                                rgb=request.rgb, min_size=request.min_size,
                                                **options)
            while True:
                try:
                    yield next(run)
                except StopIteration:
                    break
            return segmenter, store, stacked
        results = []
        for number, index in enumerate(indices, start=1):
            run = segmenter.segment_steps(request.data[index], min_size=request.min_size,
                                          **options)
            while True:
                try:
                    done, tiles = next(run)
                except StopIteration as stop:
                    results.append(stop.value)
                    break
                yield number, len(indices), done, tiles
        return segmenter, results, stacked
    except Exception as err:  # noqa: BLE001 - every failure goes to the user
        if store is not None:
            store.remove()
        return Failure(err)
    except GeneratorExit:  # the dock's Cancel: no half-written result stays on disk
        if store is not None:
            store.remove()
        raise


@dataclass
class LazyResult:
    """Labels too large for memory, in a zarr array in a temporary folder of their own."""

    folder: Path
    labels: Any

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> LazyResult:
        import tempfile

        import zarr

        folder = Path(tempfile.mkdtemp(prefix="colorrl-labels-"))
        chunks = tuple([1] * (len(shape) - 2) + [min(s, 1024) for s in shape[-2:]])
        labels = zarr.open(str(folder / "labels.zarr"), mode="w", shape=shape, chunks=chunks,
                           dtype=np.uint32, fill_value=0)
        return cls(folder, labels)

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
