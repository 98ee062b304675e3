"""Running a trained model on an image: normalise, color in T steps, post-process.

The CLI, the segmentation dock and the benchmarks all call ``Segmenter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ColorRLConfig
from .data.checks import check_image
from .data.normalize import (
    normalize_image,
    resize_image,
    resize_nearest,
    split_channels,
)
from .method.coloring import colors_from_steps, run_coloring
from .method.postprocess import instances_from_colors
from .model.fast_layers import use_fast_layout
from .runtime import check_inference_memory, resolve_device


@dataclass(frozen=True)
class Segmentation:
    """Result for one image, at the image's own spatial shape.

    steps: (T, *S) uint8 binary action maps. colors: (*S) color map (uint8 for T <= 8).
    instances: (*S) uint16/uint32 labels after small-object removal.
    """

    steps: np.ndarray
    colors: np.ndarray
    instances: np.ndarray

    def colors_after(self, k: int) -> np.ndarray:
        """The color map after the first ``k`` steps (1 <= k <= T)."""
        return colors_from_steps(self.steps[:k])


class Segmenter:
    """A model ready to segment images: ``Segmenter.load(path).segment(image)``."""

    def __init__(self, model: torch.nn.Module, config: ColorRLConfig, device: str = "auto",
                 *, fast_layout: bool = True):
        """fast_layout: put the model's weights in the CPU's fast memory layout for inference
        (``fast_layers.use_fast_layout``, in place); validation during training passes False so
        the training model keeps the trainer's layout."""
        self.config = config
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if fast_layout:
            use_fast_layout(self.model, self.device, inference=True)
        self.source = "in-memory model"

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", *, fast_layout: bool = True
             ) -> Segmenter:
        """Load a checkpoint file, a bioimage.io package (``*.zip``) written by ``colorrl
        export``, or a bundled model name, for inference (``fast_layout``: as in ``__init__``).
        A package gives the same network and weights as the checkpoint it was exported from;
        its TorchScript is never run (``model.bioimage``)."""
        from .model.bioimage import load_model_file
        from .model.bundled import resolve_model_path
        from .model.checkpoint import network_from_checkpoint

        path = resolve_model_path(path)
        checkpoint = load_model_file(path, map_location="cpu")
        model = network_from_checkpoint(checkpoint, path)
        segmenter = cls(model, checkpoint.config, device=device, fast_layout=fast_layout)
        segmenter.source = str(path)
        return segmenter

    @property
    def steps(self) -> int:
        return self.config.steps

    def network_input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Normalised (C, *S_net) float32 array and the image's spatial shape.

        Checks first: a wrong number of axes or an empty image raises ValueError, an image too
        large for the free memory ``MemoryCheckError`` (before anything big is allocated); NaN/inf
        values or a constant image emit a ``ColorRLWarning``.
        """
        channels, _ = split_channels(image, self.config.ndim)
        shape = tuple(channels.shape[1:])
        check_inference_memory(self.config, shape, channels.shape[0], self.device)
        check_image(image)
        data = normalize_image(image, self.config.normalization, self.config.ndim)
        if self.config.input_mode == "resize":
            data = resize_image(data, tuple(self.config.input_size))
        return data, shape

    def color(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Step maps (T, *S_net) uint8 at the network's resolution, and the image's shape."""
        data, shape = self.network_input(image)
        tensor = torch.from_numpy(data)[None].to(self.device)
        result = run_coloring(self.model, tensor, self.config.steps)
        return result.steps[0], shape

    def color_maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step maps (T, *S) uint8 and the color map (*S) at the image's own shape."""
        return self.maps_at(*self.color(image))

    @staticmethod
    def maps_at(steps: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``color``'s step maps resized (nearest) to the image's ``shape``, and their color map."""
        steps = resize_nearest(steps, (steps.shape[0], *shape))
        return steps, colors_from_steps(steps)

    def segment(
        self,
        image: np.ndarray,
        *,
        min_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Segmentation:
        """Segment one 2D image or 3D volume (grayscale or RGB)."""
        steps, colors = self.color_maps(image)
        if progress is not None:
            progress(1, 2)
        instances = self.postprocess(colors, min_size=min_size)
        if progress is not None:
            progress(2, 2)
        return Segmentation(steps=steps, colors=colors, instances=instances)

    def postprocess(self, colors: np.ndarray, *, min_size: int | None = None) -> np.ndarray:
        """Instances from a color map at the image's shape (cheap: re-run for a new min_size)."""
        return instances_from_colors(
            colors,
            min_size=self.config.min_size if min_size is None else min_size,
            connectivity=self.config.connectivity,
        )
