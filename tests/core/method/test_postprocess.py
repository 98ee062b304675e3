import numpy as np

from napari_colorrl.core.data.normalize import resize_nearest
from napari_colorrl.core.method.postprocess import instances_from_colors, remove_small


def test_components_per_color_split_same_color_objects_apart():
    colors = np.zeros((6, 9), np.uint8)
    colors[1:3, 1:3] = 1  # object a, color 1
    colors[1:3, 3:5] = 2  # touching object b, other color
    colors[4:6, 6:9] = 1  # same color as a but not touching -> its own instance
    labels = instances_from_colors(colors)
    assert labels.dtype == np.uint16
    assert labels.max() == 3
    assert len(np.unique(labels[1:3, 1:3])) == 1
    assert labels[1, 1] != labels[1, 3] != labels[4, 6]
    assert labels[0, 0] == 0


def test_full_connectivity_by_default_and_configurable():
    colors = np.zeros((4, 4), np.uint8)
    colors[0, 0] = 3
    colors[1, 1] = 3  # diagonal neighbour
    assert instances_from_colors(colors).max() == 1
    assert instances_from_colors(colors, connectivity=1).max() == 2


def test_min_size_removal_and_relabel():
    colors = np.zeros((10, 10), np.uint8)
    colors[0:4, 0:4] = 1  # 16 px
    colors[6, 6] = 2  # 1 px
    colors[8:10, 0:3] = 5  # 6 px
    labels = instances_from_colors(colors, min_size=5)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[6, 6] == 0


def test_resize_back_to_output_shape_3d():
    colors = np.zeros((4, 4, 4), np.uint8)
    colors[:2, :2, :2] = 1
    colors[2:, 2:, 2:] = 2
    labels = instances_from_colors(colors, output_shape=(8, 6, 10))
    assert labels.shape == (8, 6, 10)
    assert labels.max() == 2
    assert (labels > 0).sum() == 2 * (4 * 3 * 5)


def test_remove_small_vectorised_keeps_order():
    labels = np.array([[1, 1, 0, 3], [2, 0, 0, 3]])
    out = remove_small(labels, 2)
    np.testing.assert_array_equal(out, [[1, 1, 0, 2], [0, 0, 0, 2]])


def test_resize_nearest_identity_and_upscale():
    a = np.arange(6).reshape(2, 3)
    assert resize_nearest(a, (2, 3)) is a
    up = resize_nearest(a, (4, 6))
    np.testing.assert_array_equal(up[::2, ::2], a)
