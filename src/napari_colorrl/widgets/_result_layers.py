"""The result layers of the segmentation dock: what one run wrote, and how it is shown again.

For an input layer ``X`` a run writes the Labels layers ``X step 1`` .. ``X step T`` (binary
actions), ``X colors`` and ``X instances`` (for results too large for memory: ``X instances``
only, backed by its zarr array). A re-run replaces their data only while they hold what the dock
wrote (``write_result``); ``ResultLayers.written`` remembers which layer each name went to.
The dock (``_segmentation.py``) keeps only its controls: slider, labels, buttons.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_colorrl.widgets._layers import RESULT_KEY, result_unedited, write_result
from napari_colorrl.widgets._segmentation_run import LazyResult


class ResultLayers:
    """The layers of the last run of a segmentation dock on ``viewer`` (one for the dock's life).

    segmenter: the ``Segmenter`` that ran; results: one core ``Segmentation`` per frame, or a
    ``LazyResult``; stacked: whether the input was a stack of frames; input_layer: the image
    layer segmented. ``written``: result name -> the layer it was last written to, from run to
    run."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self.written: dict[str, str] = {}
        self.segmenter: Any = None
        self.results: Any = []
        self.stacked = False
        self.input_layer: Any = None
        self._objects_after: dict[tuple[int, int], int] = {}  # (step, min size) -> objects

    def take(self, segmenter: Any, results: Any, stacked: bool, input_layer: Any) -> None:
        """A new run's result (nothing written yet: ``write``)."""
        self.segmenter, self.results, self.stacked = segmenter, results, stacked
        self.input_layer = input_layer
        self._objects_after = {}

    @property
    def lazy(self) -> bool:
        """Whether the labels are too large for memory (kept on disk, no steps or colors)."""
        return isinstance(self.results, LazyResult)

    @property
    def in_memory(self) -> bool:
        """Whether there is a result whose steps and colors can be shown."""
        return bool(self.results) and not self.lazy

    def stack(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrays) if self.stacked else arrays[0]

    def min_size(self, asked: int) -> int:
        """The minimum size asked for (``asked`` >= 0), or the model's for the image's scale."""
        if asked >= 0:
            return asked
        plan = None if self.lazy or not self.results else self.results[0].plan
        return self.segmenter.default_min_size(plan)

    def metadata(self, kind: str, min_size: int, **extra: Any) -> dict:
        """What produced a result layer: model, parameters, input."""
        config = self.segmenter.config
        return {RESULT_KEY: {
            "kind": kind, "model": self.segmenter.source, "steps": config.steps,
            "steps_used": self.segmenter.steps,
            "ndim": config.ndim, "min_size": min_size, "device": str(self.segmenter.device),
            "input": self.input_layer.name, "stack_of_frames": self.stacked,
            "config": config.to_dict(), **extra}}

    @property
    def names(self) -> list[str]:
        """Names of the result layers for the current input, steps first."""
        name, steps = self.input_layer.name, self.segmenter.steps
        return [f"{name} step {k}" for k in range(1, steps + 1)] + [
            f"{name} colors", f"{name} instances"]

    def put(self, data: np.ndarray, name: str, **kwargs: Any):
        """Write a result layer, never over one the user made or edited (``write_result``)."""
        layer = write_result(self.viewer, data, name, self.input_layer,
                             previous=self.written.get(name), **kwargs)
        self.written[name] = layer.name
        return layer

    def write(self, min_size: int) -> int | None:
        """Add (or replace the data of) the step, colors and instances layers; the step layers
        a former run with a larger T wrote go, if unedited. Returns the number of objects
        (None for labels kept on disk: the instances layer only)."""
        name, steps = self.input_layer.name, self.segmenter.steps
        if self.lazy:
            self.put(self.results.labels, f"{name} instances",
                     metadata=self.metadata("instances", min_size), opacity=0.6)
            return None
        for k in range(1, steps + 1):
            self.put(self.stack([r.steps[k - 1] for r in self.results]), f"{name} step {k}",
                     metadata=self.metadata("step", min_size, step=k), visible=False,
                     opacity=0.5)
        stale = steps + 1
        while f"{name} step {stale}" in self.written:  # a re-run with a smaller T
            layer_name = self.written.pop(f"{name} step {stale}")
            if layer_name in self.viewer.layers and result_unedited(self.viewer.layers[layer_name]):
                self.viewer.layers.remove(layer_name)
            stale += 1
        self.put(self.stack([r.colors for r in self.results]), f"{name} colors",
                 metadata=self.metadata("colors", min_size, after_step=steps), opacity=0.6)
        self.put(self.stack([r.instances for r in self.results]), f"{name} instances",
                 metadata=self.metadata("instances", min_size), opacity=0.6)
        count = sum(int(r.instances.max()) for r in self.results)
        self._objects_after = {(steps, min_size): count}
        return count

    def summary(self, count: int | None, seconds: float | None) -> str:
        """The status line after ``write``: steps, objects, frames, tiles, scale, time."""
        used, total = self.segmenter.steps, self.segmenter.config.steps
        steps = f"T = {total} steps" if used == total else f"{used} of T = {total} steps"
        if count is None:
            return (f"{steps}; the labels are too large for memory and are kept in "
                    f"{self.results.folder} (no step or color layers; min. size applied while "
                    f"segmenting).")
        frames = f" in {len(self.results)} frames" if self.stacked else ""
        plan = self.results[0].plan
        tiles = f", {plan.tiles} tiles per frame" if plan is not None and plan.tiles > 1 else ""
        scale = ("" if plan is None or all(abs(f - 1) < 1e-6 for f in plan.factors) else
                 f", seen at {' x '.join(f'{f:.2f}' for f in plan.factors)} of its size")
        took = "" if seconds is None else f" in {seconds:.1f} s"
        return (f"{steps}, {count} objects{frames}{tiles}{scale}{took}, "
                f"model {Path(str(self.segmenter.source)).name}.")

    def show_step(self, k: int, min_size: int) -> int:
        """Show the color map after the first ``k`` steps in 'X colors', on top of the other
        layers, with 'X instances' hidden until the last step; returns how many objects the
        first k steps separate."""
        steps, name = self.segmenter.steps, self.input_layer.name
        colors = self.stack([r.colors_after(k) for r in self.results])
        layer = self.put(colors, f"{name} colors",
                         metadata=self.metadata("colors", min_size, after_step=k))
        layer.visible = True
        layers = self.viewer.layers
        if layers.index(layer) != len(layers) - 1:
            layers.move(layers.index(layer), len(layers))  # on top: the coloring is the view
        instances = self.written.get(f"{name} instances")
        if instances in layers:
            layers[instances].visible = k == steps
        return self.objects_after(k, min_size)

    def objects_after(self, k: int, min_size: int) -> int:
        """How many objects the colors of the first ``k`` steps give (post-processed as the
        instances are, cached per step)."""
        key = (k, min_size)
        if key not in self._objects_after:
            # After the last step: the stitched instances (the colors of neighbouring tiles
            # are chosen apart); before it, the components of the colors so far.
            self._objects_after[key] = sum(
                int(self.segmenter.instances_of(r, min_size=min_size).max()) if k ==
                self.segmenter.steps else
                int(self.segmenter.postprocess(r.colors_after(k), min_size=min_size).max())
                for r in self.results)
        return self._objects_after[key]

    def update_instances(self, min_size: int) -> int:
        """Re-run only the post-processing with a new minimum size; returns the objects."""
        instances = self.stack([
            self.segmenter.instances_of(r, min_size=min_size) for r in self.results])
        self.put(instances, f"{self.input_layer.name} instances",
                 metadata=self.metadata("instances", min_size))
        return int(instances.max()) if not self.stacked else sum(int(f.max()) for f in instances)

    def instances_layer(self) -> Any:
        """The instances layer of the input, or None when it or the input is gone."""
        name = self.written.get(f"{self.input_layer.name} instances")
        if name not in self.viewer.layers or self.input_layer not in self.viewer.layers:
            return None
        return self.viewer.layers[name]
