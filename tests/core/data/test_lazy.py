"""Inputs larger than memory are read a tile's window at a time and their labels written tile
by tile (issue 18, points 3 and 4): dask arrays, memory-mapped TIFFs, zarr arrays; memory
bounded by the tile (tracemalloc), the memory check speaks of the tile."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import tifffile

from conftest import bit_segmenter
from napari_colorrl.core import runtime
from napari_colorrl.core.data.lazy import AxesView, ImageSource, LabelFile, open_lazy


def _disc_block(block, block_info=None):
    """A dask block of a sparse image: bright discs of radius 9 at every (256 k + 128)."""
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = ((yy % 256) - 128) ** 2 + ((xx % 256) - 128) ** 2 <= 81
    return np.where(inside, 255, 0).astype(np.uint8)


class Recording:
    """An array that records the windows read from it (shape, dtype, slicing only)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads = []

    def __getitem__(self, key):
        data = np.asarray(self.array[key])
        self.reads.append(data.size)
        return data


def test_a_large_dask_image_is_read_a_window_at_a_time_with_bounded_memory(tmp_path):
    da = pytest.importorskip("dask.array")
    shape = (4096, 4096)
    lazy = da.zeros(shape, np.uint8, chunks=512).map_blocks(_disc_block, dtype=np.uint8)
    image = Recording(lazy)
    segmenter = bit_segmenter(2)
    plan = segmenter.plan(shape, tile_size=512, tile_overlap=32)
    out = LabelFile(tmp_path / "labels.zarr", shape)
    tracemalloc.start()
    count = segmenter.iter_segment(image, out.array, plan=plan, min_size=0)
    tiles = 0
    try:
        while True:
            next(count)
            tiles += 1
    except StopIteration as stop:
        objects = stop.value
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out.commit()
    assert tiles == plan.tiles == 81
    largest = math.prod(plan.grid.read_shape)
    assert max(image.reads) <= max(largest, ImageSource.SAMPLE_VALUES * 2)
    assert sum(image.reads) < 3 * math.prod(shape)  # each pixel read about once per tile
    host, _ = runtime.tile_bytes(segmenter.config, plan.grid.tile_shape, plan.grid.read_shape,
                                 plan.grid.tile_shape)
    assert peak < 2.5 * host, f"{peak / 2**20:.0f} MiB, one tile {host / 2**20:.0f} MiB"
    assert peak < math.prod(shape) * 4 / 2  # far from the image as float32, or its labels
    import zarr

    labels = zarr.open(str(tmp_path / "labels.zarr"), mode="r")
    assert objects == 16 * 16 and labels.shape == shape
    assert len(np.unique(labels[1024:2048, 1024:2048])) == 16 + 1


def test_a_sparse_memory_mapped_tiff_is_segmented_into_a_tiff_memory_map(tmp_path):
    shape = (4096, 3072)
    big = tifffile.memmap(tmp_path / "big.tif", shape=shape, dtype=np.uint8)
    yy, xx = np.mgrid[:40, :40]
    for y, x in [(100, 100), (2000, 1500), (4000, 3000), (1023, 1023)]:  # one on a seam
        window = big[y - 20:y + 20, x - 20:x + 20]
        window[(yy - 20) ** 2 + (xx - 20) ** 2 <= 144] = 200
    big.flush()
    del big
    image = open_lazy(tmp_path / "big.tif")
    assert isinstance(image, np.memmap)
    segmenter = bit_segmenter(2)
    tracemalloc.start()
    with LabelFile(tmp_path / "labels.tif", shape) as out:
        for _ in segmenter.iter_segment(image, out.array, tile_size=512, tile_overlap=32,
                                        min_size=0):
            pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < math.prod(shape)  # less than the uint8 image itself
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == shape and labels.max() == 4
    assert len(np.unique(labels[1003:1044, 1003:1044])) == 2  # the seam object: one id
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file became labels.tif


def test_the_memory_check_speaks_of_the_tile_before_reading(monkeypatch):
    segmenter = bit_segmenter(2)
    image = Recording(np.zeros((5000, 5000), np.uint8))
    monkeypatch.setattr(runtime, "available_bytes", lambda device="cpu": 50 * 2**20)
    with pytest.raises(runtime.MemoryCheckError, match=r"one 1024 x 1024 tile \(of 36"):
        next(segmenter.iter_segment(image, np.zeros((5000, 5000), np.uint32)))
    assert image.reads == []
    with pytest.raises(runtime.MemoryCheckError, match="results of this 5000 x 5000 image"):
        segmenter.segment(image)  # labels, step maps and colors in memory: too much
    assert image.reads == []


def test_views_and_label_files_leave_nothing_half_written(tmp_path):
    base = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    view = AxesView(base, {0: 1})
    assert view.shape == (3, 4) and (view[1:, ::2] == base[1, 1:, ::2]).all()
    view[0, 0] = -1
    assert base[1, 0, 0] == -1
    with pytest.raises(KeyboardInterrupt), LabelFile(tmp_path / "l.zarr", (64, 64)) as out:
        out.array[:10, :10] = 1
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_compressed_and_pyramid_tiffs_open_lazily_at_full_resolution(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (300, 350), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zlib.tif", image, compression="zlib", tile=(128, 128))
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(image, subifds=1, tile=(128, 128), compression="zlib")
        tif.write(image[::2, ::2], subfiletype=1, tile=(128, 128), compression="zlib")
    for name in ("zlib.tif", "pyramid.tif"):
        lazy_image = open_lazy(tmp_path / name)
        assert not isinstance(lazy_image, np.ndarray), name  # a store, not the pixels
        assert lazy_image.shape == image.shape
        np.testing.assert_array_equal(np.asarray(lazy_image[40:200, 100:330]),
                                      image[40:200, 100:330])
