"""Tiled inference: the tile grid, the stitching of instances across tiles, and agreement of
tiled with untiled inference (issue 18, points 3 and 6).

The policies here are small hand-made torch modules (``conftest.BitPolicy``), not trained
networks: their coloring is a fixed function of the image (the bits of its intensity level), so
tiled and untiled inference must give the same objects wherever the stitching is right. (A
trained model's coloring also depends on the context a tile sees; docs/results.md, "Tiles and
scale", measures that.)
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import bit_segmenter, blobs
from napari_colorrl.core.data.frames import frame_shape
from napari_colorrl.core.metrics import ap
from napari_colorrl.core.tiling import AxisTiles, Stitcher, TileGrid, axis_starts


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The same objects, whatever their ids."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


# --- the grid -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,tile,overlap", [(100, 100, 10), (101, 40, 8), (1000, 256, 64),
                                                (257, 128, 0), (300, 64, 32)])
def test_cores_partition_the_axis_and_tiles_overlap_enough(size, tile, overlap):
    axis = AxisTiles.make(size, size, tile, overlap)
    assert axis.starts[0] == 0 and axis.ends[-1] == size
    assert all(e - s <= tile for s, e in zip(axis.starts, axis.ends))
    for i in range(1, len(axis.starts)):
        assert axis.ends[i - 1] - axis.starts[i] >= overlap  # neighbours overlap enough
    assert axis.core_starts[0] == 0 and axis.core_ends[-1] == size
    assert all(axis.core_ends[i] == axis.core_starts[i + 1] for i in range(len(axis.starts) - 1))
    for s, e, cs, ce in zip(axis.starts, axis.ends, axis.core_starts, axis.core_ends):
        assert s <= cs < ce <= e  # the core lies inside its tile
    assert len(axis_starts(size, tile, overlap)) == len(axis.starts)


@pytest.mark.parametrize("size,tile,overlap,align", [(1000, 256, 64, 16), (777, 128, 32, 8),
                                                      (2048, 1024, 128, 16), (300, 40, 30, 16)])
def test_tile_starts_follow_the_network_stride(size, tile, overlap, align):
    """Every tile starts on the network's pooling grid, so it sees the image as an untiled pass
    does; neighbours still overlap enough; the last tile ends at the end, shorter if need be."""
    starts = axis_starts(size, tile, overlap, align)
    assert starts[0] == 0 and starts[-2] + tile < size <= starts[-1] + tile  # covered, no extra
    if tile - overlap >= align:
        assert all(s % align == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert all(b > a for a, b in zip(starts, starts[1:]))
    assert size - starts[-1] > overlap  # the short last tile still overlaps its neighbour


@pytest.mark.parametrize("size,tile,count,align", [(100, 64, 2, 16), (1000, 256, 2, 16),
                                                      (2048, 256, 4, 16), (701, 256, 3, 1),
                                                      (300, 64, 1, 16), (64, 64, 3, 16)])
def test_spread_tiles_are_whole_and_reach_both_ends(size, tile, count, align):
    """``AxisTiles.spread`` (the statistics crops): every tile is whole, on the stride, evenly
    spread from the start of the axis to within a stride of its end; one tile sits in the
    middle; an axis no longer than the tile is one tile of the whole axis."""
    axis = AxisTiles.spread(size, size, tile, count, align)
    if size <= tile:
        assert axis.starts == (0,) and axis.ends == (size,)
        return
    assert len(axis.starts) == count
    assert all(e - s == tile for s, e in zip(axis.starts, axis.ends))
    assert all(s % align == 0 for s in axis.starts)
    if count == 1:
        assert abs(axis.starts[0] + tile / 2 - size / 2) <= align
        return
    assert axis.starts[0] == 0 and size - align < axis.ends[-1] <= size
    gaps = np.diff(axis.starts)
    assert gaps.min() > 0 and gaps.max() - gaps.min() <= align


def test_image_windows_follow_the_nearest_resize_map():
    from napari_colorrl.core.data.normalize import resize_nearest

    grid = TileGrid.make((300, 170), (150, 340), (64, 64), 16)
    covered = np.zeros((300, 170), int)
    for tile in grid:
        covered[tile.core] += 1
        index = [a.network_index for a in grid.axes]
        for axis, (net, win) in enumerate(zip(tile.network, tile.window)):
            assert (index[axis][win] >= net.start).all() and (index[axis][win] < net.stop).all()
    assert (covered == 1).all()  # the cores of the tiles partition the image
    expected = resize_nearest(np.arange(150)[:, None].repeat(340, 1), (300, 170))
    assert (grid.axes[0].network_index[:, None] == expected).all()


# --- stitching --------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_tiled_equals_untiled_with_a_policy_that_sees_only_pixels(ndim):
    segmenter = bit_segmenter(ndim)
    shape = (150, 210) if ndim == 2 else (40, 60, 70)
    image, labels = blobs(shape, n=80 if ndim == 2 else 40, seed=1,
                          radius=(4, 8) if ndim == 2 else (3, 6))
    whole = segmenter.segment(image, min_size=0)
    tiled = segmenter.segment(image, min_size=0, tile_size=48 if ndim == 2 else 32,
                              tile_overlap=24 if ndim == 2 else 16)
    assert whole.plan.tiles == 1 and tiled.plan.tiles > 8
    assert same_partition(whole.instances, tiled.instances)
    assert same_partition(tiled.instances, labels)
    assert tiled.instances.shape == shape and tiled.instances.dtype == np.uint16


@pytest.mark.parametrize("ndim", [2, 3])
def test_tiled_and_untiled_agree_with_rescaling_and_a_receptive_field(ndim):
    """AP50 >= 0.98 of tiled against untiled, with the image rescaled (object size given) so the
    tiles are resampled, and a policy that sees a neighbourhood."""
    segmenter = bit_segmenter(ndim, size=3)
    shape = (180, 240) if ndim == 2 else (48, 64, 64)
    image, labels = blobs(shape, n=80 if ndim == 2 else 30, seed=2, lowest=4,
                          radius=(6, 12) if ndim == 2 else (5, 9))
    options = {"object_size": 2 * segmenter.scale.diameter, "min_size": 8}  # shrunk 2x
    whole = segmenter.segment(image, **options)
    tiled = segmenter.segment(image, tile_size=32 if ndim == 2 else 16, tile_overlap=16 if
                              ndim == 2 else 8, **options)
    assert whole.plan.tiles == 1 and tiled.plan.tiles > 8
    assert whole.plan.factors == pytest.approx((0.5,) * ndim, abs=0.01)
    assert ap(tiled.instances, whole.instances, 0.5) >= 0.98
    assert ap(whole.instances, labels, 0.5) >= 0.9  # and both find the objects


def test_an_object_across_seams_keeps_one_id_and_ids_are_unique():
    segmenter = bit_segmenter(2)
    image = np.zeros((128, 128), np.float32)
    yy, xx = np.mgrid[:128, :128]
    grid = segmenter.plan((128, 128), tile_size=64, tile_overlap=24).grid
    seam = grid.axes[0].core_ends[0]  # where the first core ends, on both axes
    image[(yy - seam) ** 2 + (xx - seam) ** 2 <= 100] = 5 / 7  # on four tiles at once
    image[(yy - 100) ** 2 + (xx - 30) ** 2 <= 64] = 1.0
    result = segmenter.segment(image, min_size=0, tile_size=64, tile_overlap=24)
    assert result.plan.tiles == 9
    middle = result.instances[seam - 9:seam + 9, seam - 9:seam + 9]
    ids = np.unique(result.instances[(yy - seam) ** 2 + (xx - seam) ** 2 <= 100])
    assert len(ids) == 1 and ids[0] > 0 and (middle[4:-4, 4:-4] == ids[0]).all()
    from scipy import ndimage as ndi

    for label in np.unique(result.instances)[1:]:  # every id is one connected object
        assert ndi.label(result.instances == label)[1] == 1


def test_stitcher_drops_an_object_seen_again_and_never_takes_written_pixels():
    from napari_colorrl.core.tiling import Tile

    out = np.zeros((10, 20), np.uint32)
    stitcher = Stitcher(out)
    left = Tile((0, 0), (slice(0, 10), slice(0, 12)), (slice(0, 10), slice(0, 12)),
                (slice(0, 10), slice(0, 10)), (slice(0, 10), slice(0, 12)))
    right = Tile((0, 1), (slice(0, 10), slice(8, 20)), (slice(0, 10), slice(8, 20)),
                 (slice(0, 10), slice(10, 20)), (slice(0, 10), slice(8, 20)))
    colors = np.zeros((10, 12), np.uint8)
    colors[2:6, 6:12] = 1  # centre at column 8.5: the left tile's
    assert stitcher.add(colors, left) == 1
    seen_again = np.zeros((10, 12), np.uint8)
    seen_again[2:6, 0:5] = 1  # the same object (columns 8..12), centre at 10: the right tile's
    seen_again[7:9, 1:4] = 2  # overlaps nothing: a new object
    assert stitcher.add(seen_again, right) == 1
    assert set(np.unique(out)) == {0, 1, 2}
    assert (out[2:6, 6:12] == 1).all() and (out[7:9, 9:12] == 2).all()
    assert stitcher.count == 2


def test_an_object_each_tile_leaves_to_the_other_is_kept_once():
    """Two colorings of one object near a seam differ by a pixel: the left tile's version has
    its centre in the right tile's core and the right tile's in the left's. Each tile kept only
    objects centred in its own core, so neither kept it and the object was lost."""
    from napari_colorrl.core.tiling import Tile

    left = Tile((0, 0), (slice(0, 10), slice(0, 12)), (slice(0, 10), slice(0, 12)),
                (slice(0, 10), slice(0, 10)), (slice(0, 10), slice(0, 12)))
    right = Tile((0, 1), (slice(0, 10), slice(8, 20)), (slice(0, 10), slice(8, 20)),
                 (slice(0, 10), slice(10, 20)), (slice(0, 10), slice(8, 20)))
    out = np.zeros((10, 20), np.uint32)
    stitcher = Stitcher(out)
    colors = np.zeros((10, 12), np.uint8)
    colors[2:6, 10:12] = 1  # columns 10, 11: centre 10.5, in the right tile's core
    assert stitcher.add(colors, left) == 0
    seen = np.zeros((10, 12), np.uint8)
    seen[2:6, 1:3] = 1  # columns 9, 10: centre 9.5, in the left tile's core (done)
    assert stitcher.add(seen, right) == 1
    assert (out[2:6, 9:11] == 1).all() and stitcher.count == 1
    # ... also after a left tile that held nothing at all
    out = np.zeros((10, 20), np.uint32)
    stitcher = Stitcher(out)
    assert stitcher.add(np.zeros((10, 12), np.uint8), left) == 0
    assert stitcher.add(seen, right) == 1 and (out[2:6, 9:11] == 1).all()
    # ... but not a piece the right tile's window cuts (it touches the window's edge)
    out = np.zeros((10, 20), np.uint32)
    stitcher = Stitcher(out)
    assert stitcher.add(np.zeros((10, 12), np.uint8), left) == 0
    cut = np.zeros((10, 12), np.uint8)
    cut[2:6, 0:2] = 1  # columns 8, 9: centre in the left core, cut by the right window
    assert stitcher.add(cut, right) == 0 and not out.any()


def test_shapes_and_dtypes_of_images_volumes_stacks_and_rgb():
    two, three = bit_segmenter(2), bit_segmenter(3)
    image, _ = blobs((70, 90), n=10)
    options = {"tile_size": 32, "tile_overlap": 8, "min_size": 0}
    rgb = np.repeat(image[..., None], 3, axis=-1)
    cases = [(two, image, None), (two, rgb, True), (two, np.stack([image] * 3), False),
             (two, np.stack([rgb] * 2), True), (three, np.stack([image] * 20), None),
             (three, np.stack([np.stack([image] * 20)] * 2), False)]
    for segmenter, data, rgb_flag in cases:
        shape = frame_shape(data.shape, segmenter.config.ndim, rgb_flag)
        labels = np.zeros(shape, np.uint32)
        list(segmenter.iter_segment_frames(data, labels, rgb=rgb_flag, **options))
        assert labels.shape == data.shape[:len(shape)] and labels.max() > 0, data.shape
        if labels.ndim > segmenter.config.ndim:  # every frame alike: the same labels
            assert (labels[0] == labels[-1]).all()
        if rgb_flag is not False and labels.ndim == segmenter.config.ndim:
            result = segmenter.segment(data, **options)
            assert result.instances.shape == shape and result.instances.dtype == np.uint16
            assert result.steps.shape == (3, *shape) and result.colors.dtype == np.uint8


def test_a_3d_network_decides_the_same_voxels_in_tiles_as_in_one_pass():
    """The 3D network path (InstanceNorm3d, stride 16) with the statistics of input-size crops:
    a random-init network of the 3D defaults' depth on a 48 x 128 x 128 volume, in one pass and
    in nine 64^3 tiles with 32 of overlap. Its step-0 decision (the image alone, before any
    step feeds back) differs on 0.5 % of the voxels (measured 2026-12-02), near the seams;
    checked by hand: with each tile normalised by itself (``image_statistics`` returning None)
    4.2 % differ and this test fails. (Later steps of a random network compound near-ties
    through the fed-back actions, so only step 0 is compared; a trained model in 3D: 1 % of the
    voxels differ at its last step, docs/results.md.)"""
    import torch

    from napari_colorrl.core.config import ColorRLConfig
    from napari_colorrl.core.data.synthetic import make_nuclei_3d
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.model.networks import build_network

    config = ColorRLConfig.from_dict({"ndim": 3, "steps": 5, "network": {
        "features": [4, 8, 16, 32, 64], "input_features": 4}})
    torch.manual_seed(0)
    model = build_network(config)
    with torch.no_grad():  # a policy head of ordinary scale: decisions, not near-ties
        model.policy_head.weight.normal_(0.0, 1.0)
    segmenter = Segmenter(model, config, device="cpu")
    image, _ = make_nuclei_3d((48, 128, 128), n_objects=43, seed=5)
    whole = segmenter.segment(image, tile_size=128)
    tiled = segmenter.segment(image, tile_size=64, tile_overlap=32)
    assert whole.plan.tiles == 1 and tiled.plan.tiles == 9
    assert float((whole.steps[0] != tiled.steps[0]).mean()) <= 0.015
