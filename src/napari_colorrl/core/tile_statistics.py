"""One set of instance-norm statistics for every tile of an image (docs/method.md, "Scale and
tiles").

A tile normalised by itself sees another network than its neighbours and than an untiled pass
(a near tie of the coloring flips: tiled and untiled inference of the bundled model agreed at
AP50 0.77 to 0.85 so). So the coloring is first run on a few crops of the model's input size,
spread over the image, as one batch whose norms pool all crops (``SharedStatistics``), and every
tile is then normalised with those statistics. ``Segmenter.statistics_crops`` and
``Segmenter.image_statistics`` call these functions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .config import ColorRLConfig
from .data.lazy import ImageSource
from .data.normalize import apply_levels, network_channels
from .method.coloring import run_coloring
from .model.fast_layers import SharedStatistics
from .segmentation import InferencePlan
from .tiling import Tile, TileGrid, sample_window

#: At most this many input-size crops per image give the instance-norm statistics of tiled
#: inference (``statistics_crops``): 16 of 256 x 256 in 2D and 8 of 64^3 in 3D are the pixels of
#: one default tile (fewer on smaller images: every other crop per axis).
STATISTICS_CROPS = {2: 16, 3: 8}


def statistics_crops(plan: InferencePlan, config: ColorRLConfig, stride: int
                     ) -> tuple[TileGrid, list[Tile]]:
    """The crops whose instance-norm statistics every tile of ``plan`` uses, or no crops when
    the image uses its own (``plan.own_statistics``).

    Crops of the model's input size (what it was trained on), on the network's ``stride``,
    spread evenly over the image from one end of each axis to the other. An axis that takes
    ``c`` such crops to cover gets ``max(2, c / 2)`` of them, so its first and last parts are
    always seen (beyond two crops: a quarter of the image in 2D, an eighth in 3D), and at most
    ``STATISTICS_CROPS[ndim]`` per image. A function of the image's shape at the network's scale
    only, never of the tiles, so a tiled and an untiled pass see the same network."""
    grid = plan.grid
    crop = tuple(min(n, max(stride, int(c) // stride * stride))
                 for n, c in zip(grid.network_shape, config.input_size))
    if plan.own_statistics(crop):
        return TileGrid.make(grid.image_shape, grid.network_shape, crop, 0, align=stride), []
    cap = max(1, int(round(STATISTICS_CROPS[config.ndim] ** (1 / len(crop)))))
    counts = [1 if n <= c else min(cap, max(2, round(math.ceil(n / c) / 2)))
              for n, c in zip(grid.network_shape, crop)]
    crops = TileGrid.spread(grid.image_shape, grid.network_shape, crop, counts, align=stride)
    return crops, list(crops)


def image_statistics(model: torch.nn.Module, config: ColorRLConfig, device: torch.device,
                     crops: tuple[TileGrid, list[Tile]], source: ImageSource, levels: Any = None,
                     data: np.ndarray | None = None) -> SharedStatistics | None:
    """The instance-norm statistics of the ``crops`` (``statistics_crops``) pooled, attached to
    ``model`` in replay mode for every tile (None, and nothing attached, without crops: the
    image uses its own). data: the whole image at the network's scale (one tile), to cut the
    crops from; else they are read from ``source`` with the intensity ``levels``."""
    grid, chosen = crops
    if not chosen:
        return None
    batch = []
    for tile in chosen:
        if data is not None:
            batch.append(data[(slice(None), *tile.network)])
        else:
            part = network_channels(source.read(tile.read), config.normalization)
            batch.append(sample_window(apply_levels(part, levels), grid, tile))
    statistics = SharedStatistics()
    statistics.attach(model)
    try:
        tensor = torch.from_numpy(np.ascontiguousarray(np.stack(batch))).to(device)
        run_coloring(model, tensor, config.steps, passes=config.passes)
    except BaseException:
        SharedStatistics.detach(model)
        raise
    return statistics.replay()
