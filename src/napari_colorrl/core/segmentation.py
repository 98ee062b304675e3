"""What one segmentation is: its plan (the image's shape at the network's scale, the tiles,
and why) and its result (step maps, colors, instances), as ``inference.Segmenter`` makes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .method.coloring import colors_from_steps
from .tiling import TileGrid


@dataclass(frozen=True)
class InferencePlan:
    """How one image is segmented: its shape at the network's scale, the tiles, and why.

    squeeze: a 'resize' model on an image of a training shape: resized whole to the network's
    input, as in training (one tile). note: how the scale was chosen, for messages.
    area_ratio: image pixels of this image per image pixel of a training image, for the same
    area at the network's input: the model's minimum object size (chosen on images at the
    training scale) is multiplied by it (1 when resized as in training).
    """

    image_shape: tuple[int, ...]
    network_shape: tuple[int, ...]
    grid: TileGrid
    squeeze: bool
    note: str
    area_ratio: float = 1.0

    def default_min_size(self, model_min_size: int) -> int:
        """The model's minimum object size in pixels of this image."""
        return int(round(model_min_size * self.area_ratio))

    @property
    def tiles(self) -> int:
        return len(self.grid)

    @property
    def factors(self) -> tuple[float, ...]:
        """Network pixels per image pixel, per axis."""
        return tuple(n / s for n, s in zip(self.network_shape, self.image_shape))

    def own_statistics(self, crop: Sequence[int]) -> bool:
        """Whether the image is normalised by its own instance-norm statistics, as in
        training: when it is resized to the network's input as in training, or when it is no
        larger than the model's input (``crop``) at the network's scale. Any larger image
        takes them from crops of the input size (``Segmenter.statistics_crops``)."""
        return self.squeeze or all(n <= c for n, c in zip(self.network_shape, crop))

    def describe(self) -> str:
        size = " x ".join(map(str, self.network_shape))
        tiles = (f"{self.tiles} tiles of up to {' x '.join(map(str, self.grid.tile_shape))}"
                 if self.tiles > 1 else "one tile")
        return f"{self.note}: {size} at the network's scale, {tiles}"


@dataclass(frozen=True)
class Segmentation:
    """Result for one image, at the image's own spatial shape.

    steps: (T, *S) uint8 binary action maps (None when not asked for). colors: (*S) color map
    (uint8 for T <= 8; None with the steps). instances: (*S) uint16/uint32 labels after
    small-object removal. objects: the stitched objects before it (uint32), from which
    ``Segmenter.instances_of`` removes another minimum size without recoloring. plan: how the
    image was segmented. (With tiles, the colors of neighbouring tiles are chosen separately:
    the instances come from the tiles, not from the color map.)
    """

    steps: np.ndarray | None
    colors: np.ndarray | None
    instances: np.ndarray
    objects: np.ndarray | None = None
    plan: InferencePlan | None = None

    def colors_after(self, k: int) -> np.ndarray:
        """The color map after the first ``k`` steps (1 <= k <= T)."""
        return colors_from_steps(self.steps[:k])
