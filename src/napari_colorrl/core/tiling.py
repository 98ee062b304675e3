"""Tiled inference: the image at the network's scale cut into overlapping tiles, and the
instances of the tiles stitched into one label image (docs/method.md, "Scale and tiles").

- ``TileGrid``: the tiles of an image of spatial shape S seen at the network's shape N (the
  image rescaled by N / S per axis). Along each axis the tiles overlap by at least the overlap
  and their *cores* (from the middle of one overlap to the middle of the next) partition the
  axis. Every tile has a window in image pixels: the pixels whose network pixel falls in it.
- ``sample_window``: the network input of one tile, resampled from an image window with the
  same coordinate map for every tile (linear, anti-aliased when shrinking), so tiles agree
  where they overlap.
- ``Stitcher``: each tile keeps the objects whose centre lies in its core (and those an earlier
  tile left to it: centred in that tile's core, whole in this one's window); an object a tile
  keeps that mostly covers an object already written (the same object, seen by two tiles) is
  dropped, and otherwise it takes only pixels no earlier object holds. So an object cut by a
  tile border is one object with one id, and no label is split or duplicated at a seam.

numpy and scipy only: the network pass is the caller's (``inference.Segmenter``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as label_regions


def axis_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Starts of the tiles of up to ``tile`` pixels covering ``size`` pixels, neighbours
    overlapping by at least ``overlap``: a regular grid whose starts are multiples of ``align``
    (the network's stride, so every tile sees the image on the same pooling grid as an untiled
    pass). Each tile is ``tile`` long but the last, which ends at the end and may be shorter (a
    full-size last tile would mostly repeat its neighbour: 2048 px in tiles of 1024 with 128 of
    overlap cost 3072 px of work per axis that way, 2304 so). One tile (start 0) when the axis
    fits in one."""
    if size <= tile:
        return [0]
    align = max(int(align), 1)
    step = (tile - overlap) // align * align
    if step < 1:  # a tile barely larger than the overlap: give up the alignment
        step = max(tile - overlap, 1)
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + step)
    return starts


@dataclass(frozen=True)
class AxisTiles:
    """The tiles along one axis: network ranges [start, end), cores [core_start, core_end),
    and the map from image pixels to network pixels (``network_index[p]``)."""

    image_size: int
    network_size: int
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    core_starts: tuple[int, ...]
    core_ends: tuple[int, ...]

    @classmethod
    def make(cls, image_size: int, network_size: int, tile: int, overlap: int,
             align: int = 1) -> AxisTiles:
        return cls._at(image_size, network_size, tile,
                       axis_starts(network_size, tile, overlap, align))

    @classmethod
    def _at(cls, image_size: int, network_size: int, tile: int,
            starts: Sequence[int]) -> AxisTiles:
        """Tiles of up to ``tile`` pixels at ``starts``; each core runs from the middle of its
        overlap with the previous tile to the middle of the next one."""
        ends = [min(s + tile, network_size) for s in starts]
        cores = [0] + [(starts[i] + ends[i - 1]) // 2 for i in range(1, len(starts))]
        return cls(image_size, network_size, tuple(starts), tuple(ends), tuple(cores),
                   tuple(cores[1:]) + (network_size,))

    @classmethod
    def spread(cls, image_size: int, network_size: int, tile: int, count: int,
               align: int = 1) -> AxisTiles:
        """``count`` tiles of exactly ``tile`` pixels (one of the whole axis when it is no
        longer), spread evenly from the start of the axis to its end, each start a multiple of
        ``align`` (the last ends less than ``align`` short of the end). Their cores are those of
        ``make``; they need not partition anything: these are samples of the axis."""
        align = max(int(align), 1)
        last = max(0, network_size - tile) // align * align
        if network_size <= tile:
            starts = [0]
        elif count <= 1:  # one sample: the middle of the axis
            starts = [last // 2 // align * align]
        else:
            starts = sorted({int(round(i * last / (count - 1))) // align * align
                             for i in range(count)})
        return cls._at(image_size, network_size, tile, starts)

    @property
    def network_index(self) -> np.ndarray:
        """n(p) for every image pixel p: the network pixel whose cell holds p's centre (the map
        of ``normalize.resize_nearest``)."""
        p = np.arange(self.image_size)
        ratio = self.network_size / self.image_size
        return np.minimum(((p + 0.5) * ratio).astype(np.intp), self.network_size - 1)

    def image_range(self, start: int, end: int) -> tuple[int, int]:
        """The image pixels whose network pixel lies in [start, end)."""
        index = self.network_index
        return (int(np.searchsorted(index, start, "left")),
                int(np.searchsorted(index, end, "left")))

    @property
    def ratio(self) -> float:
        """Image pixels per network pixel."""
        return self.image_size / self.network_size

    def read_range(self, start: int, end: int) -> tuple[int, int]:
        """The image pixels ``sample_window`` needs for network pixels [start, end): the
        sampled positions and the margin of the anti-aliasing filter."""
        if self.image_size == self.network_size:
            return start, end
        ratio = self.ratio
        sigma = max(0.0, (ratio - 1.0) / 2.0)
        margin = int(math.ceil(4.0 * sigma)) + 2
        first = (start + 0.5) * ratio - 0.5
        last = (end - 0.5) * ratio - 0.5
        return (max(0, int(math.floor(first)) - margin),
                min(self.image_size, int(math.ceil(last)) + 1 + margin))


@dataclass(frozen=True)
class Tile:
    """One tile: its place in the grid, its network pixels, the image pixels it covers
    (``window``), those of its core (``core``, a sub-box of ``window``) and those read to make
    its network input (``read``). All are tuples of slices, one per spatial axis."""

    index: tuple[int, ...]
    network: tuple[slice, ...]
    window: tuple[slice, ...]
    core: tuple[slice, ...]
    read: tuple[slice, ...]

    @property
    def network_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.network)

    @property
    def window_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.window)

    @property
    def core_in_window(self) -> tuple[slice, ...]:
        return tuple(slice(c.start - w.start, c.stop - w.start)
                     for c, w in zip(self.core, self.window))


@dataclass(frozen=True)
class TileGrid:
    """The tiles of an image of spatial shape ``image_shape`` seen at ``network_shape``."""

    axes: tuple[AxisTiles, ...]

    @classmethod
    def make(cls, image_shape: Sequence[int], network_shape: Sequence[int],
             tile_size: Sequence[int], overlap: int, align: int = 1) -> TileGrid:
        return cls(tuple(AxisTiles.make(int(s), int(n), int(t), int(overlap), int(align))
                         for s, n, t in zip(image_shape, network_shape, tile_size)))

    @classmethod
    def spread(cls, image_shape: Sequence[int], network_shape: Sequence[int],
               tile_size: Sequence[int], counts: Sequence[int], align: int = 1) -> TileGrid:
        """Tiles of exactly ``tile_size`` spread evenly over the image, ``counts`` per axis
        (``AxisTiles.spread``): samples of the whole image, such as the crops whose
        instance-norm statistics every tile shares (``inference.Segmenter.statistics_crops``)."""
        return cls(tuple(AxisTiles.spread(int(s), int(n), int(t), int(k), int(align))
                         for s, n, t, k in zip(image_shape, network_shape, tile_size, counts)))

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(a.image_size for a in self.axes)

    @property
    def network_shape(self) -> tuple[int, ...]:
        return tuple(a.network_size for a in self.axes)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(len(a.starts) for a in self.axes)

    def __len__(self) -> int:
        return math.prod(self.counts)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        """The largest network shape of a tile."""
        return tuple(max(e - s for s, e in zip(a.starts, a.ends)) for a in self.axes)

    @property
    def read_shape(self) -> tuple[int, ...]:
        """The largest image window read for one tile."""
        out = []
        for a in self.axes:
            out.append(max(b - r for r, b in (a.read_range(s, e)
                                              for s, e in zip(a.starts, a.ends))))
        return tuple(out)

    def __iter__(self) -> Iterator[Tile]:
        ranges = []
        for a in self.axes:
            per_axis = []
            for s, e, cs, ce in zip(a.starts, a.ends, a.core_starts, a.core_ends):
                per_axis.append((slice(s, e), slice(*a.image_range(s, e)),
                                 slice(*a.image_range(cs, ce)), slice(*a.read_range(s, e))))
            ranges.append(per_axis)
        for index in np.ndindex(*self.counts):
            parts = [ranges[axis][i] for axis, i in enumerate(index)]
            yield Tile(index=tuple(int(i) for i in index),
                       network=tuple(p[0] for p in parts), window=tuple(p[1] for p in parts),
                       core=tuple(p[2] for p in parts), read=tuple(p[3] for p in parts))


def sample_window(data: np.ndarray, grid: TileGrid, tile: Tile) -> np.ndarray:
    """The network input (C, *tile.network_shape) of ``tile`` from ``data`` (C, *read), the
    normalised channels of the image pixels ``tile.read``.

    Each network pixel n samples the image at (n + 0.5) x ratio - 0.5 (the pixel-centre map of
    ``skimage.transform.resize``), linearly, after a Gaussian of sigma (ratio - 1) / 2 along the
    axes that shrink (its anti-aliasing), so every tile samples the image at the same places.
    """
    out = np.asarray(data, dtype=np.float32)
    sigma = [0.0] + [max(0.0, (a.ratio - 1.0) / 2.0) for a in grid.axes]
    if any(sigma):
        out = ndi.gaussian_filter(out, sigma, mode="mirror")
    for axis, (a, net, read) in enumerate(zip(grid.axes, tile.network, tile.read), start=1):
        if a.image_size == a.network_size:
            continue
        n = np.arange(net.start, net.stop, dtype=np.float64)
        x = np.clip((n + 0.5) * a.ratio - 0.5 - read.start, 0.0, out.shape[axis] - 1)
        low = np.floor(x).astype(np.intp)
        high = np.minimum(low + 1, out.shape[axis] - 1)
        shape = [1] * out.ndim
        shape[axis] = len(n)
        weight = (x - low).astype(np.float32).reshape(shape)
        out = out.take(low, axis=axis) * (1.0 - weight) + out.take(high, axis=axis) * weight
    return np.ascontiguousarray(out, dtype=np.float32)


def upsample_to_window(maps: np.ndarray, grid: TileGrid, tile: Tile) -> np.ndarray:
    """Maps (K, *tile.network_shape) at the network's resolution as (K, *tile.window_shape) at
    the image's (nearest: each image pixel takes its network pixel, ``AxisTiles.network_index``).
    """
    out = maps
    for axis, (a, net, win) in enumerate(zip(grid.axes, tile.network, tile.window), start=1):
        if a.image_size == a.network_size:
            continue
        index = a.network_index[win] - net.start
        out = out.take(index, axis=axis)
    return out


class Stitcher:
    """Writes the instances of tiles, one after another, into one label array.

    labels: the output, any array that takes and gives numpy slices (numpy, a memory-mapped
        TIFF, a zarr array), zero-filled, of an unsigned dtype wide enough for the ids
        (uint32). Only the window of the tile at hand is read and written.
    min_size: objects that take fewer new pixels than this are not written.
    connectivity: of the connected components of each color (1 .. ndim, None = full).
    """

    def __init__(self, labels, *, min_size: int = 0, connectivity: int | None = None):
        self.labels = labels
        self.min_size = max(int(min_size), 1)
        self.connectivity = connectivity
        self.count = 0  # ids 1..count are written
        self.limit = int(np.iinfo(np.dtype(labels.dtype)).max)
        # The cores (image pixels) of the tiles stitched: (tiles, axis, start/stop), grown by
        # doubling; the first ``done`` rows hold them.
        self.done_cores = np.zeros((16, labels.ndim, 2), np.int64)
        self.done = 0

    def _mark_done(self, core: tuple[slice, ...]) -> None:
        if self.done == len(self.done_cores):
            self.done_cores = np.concatenate([self.done_cores, np.zeros_like(self.done_cores)])
        self.done_cores[self.done] = [(c.start, c.stop) for c in core]
        self.done += 1

    def _in_done_core(self, pixel: list[np.ndarray], tile: Tile) -> np.ndarray:
        """Which centre pixels (image coordinates, one array per axis) lie in the core of a tile
        stitched before ``tile``. Only the cores that meet this tile's window are looked at;
        they are found by one array comparison over all done cores, not a Python loop over
        them (for 10,000 tiles that loop ran 50 million times)."""
        found = np.zeros(len(pixel[0]), bool)
        cores = self.done_cores[:self.done]
        window = np.array([(w.start, w.stop) for w in tile.window])
        near = ((cores[:, :, 0] < window[:, 1]) & (cores[:, :, 1] > window[:, 0])).all(axis=1)
        for core in cores[near]:
            inside = np.ones_like(found)
            for axis, (start, stop) in enumerate(core):
                inside &= (pixel[axis] >= start) & (pixel[axis] < stop)
            found |= inside
        return found

    def _touch_edge(self, components: np.ndarray, n: int, tile: Tile) -> np.ndarray:
        """Which components touch an edge of the window that is not the image's: those the
        window cuts, seen only in part."""
        touch = np.zeros(n + 1, bool)
        for axis, w in enumerate(tile.window):
            for at, edge in ((0, w.start > 0), (-1, w.stop < self.labels.shape[axis])):
                if edge:
                    touch[np.take(components, at, axis=axis)] = True
        return touch

    def add(self, colors: np.ndarray, tile: Tile) -> int:
        """Stitch the color map (*tile.window_shape) of one tile in; returns the objects added
        (``_add``). The tile's core is then done, whatever it held."""
        try:
            return self._add(colors, tile)
        finally:
            self._mark_done(tile.core)

    def _add(self, colors: np.ndarray, tile: Tile) -> int:
        """Stitch the color map (*tile.window_shape) of one tile in; returns the objects added.

        The tile keeps the connected components of each color whose centroid lies in its core,
        and those whose centroid lies in the core of a tile stitched before and that do not
        touch its window's edge: the earlier tile may have seen the same object with its
        centroid in this tile's core and left it to this one (two colorings of one object
        near a seam differ by a few pixels), so neither would keep it. A kept object covering
        at least half of its pixels with one object already written is that object seen again,
        and is dropped; the others take the pixels no written object holds, and get the next
        ids when they take at least ``min_size`` of them.
        """
        ndim = colors.ndim
        components = label_regions(colors, background=0,
                                   connectivity=self.connectivity or ndim)
        n = int(components.max())
        if n == 0:
            return 0
        flat = components.ravel()
        sizes = np.bincount(flat, minlength=n + 1).astype(np.float64)
        keep = np.zeros(n + 1, bool)
        keep[1:] = True
        core = tile.core_in_window
        centres = []
        for axis in range(ndim):
            shape = [1] * ndim
            shape[axis] = colors.shape[axis]
            coord = np.broadcast_to(np.arange(colors.shape[axis], dtype=np.float64).reshape(
                shape), colors.shape).ravel()
            centre = np.bincount(flat, weights=coord, minlength=n + 1) / np.maximum(sizes, 1)
            pixel = np.floor(centre)
            keep &= (pixel >= core[axis].start) & (pixel < core[axis].stop)
            centres.append(pixel + tile.window[axis].start)
        if self.done:  # objects an earlier tile left to this one
            keep |= self._in_done_core(centres, tile) & ~self._touch_edge(components, n, tile)
        keep[0] = False
        if not keep.any():
            return 0
        window = np.asarray(self.labels[tile.window])
        taken = window > 0
        kept_pixels = keep[flat]
        overlap = kept_pixels & taken.ravel()
        if overlap.any():
            pairs = flat[overlap].astype(np.int64) * (int(window.max()) + 1) + window.ravel()[
                overlap]
            keys, counts = np.unique(pairs, return_counts=True)
            owners = keys // (int(window.max()) + 1)
            largest = np.zeros(n + 1)
            np.maximum.at(largest, owners, counts)
            keep &= largest < 0.5 * sizes
        free = keep[flat] & ~taken.ravel()
        gained = np.bincount(flat[free], minlength=n + 1)
        keep &= gained >= self.min_size
        added = int(keep.sum())
        if added == 0:
            return 0
        if self.count + added > self.limit:
            raise ValueError(
                f"The labels found exceed {self.limit} objects, the most the label array's "
                f"dtype {np.dtype(self.labels.dtype)} holds; write them to a uint32 array.")
        ids = np.zeros(n + 1, window.dtype)
        ids[keep] = np.arange(self.count + 1, self.count + added + 1, dtype=window.dtype)
        write = free.reshape(window.shape) & keep[components]
        window[write] = ids[components[write]]
        self.labels[tile.window] = window
        self.count += added
        return added
