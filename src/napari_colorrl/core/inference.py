"""Running a trained model on an image: at the model's scale, in tiles, stitched.

``Segmenter.segment`` (what the CLI, the segmentation dock and the benchmarks call) rescales the
image so its objects have the size the model was trained on (``data.scale.TrainingScale``;
the user may give the size of their objects), cuts it into overlapping tiles at the network's
scale (``tiling.TileGrid``), colors each tile in T steps and stitches the instances of the tiles
into labels at the image's own shape (``tiling.Stitcher``). Memory is bounded by one tile; the
labels (and, if asked, the step maps and colors) go into arrays the caller gives, which may be
files (``Segmenter.iter_segment``). An image that fits in one tile is segmented exactly as
before tiles existed: normalised and resized whole.

``network_input`` / ``color_maps`` / ``postprocess`` are the untiled engine: one pass over the
whole image at the network's input, as validation during training uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ColorRLConfig
from .data.checks import check_image
from .data.frames import frame_layout, frame_view
from .data.lazy import ImageSource
from .data.normalize import (
    apply_levels,
    channel_levels,
    network_channels,
    network_image,
    normalize_image,
    resize_image,
    resize_nearest,
    split_channels,
)
from .data.scale import TrainingScale, derived_scale
from .method.coloring import color_dtype, colors_from_steps, run_coloring
from .method.postprocess import instances_from_colors, label_dtype, remove_small
from .model.fast_layers import SharedStatistics, use_fast_layout
from .planning import plan as make_plan
from .runtime import check_inference_memory, check_tile_memory, resolve_device
from .segmentation import InferencePlan, Segmentation
from .tile_statistics import image_statistics, statistics_crops
from .tiling import Stitcher, Tile, TileGrid, sample_window, upsample_to_window


class Segmenter:
    """A model ready to segment images: ``Segmenter.load(path).segment(image)``."""

    def __init__(self, model: torch.nn.Module, config: ColorRLConfig, device: str = "auto",
                 *, fast_layout: bool = True, scale: TrainingScale | None = None):
        """fast_layout: put the model's weights in the CPU's fast memory layout for inference
        (``fast_layers.use_fast_layout``, in place); validation during training passes False so
        the training model keeps the trainer's layout. scale: the scale the model was trained
        at (default: derived from the config, ``data.scale.derived_scale``)."""
        self.config = config
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if fast_layout:
            use_fast_layout(self.model, self.device, inference=True)
        self.scale = scale if scale is not None else derived_scale(config)
        self.source = "in-memory model"

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", *, fast_layout: bool = True
             ) -> Segmenter:
        """Load a checkpoint file, a bioimage.io package (``*.zip``) written by ``colorrl
        export``, or a bundled model name, for inference (``fast_layout``: as in ``__init__``).
        A package gives the same network and weights as the checkpoint it was exported from;
        its TorchScript is never run (``model.bioimage``). A model saved without its training
        scale gets the scale derived from its config, with one ``ColorRLWarning`` saying so."""
        from .data.scale import scale_from_extra
        from .model.bioimage import load_model_file
        from .model.bundled import resolve_model_path
        from .model.checkpoint import network_from_checkpoint

        path = resolve_model_path(path)
        checkpoint = load_model_file(path, map_location="cpu")
        model = network_from_checkpoint(checkpoint, path)
        scale = scale_from_extra(checkpoint.extra, checkpoint.config, str(path))
        segmenter = cls(model, checkpoint.config, device=device, fast_layout=fast_layout,
                        scale=scale)
        segmenter.source = str(path)
        return segmenter

    @property
    def steps(self) -> int:
        """The coloring steps this segmenter runs: the model's ``depth`` when set, else all T."""
        return self.config.passes

    def use_depth(self, depth: int | None) -> None:
        """Run the first ``depth`` steps from now on (None: keep the model's choice; 0: all
        T); ValueError naming the range when the model has fewer steps."""
        if depth is not None:
            if not 0 <= int(depth) <= self.config.steps:
                raise ValueError(
                    f"This model has T = {self.config.steps} coloring steps: give 1 to "
                    f"{self.config.steps} steps to use (0: all of them), not {depth}.")
            self.config = self.config.replace(depth=int(depth))

    # --- the untiled engine (validation) ----------------------------------------------------
    def network_input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Normalised (C, *S_net) float32 array and the image's spatial shape (one pass: the
        image resized to the input size in 'resize' mode, by ``input_scale`` in 'crop' mode,
        as in training).

        Checks first: a wrong number of axes or an empty image raises ValueError, an image too
        large for the free memory ``MemoryCheckError`` (before anything big is allocated); NaN/inf
        values or a constant image emit a ``ColorRLWarning``.
        """
        channels, _ = split_channels(image, self.config.ndim)
        shape = tuple(channels.shape[1:])
        check_inference_memory(self.config, shape, channels.shape[0], self.device)
        check_image(image)
        data = normalize_image(image, self.config.normalization, self.config.ndim)
        return network_image(data, self.config), shape

    def color(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Step maps (T, *S_net) uint8 at the network's resolution, and the image's shape."""
        data, shape = self.network_input(image)
        return self._color_tile(data), shape

    def color_maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step maps (T, *S) uint8 and the color map (*S) at the image's own shape (one pass)."""
        return self.maps_at(*self.color(image))

    @staticmethod
    def maps_at(steps: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``color``'s step maps resized (nearest) to the image's ``shape``, and their color map."""
        steps = resize_nearest(steps, (steps.shape[0], *shape))
        return steps, colors_from_steps(steps)

    def postprocess(self, colors: np.ndarray, *, min_size: int | None = None) -> np.ndarray:
        """Instances from a color map at the image's shape (cheap: re-run for a new min_size)."""
        return instances_from_colors(
            colors,
            min_size=self.config.min_size if min_size is None else min_size,
            connectivity=self.config.connectivity,
        )

    def _color_tile(self, data: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(data))[None].to(self.device)
        return run_coloring(self.model, tensor, self.config.steps, passes=self.steps).steps[0]

    # --- scale and tiles --------------------------------------------------------------------
    def plan(self, shape: Sequence[int], *, object_size: Sequence[float] | float | None = None,
             pixel_size: Sequence[float] | float | None = None,
             tile_size: Sequence[int] | int | None = None,
             tile_overlap: int | None = None) -> InferencePlan:
        """How an image of spatial ``shape`` is segmented by this model (``planning.plan``:
        nothing is read or allocated; ValueError for sizes that cannot work)."""
        return make_plan(self.config, self.scale, self.stride, shape, object_size=object_size,
                         pixel_size=pixel_size, tile_size=tile_size, tile_overlap=tile_overlap)

    @property
    def stride(self) -> int:
        """The network's stride (its inputs are padded to a multiple of it): tiles start at
        multiples of it, so each sees the image on the pooling grid of an untiled pass."""
        return int(getattr(self.model, "multiple", 1))

    # --- segmenting -------------------------------------------------------------------------
    def segment(
        self,
        image: Any,
        *,
        min_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        object_size: Sequence[float] | float | None = None,
        pixel_size: Sequence[float] | float | None = None,
        tile_size: Sequence[int] | int | None = None,
        tile_overlap: int | None = None,
        keep_steps: bool = True,
    ) -> Segmentation:
        """Segment one 2D image or 3D volume (grayscale or RGB; numpy or lazy) into labels held
        in memory, at the image's own shape.

        progress(done, total) is called after each tile. keep_steps: also return the step maps
        and the color map (T + 1 bytes per pixel more). The scale and tile arguments are those
        of ``plan``. MemoryCheckError, before any work, when a tile or the results do not fit.
        """
        run = self.segment_steps(image, min_size=min_size, object_size=object_size,
                                 pixel_size=pixel_size, tile_size=tile_size,
                                 tile_overlap=tile_overlap, keep_steps=keep_steps)
        while True:
            try:
                done, total = next(run)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(done, total)

    def segment_steps(
        self,
        image: Any,
        *,
        min_size: int | None = None,
        object_size: Sequence[float] | float | None = None,
        pixel_size: Sequence[float] | float | None = None,
        tile_size: Sequence[int] | int | None = None,
        tile_overlap: int | None = None,
        keep_steps: bool = True,
    ) -> Generator[tuple[int, int], None, Segmentation]:
        """``segment`` as a generator: yields (tiles done, tiles) after each tile and returns
        the ``Segmentation`` (a thread worker can stop it between two tiles)."""
        source = ImageSource(image, self.config.ndim)
        plan = self.plan(source.shape, object_size=object_size, pixel_size=pixel_size,
                         tile_size=tile_size, tile_overlap=tile_overlap)
        pixels = math.prod(source.shape)
        per_pixel = 4 + 4 + (self.steps + color_dtype(self.steps).itemsize if keep_steps else 0)
        self.check_memory(plan, source, results=pixels * per_pixel)
        objects = np.zeros(source.shape, np.uint32)
        steps = np.zeros((self.steps, *source.shape), np.uint8) if keep_steps else None
        colors = np.zeros(source.shape, color_dtype(self.steps)) if keep_steps else None
        yield from self.iter_segment(source, objects, steps=steps, colors=colors, min_size=0,
                                     plan=plan, checked=True)
        instances = self.instances_of(objects, min_size, plan=plan)
        return Segmentation(steps=steps, colors=colors, instances=instances, objects=objects,
                            plan=plan)

    def instances_of(self, objects: np.ndarray | Segmentation, min_size: int | None = None,
                     plan: InferencePlan | None = None) -> np.ndarray:
        """Instances 1..N (uint16, or uint32 from 65536 objects) of stitched ``objects`` (or of
        a ``Segmentation``) without those smaller than ``min_size`` pixels of the image
        (default: the model's, for the image's scale: ``plan.default_min_size``): cheap, so a
        new minimum size re-runs only this."""
        if isinstance(objects, Segmentation):
            plan = objects.plan if plan is None else plan
            if objects.objects is None:
                return self.postprocess(objects.colors, min_size=min_size)
            objects = objects.objects
        size = self.default_min_size(plan) if min_size is None else int(min_size)
        if size <= 1:
            count = int(objects.max()) if objects.size else 0
            return objects.astype(label_dtype(count))
        return remove_small(objects, size)

    def default_min_size(self, plan: InferencePlan | None) -> int:
        """The model's minimum object size in pixels of the image ``plan`` segments."""
        base = self.config.min_size
        return base if plan is None else plan.default_min_size(base)

    def check_memory(self, plan: InferencePlan, source: ImageSource, results: int = 0) -> None:
        """MemoryCheckError when the largest tile of ``plan`` (or ``results`` bytes kept for the
        whole image) does not fit; the message speaks of the tile."""
        grid = plan.grid
        window = tuple(math.ceil(t / f) + 1 for t, f in zip(grid.tile_shape, plan.factors))
        window = tuple(min(w, s) for w, s in zip(window, plan.image_shape))
        tile = grid.tile_shape
        _, crops = self.statistics_crops(plan)
        if crops:  # the batch of statistics crops runs as one pass: check the larger of the two
            batch = (len(crops) * crops[0].network_shape[0], *crops[0].network_shape[1:])
            if math.prod(batch) > math.prod(tile):
                tile = batch
        check_tile_memory(self.config, tile, grid.read_shape, window,
                          source.channels, self.device, tiles=plan.tiles, results=results,
                          image=plan.image_shape)

    def iter_segment(
        self,
        image: Any,
        labels: Any,
        *,
        steps: Any = None,
        colors: Any = None,
        min_size: int | None = None,
        object_size: Sequence[float] | float | None = None,
        pixel_size: Sequence[float] | float | None = None,
        tile_size: Sequence[int] | int | None = None,
        tile_overlap: int | None = None,
        plan: InferencePlan | None = None,
        checked: bool = False,
    ) -> Generator[tuple[int, int], None, int]:
        """Segment ``image`` tile by tile into ``labels``; yields (tiles done, tiles) after each
        tile and returns the number of objects written.

        labels: a zero-filled uint32 array of the image's spatial shape that takes numpy
        windows (numpy, a memory-mapped TIFF, a zarr array); steps (T, *S) uint8 and colors
        (*S): the same, optional. Only one tile's windows are in memory at a time, and the
        image is read a tile's window at a time (plus a subsample for the intensity levels).
        Objects smaller than ``min_size`` (default: the model's, for the image's scale) are not
        written. Stopping the
        generator stops after the tile at hand.
        """
        source = image if isinstance(image, ImageSource) else ImageSource(image, self.config.ndim)
        if plan is None:
            plan = self.plan(source.shape, object_size=object_size, pixel_size=pixel_size,
                             tile_size=tile_size, tile_overlap=tile_overlap)
        if tuple(labels.shape) != source.shape:
            raise ValueError(f"The labels array has shape {tuple(labels.shape)}, the image's "
                             f"spatial shape is {source.shape}.")
        if not checked:
            self.check_memory(plan, source)
        whole = plan.tiles == 1 and not source.lazy
        levels = None
        if not source.lazy:
            check_image(source.array)
        if not whole:
            sample = source.sample()
            if source.lazy:  # the warnings (NaN, constant) as far as the subsample tells
                check_image(np.moveaxis(sample, 0, -1) if source.channel_axis is not None
                            else sample[0])
            levels = channel_levels(network_channels(sample, self.config.normalization),
                                    self.config.normalization)
        min_size = self.default_min_size(plan) if min_size is None else int(min_size)
        stitcher = Stitcher(labels, min_size=min_size, connectivity=self.config.connectivity)
        grid, total = plan.grid, plan.tiles
        statistics = None
        try:
            for done, tile in enumerate(grid, start=1):
                if whole:
                    data = normalize_image(source.array, self.config.normalization,
                                           self.config.ndim)
                    data = resize_image(data, plan.network_shape)
                    statistics = self.image_statistics(source, plan, data=data)
                else:
                    if done == 1:
                        statistics = self.image_statistics(source, plan, levels)
                    data = network_channels(source.read(tile.read), self.config.normalization)
                    data = sample_window(apply_levels(data, levels), grid, tile)
                if statistics is not None:
                    statistics.rewind()
                tile_steps = upsample_to_window(self._color_tile(data), grid, tile)
                tile_colors = colors_from_steps(tile_steps)
                stitcher.add(tile_colors, tile)
                inner = tile.core_in_window
                if steps is not None:
                    steps[(slice(None), *tile.core)] = tile_steps[(slice(None), *inner)]
                if colors is not None:
                    colors[tile.core] = tile_colors[inner]
                del data, tile_steps, tile_colors
                yield done, total
        finally:
            SharedStatistics.detach(self.model)
        return stitcher.count

    def statistics_crops(self, plan: InferencePlan) -> tuple[TileGrid, list[Tile]]:
        """The crops whose instance-norm statistics every tile of ``plan`` uses
        (``tile_statistics.statistics_crops``)."""
        return statistics_crops(plan, self.config, self.stride)

    def image_statistics(self, source: ImageSource, plan: InferencePlan, levels: Any = None,
                         data: np.ndarray | None = None) -> SharedStatistics | None:
        """The instance-norm statistics for every tile of ``plan``, attached to the model in
        replay mode (``tile_statistics.image_statistics``)."""
        return image_statistics(self.model, self.config, self.device,
                                self.statistics_crops(plan), source, levels, data)

    def iter_segment_frames(
        self, array: Any, labels: Any, *, rgb: bool | None = None, steps: Any = None,
        colors: Any = None, min_size: int | None = None, **scale: Any,
    ) -> Generator[tuple[int, int, int, int], None, int]:
        """Segment every frame of a stack (or the one image) into ``labels`` of
        ``frame_shape(array.shape)``; yields (frame, frames, tile, tiles) after each tile and
        returns the objects written (ids restart at 1 in every frame).

        A 2D model segments each 2D frame of (T, Y, X) or (Z, Y, X), a 3D model each volume of
        (T, Z, Y, X); ``rgb`` as in ``frame_layout``. steps: (*frames, T, *S), colors:
        (*frames, *S), optional. ``scale``: the scale and tile arguments of ``plan``; one plan
        and one memory check serve every frame (they have one shape).
        """
        frames, axis = frame_layout(array.shape, self.config.ndim, rgb)
        indices = list(np.ndindex(*tuple(array.shape[:frames]))) if frames else [()]
        first = ImageSource(frame_view(array, indices[0]), self.config.ndim, axis)
        plan = self.plan(first.shape, **scale)
        self.check_memory(plan, first)
        total = 0
        for number, index in enumerate(indices, start=1):
            source = ImageSource(frame_view(array, index), self.config.ndim, axis)
            run = self.iter_segment(
                source, frame_view(labels, index),
                steps=None if steps is None else frame_view(steps, index),
                colors=None if colors is None else frame_view(colors, index),
                min_size=min_size, plan=plan, checked=True)
            while True:
                try:
                    done, tiles = next(run)
                except StopIteration as stop:
                    total += int(stop.value or 0)
                    break
                yield number, len(indices), done, tiles
        return total
