"""How an image is segmented, decided before anything is read or allocated: the scale it is
seen at (the model's training scale, or the user's object size) and the tiles it is cut into
at the network's scale (``InferencePlan``). ``inference.Segmenter.plan`` calls it; the CLI checks
the tile settings with ``tiling_settings`` before any file is opened."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .config import SETTINGS_BY_PATH, ColorRLConfig
from .data.scale import TrainingScale, object_size_pixels
from .segmentation import InferencePlan
from .tiling import TileGrid

#: The most a user's object size may shrink or enlarge an image (a factor beyond this is
#: almost surely a wrong unit: microns for pixels).
MAX_RESCALE = 32.0


def plan(config: ColorRLConfig, scale: TrainingScale, stride: int, shape: Sequence[int], *,
         object_size: Sequence[float] | float | None = None,
         pixel_size: Sequence[float] | float | None = None,
         tile_size: Sequence[int] | int | None = None,
         tile_overlap: int | None = None) -> InferencePlan:
    """How a model (``config``, its training ``scale``, its network's ``stride``) segments an
    image of spatial ``shape`` (nothing is read or allocated).

    The scale: with ``object_size`` (the diameter of the image's objects in pixels, one
    number or one per axis; in physical units with ``pixel_size``, the size of a pixel in
    the same units) the image is rescaled so its objects get the model's training size.
    Without it, a 'resize' model resizes an image of one of its training shapes to its
    input size, as in training; any other image is seen at the training scale (the
    network pixels per image pixel of training: no squeeze of a large image). Then the
    tiles: ``tile_size`` and ``tile_overlap`` (default: the model's ``inference`` settings)
    at the network's scale; the overlap is raised to twice the model's object size when it
    is smaller, so an object whose centre lies in a tile's core fits in the tile.
    ValueError, naming the problem, for sizes that cannot work.
    """
    ndim = config.ndim
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"A {ndim}D model segments images of {ndim} spatial axes; got the "
                         f"spatial shape {shape}.")
    train = " x ".join(f"{v:.1f}" for v in scale.object_size)
    squeeze = False
    if object_size is not None:
        size = object_size_pixels(object_size, pixel_size, ndim)
        if isinstance(size, float):
            factors = (scale.diameter / size,) * ndim
            shown = f"{size:.1f}"
        else:
            factors = tuple(t / u for t, u in zip(scale.object_size, size))
            shown = " x ".join(f"{v:.1f}" for v in size)
        for factor in factors:
            if not 1 / MAX_RESCALE <= factor <= MAX_RESCALE:
                how = "shrunk" if factor < 1 else "enlarged"
                times = max(factor, 1 / factor)
                raise ValueError(
                    f"The object size {shown} px would have the image {how} {times:.0f}x to "
                    f"match the model's objects ({train} px at its input); at most "
                    f"{MAX_RESCALE:g}x is allowed. Check the value: it is the diameter of "
                    f"the objects in pixels (or, with a pixel size, in the same units as "
                    f"the pixel size).")
        network = tuple(max(1, round(s * f)) for s, f in zip(shape, factors))
        note = f"objects of {shown} px rescaled to the model's {train} px"
    elif pixel_size is not None:
        raise ValueError("A pixel size only converts an object size given in the same "
                         "units: give the object size too.")
    elif config.input_mode == "resize" and (
            scale.resizes(shape) or shape == tuple(config.input_size)):
        network, squeeze = tuple(config.input_size), True
        note = ("resized to the network's input, as the training images of this shape"
                if scale.image_shapes else "resized to the network's input")
    else:
        network = tuple(max(1, round(s * f)) for s, f in zip(shape, scale.image_scale))
        note = f"at the training scale (objects of {train} px at the network's input)"
    tile, overlap = tiling_settings(config, tile_size, tile_overlap)
    overlap = min(max(overlap, math.ceil(2 * max(scale.object_size))), min(tile) // 2)
    area = 1.0 if squeeze else (math.prod(scale.image_scale)
                                / math.prod(n / s for n, s in zip(network, shape)))
    grid = TileGrid.make(shape, network, tile, overlap, align=stride)
    return InferencePlan(shape, network, grid, squeeze, note, area)


def tiling_settings(config: ColorRLConfig, tile_size: Sequence[int] | int | None,
                    tile_overlap: int | None) -> tuple[tuple[int, ...], int]:
    """Tile size and overlap (the model's unless given), checked against the settings
    table (ValueError naming the setting and its range)."""
    ndim = config.ndim
    tile = config.inference.tile_size if tile_size is None else tile_size
    tile = (tile,) * ndim if isinstance(tile, (int, np.integer)) else tuple(tile)
    if len(tile) == 1:
        tile = tile * ndim
    overlap = config.inference.tile_overlap if tile_overlap is None else tile_overlap
    spec_tile = SETTINGS_BY_PATH["inference.tile_size"]
    spec_overlap = SETTINGS_BY_PATH["inference.tile_overlap"]
    spec_tile.check(list(tile))
    spec_overlap.check(overlap)
    tile, overlap = spec_tile.parse(list(tile)), spec_overlap.parse(overlap)
    if len(tile) != ndim:
        raise ValueError(f"inference.tile_size needs one size or {ndim}, got {list(tile)}.")
    if 2 * overlap > min(tile):
        raise ValueError(f"inference.tile_overlap ({overlap}) must be at most half the "
                         f"tile size ({min(tile)}).")
    return tile, overlap
