import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_colorrl.core.data.synthetic import (
    make_cells_2d,
    make_dataset,
    make_nuclei_3d,
    touching_pairs,
)


def _check_labels(labels: np.ndarray, n_requested: int) -> int:
    assert labels.dtype == np.uint16
    ids = np.unique(labels)
    n = int(labels.max())
    assert ids[0] == 0  # there is background
    assert np.array_equal(ids, np.arange(n + 1))  # 1..N contiguous
    assert 0.7 * n_requested <= n <= n_requested
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        _, k = ndi.label(labels[sl] == lab)  # face connectivity: strictest
        assert k == 1, f"label {lab} has {k} components"
    return n


def _check_image(image: np.ndarray, labels: np.ndarray) -> None:
    assert image.dtype == np.float32
    assert image.shape == labels.shape
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0
    # foreground clearly brighter than background
    assert image[labels > 0].mean() > image[labels == 0].mean() + 0.2


def _adjacent_other_label(labels: np.ndarray) -> int:
    """Objects with at least one other (non-background) label in their 1-pixel dilation."""
    count = 0
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        grown = ndi.binary_dilation(labels[pad] == lab, np.ones((3,) * labels.ndim, bool))
        around = labels[pad][grown]
        count += bool(np.any((around != lab) & (around != 0)))
    return count


def test_cells_2d_shapes_ranges_and_labels():
    image, labels = make_cells_2d(seed=0)
    assert image.shape == (176, 176)
    _check_image(image, labels)
    n = _check_labels(labels, 14)
    touching = _adjacent_other_label(labels)
    assert touching >= n // 2  # most cells touch a neighbour
    assert touching < n or n < 10  # ... typically not all: some isolated cells
    assert len(touching_pairs(labels)) >= 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cells_2d_other_seeds_and_shapes(seed):
    image, labels = make_cells_2d(shape=(128, 160), n_objects=10, seed=seed)
    assert image.shape == labels.shape == (128, 160)
    _check_image(image, labels)
    _check_labels(labels, 10)
    assert len(touching_pairs(labels)) >= 2


def test_deterministic_given_seed():
    a_img, a_lab = make_cells_2d(seed=7)
    b_img, b_lab = make_cells_2d(seed=7)
    c_img, c_lab = make_cells_2d(seed=8)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    v1, g1 = make_nuclei_3d(shape=(24, 40, 40), n_objects=6, seed=3)
    v2, g2 = make_nuclei_3d(shape=(24, 40, 40), n_objects=6, seed=3)
    assert np.array_equal(v1, v2) and np.array_equal(g1, g2)


def test_boundaries_between_touching_cells_are_darker_but_faint():
    image, labels = make_cells_2d(seed=0)
    high = ndi.maximum_filter(labels, size=3)
    low = ndi.minimum_filter(np.where(labels > 0, labels, 65535), size=3)
    between = (labels > 0) & ((high != labels) | ((low != labels) & (low != 65535)))
    interior = ndi.binary_erosion(labels > 0, iterations=3)
    assert between.any()
    ratio = image[between].mean() / image[interior].mean()
    assert 0.4 < ratio < 0.95, ratio


def test_nuclei_3d_shapes_ranges_and_labels():
    image, labels = make_nuclei_3d(seed=0)
    assert image.shape == (48, 64, 64)
    _check_image(image, labels)
    n = _check_labels(labels, 16)
    assert _adjacent_other_label(labels) >= n // 2
    assert len(touching_pairs(labels)) >= 4


def test_touching_pairs_simple():
    lab = np.zeros((5, 8), np.uint16)
    lab[1:4, 1:3] = 1
    lab[1:4, 3:5] = 2
    lab[1:4, 6:8] = 3
    assert touching_pairs(lab) == {(1, 2)}
    full = np.ones((4, 4), np.uint16)
    full[:, 2:] = 2  # no background at all
    assert touching_pairs(full) == {(1, 2)}


def test_make_dataset():
    data = make_dataset("2d", n=3, seed=5, shape=(96, 96), n_objects=6)
    assert len(data) == 3
    assert all(img.shape == lab.shape == (96, 96) for img, lab in data)
    assert not np.array_equal(data[0][1], data[1][1])
    again = make_dataset("2d", n=3, seed=5, shape=(96, 96), n_objects=6)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(data, again, strict=True))
    vols = make_dataset("3d", n=1, seed=0, shape=(20, 32, 32), n_objects=4)
    assert vols[0][0].shape == vols[0][1].shape == (20, 32, 32)
    with pytest.raises(ValueError):
        make_dataset("4d", n=1)


def test_sample_data_layer_tuples():
    from napari_colorrl import sample_data

    for fn, ndim, names in [
        (sample_data.cells_2d, 2, ("cells (synthetic)", "cells ground truth")),
        (sample_data.nuclei_3d, 3, ("nuclei (synthetic)", "nuclei ground truth")),
    ]:
        layers = fn()
        assert isinstance(layers, list) and len(layers) == 2
        (img, img_meta, img_type), (lab, lab_meta, lab_type) = layers
        assert (img_type, lab_type) == ("image", "labels")
        assert (img_meta["name"], lab_meta["name"]) == names
        assert img.ndim == lab.ndim == ndim and img.shape == lab.shape
        assert img.dtype == np.float32 and np.issubdtype(lab.dtype, np.integer)


def test_sample_data_imports_no_heavy_modules():
    code = (
        "import sys, napari_colorrl.sample_data; "
        "bad = [m for m in ('torch', 'napari', 'qtpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
