"""The training scale: measured on the labels at the network's input, saved with the model,
derived (with one warning) for models saved before it; object sizes the user gives (issue 18,
points 1 and 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import tiny_config, tiny_samples
from napari_colorrl.core.data.checks import ColorRLWarning
from napari_colorrl.core.data.files import Sample
from napari_colorrl.core.data.scale import (
    TrainingScale,
    derived_scale,
    measure_training_scale,
    object_diameters,
    object_size_pixels,
    scale_from_extra,
)


def test_diameters_of_discs_ellipses_and_ellipsoids():
    yy, xx = np.mgrid[:200, :200]
    labels = np.zeros((200, 200), np.uint16)
    labels[(yy - 50) ** 2 + (xx - 50) ** 2 <= 20**2] = 1
    labels[((yy - 150) / 10.0) ** 2 + ((xx - 120) / 30.0) ** 2 <= 1] = 3  # id 2 absent
    sizes = object_diameters(labels)
    assert sizes.shape == (2, 2)
    np.testing.assert_allclose(sizes[0], [40, 40], rtol=0.03)
    np.testing.assert_allclose(sizes[1], [20, 60], rtol=0.03)  # its axes, per axis
    assert np.sqrt(sizes[1].prod()) == pytest.approx(2 * np.sqrt(np.sum(labels == 3) / np.pi))
    zz, yy, xx = np.mgrid[:40, :60, :60]
    volume = (((zz - 20) / 5.0) ** 2 + ((yy - 30) / 12.0) ** 2 + ((xx - 30) / 12.0) ** 2 <= 1)
    np.testing.assert_allclose(object_diameters(volume.astype(np.uint8))[0], [10, 24, 24],
                               rtol=0.06)
    assert object_diameters(np.zeros((5, 5), np.uint8)).shape == (0, 2)


def test_measured_at_the_network_input_of_resize_and_crop_models():
    yy, xx = np.mgrid[:128, :128]
    labels = np.zeros((128, 128), np.uint16)
    for i, (cy, cx) in enumerate([(30, 30), (30, 90), (90, 30), (90, 90)], start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = i
    samples = [Sample("a", labels.astype(np.float32), labels)]
    resize = measure_training_scale(samples, tiny_config(2))  # 128 -> 32: objects / 4
    np.testing.assert_allclose(resize.object_size, [5, 5], rtol=0.1)
    assert resize.image_scale == (0.25, 0.25) and resize.image_shapes == ((128, 128),)
    assert resize.objects == 4 and resize.measured
    crop = measure_training_scale(samples, tiny_config(2, input_mode="crop"))
    np.testing.assert_allclose(crop.object_size, [20, 20], rtol=0.05)
    assert crop.image_scale == (1.0, 1.0) and crop.image_shapes == ()
    again = TrainingScale.from_dict(resize.to_dict(), 2)
    assert again == resize


def test_training_saves_the_scale_and_loading_uses_it(tmp_path):
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.model.checkpoint import load_checkpoint
    from napari_colorrl.core.training.trainer import train

    config = tiny_config(2, train={"episodes": 2})
    samples = tiny_samples(2, n=2)
    list(train(config, samples, out=tmp_path / "m.pt"))
    saved = load_checkpoint(tmp_path / "m.pt").extra["training_scale"]
    assert saved == measure_training_scale(samples, config).to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorRLWarning)  # a recorded scale: no warning
        segmenter = Segmenter.load(tmp_path / "m.pt", device="cpu")
    assert segmenter.scale.measured and segmenter.scale.image_shapes == ((40, 40),)


def test_older_checkpoints_load_with_a_derived_scale_and_say_so_once(tmp_path):
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.model.checkpoint import save_checkpoint
    from napari_colorrl.core.model.networks import build_network

    config = tiny_config(2)
    save_checkpoint(tmp_path / "old.pt", config=config,
                    model_state=build_network(config).state_dict())
    with pytest.warns(ColorRLWarning, match="without its training scale") as caught:
        segmenter = Segmenter.load(tmp_path / "old.pt", device="cpu")
        segmenter.segment(np.random.default_rng(0).random((40, 40)).astype(np.float32))
        segmenter.segment(np.random.default_rng(1).random((50, 40)).astype(np.float32))
    assert len([w for w in caught if "training scale" in str(w.message)]) == 1
    assert segmenter.scale == derived_scale(config)
    assert segmenter.scale.object_size == (4.0, 4.0)  # twice the smallest radius (2)
    assert segmenter.plan((300, 200)).squeeze  # an old 'resize' model resizes, as before
    damaged = {"training_scale": {"object_size": [-1, 3], "image_scale": [1, 1]}}
    with pytest.warns(ColorRLWarning, match="object_size must be 2 positive numbers"):
        assert scale_from_extra(damaged, config, "x.pt") == derived_scale(config)


def test_object_sizes_in_pixels_or_physical_units():
    assert object_size_pixels(12, None, 2) == 12.0
    assert object_size_pixels([4, 12, 12], None, 3) == (4.0, 12.0, 12.0)
    # 6 um nuclei, 0.5 um pixels in y/x and 2 um planes: 3 x 12 x 12 voxels.
    assert object_size_pixels(6, (2.0, 0.5, 0.5), 3) == (3.0, 12.0, 12.0)
    for bad, message in (([1, 2, 3], "one number or 2"), ([0], "positive"),
                         (["x"], "must be a number")):
        with pytest.raises(ValueError, match=message):
            object_size_pixels(bad, None, 2)
