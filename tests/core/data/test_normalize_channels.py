"""Every channel reaches the model, axes are not guessed, float32 overflow is refused
(issue 20, point 6 / list item 8)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_colorrl.core.config import NormalizationConfig
from napari_colorrl.core.data.checks import ColorRLWarning
from napari_colorrl.core.data.normalize import normalize_image, split_channels

GRAY, RGB = NormalizationConfig(channels=1), NormalizationConfig(channels=3)


def _signal(shape=(12, 14)):
    return np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)


@pytest.mark.parametrize("count", [2, 4])
def test_signal_in_the_last_channel_reaches_a_grayscale_model(count):
    image = np.zeros((12, 14, count), np.uint8)
    image[..., -1] = _signal()
    out = normalize_image(image, GRAY, 2)
    assert out.shape == (1, 12, 14) and out.max() > 0.9
    np.testing.assert_allclose(out[0], normalize_image(_signal(), GRAY, 2)[0], atol=1e-6)


def test_constant_alpha_does_not_change_the_grayscale_input():
    rgb = np.random.default_rng(1).integers(0, 255, (12, 14, 3)).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full((12, 14, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_allclose(normalize_image(rgba, GRAY, 2), normalize_image(rgb, GRAY, 2),
                               atol=1e-6)


def test_rgb_and_gray_unchanged_bit_for_bit():
    rgb = np.random.default_rng(2).integers(0, 255, (12, 14, 3)).astype(np.uint8)
    data = rgb.astype(np.float32)
    expected = data.mean(axis=-1)
    low, high = np.percentile(expected, [GRAY.low, GRAY.high])
    np.testing.assert_array_equal(
        normalize_image(rgb, GRAY, 2)[0],
        np.clip((expected - low) / (high - low), 0, 1).astype(np.float32))
    gray = _signal().astype(np.float32)
    low, high = np.percentile(gray, [GRAY.low, GRAY.high])
    np.testing.assert_array_equal(normalize_image(_signal(), GRAY, 2)[0],
                                  np.clip((gray - low) / (high - low), 0, 1).astype(np.float32))


def test_rgb_model_gets_two_channels_averaged_and_warns_for_a_signal_alpha():
    image = np.zeros((12, 14, 2), np.uint8)
    image[..., 1] = _signal()
    out = normalize_image(image, RGB, 2)
    assert out.shape == (3, 12, 14) and out.max() > 0.9
    four = np.zeros((12, 14, 4), np.uint8)
    four[..., 3] = _signal()
    with pytest.warns(ColorRLWarning, match="4th channel was dropped"):
        normalize_image(four, RGB, 2)
    four[..., 3] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normalize_image(four, RGB, 2)


@pytest.mark.parametrize("shape", [(3, 100, 4), (2, 60, 3), (4, 4, 4)])
def test_narrow_channels_first_image_is_not_read_channels_last(shape):
    with pytest.raises(ValueError, match=r"both its first and its last axis could be colour"):
        split_channels(np.zeros(shape), 2)


def test_channels_first_and_last_still_read():
    assert split_channels(np.zeros((3, 100, 40)), 2)[0].shape == (3, 100, 40)
    assert split_channels(np.zeros((100, 40, 3)), 2)[0].shape == (3, 100, 40)
    assert split_channels(np.zeros((8, 9, 10, 2)), 3)[0].shape == (2, 8, 9, 10)


def test_a_short_first_axis_of_a_volume_is_not_taken_for_channels():
    """A (T, Z, Y, X) stack of 3 volumes was averaged as 3 channels, without a word."""
    with pytest.raises(ValueError, match=r"could be 3 colour channels or 3 time points.*CZYX"):
        split_channels(np.zeros((3, 8, 9, 10)), 3)


@pytest.mark.parametrize("axes, shape, expected", [
    ("ZCYX", (5, 2, 16, 18), (5, 16, 18, 2)),  # an ImageJ hyperstack: channels go last
    ("CZYX", (2, 5, 16, 18), (5, 16, 18, 2)),
    ("CYX", (3, 16, 18), (16, 18, 3)),
    ("TZYX", (3, 5, 16, 18), (3, 5, 16, 18)),  # no channels: a time series stays one
    ("QQYX", (3, 5, 16, 18), (3, 5, 16, 18)),  # axes unknown: nothing is guessed here
])
def test_tiff_axes_metadata_decides_where_the_channels_are(tmp_path, axes, shape, expected):
    import tifffile

    from napari_colorrl.core.data.files import read_image

    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    if axes == "QQYX":
        tifffile.imwrite(tmp_path / "i.tif", data)
    elif axes in ("ZCYX", "TZYX"):  # ImageJ's own order
        tifffile.imwrite(tmp_path / "i.tif", data, imagej=True, metadata={"axes": axes})
    else:  # tifffile's shaped metadata (any order)
        tifffile.imwrite(tmp_path / "i.tif", data, metadata={"axes": axes})
    image = read_image(tmp_path / "i.tif")
    assert image.shape == expected
    channel = axes.find("C")
    if channel >= 0:  # the same numbers, moved
        np.testing.assert_array_equal(image, np.moveaxis(data, channel, -1))
        split_channels(image, len(expected) - 1)  # and read as channels, not refused
    elif len(shape) == 4:
        with pytest.raises(ValueError, match="time points"):
            split_channels(image, 3)


def test_training_samples_with_channels_first_are_put_channels_last():
    from napari_colorrl.core.data.checks import check_training_samples
    from napari_colorrl.core.data.files import Sample

    labels = np.zeros((6, 9, 10), np.uint8)
    labels[2:4, 3:6, 3:6] = 1
    image = np.stack([labels * 0.0, labels * 1.0]).astype(np.float32)  # (C=2, Z, Y, X)
    [checked] = check_training_samples([Sample("v", image, labels)], 3)
    assert checked.image.shape == (6, 9, 10, 2)
    assert normalize_image(checked.image, GRAY, 3).max() > 0.9  # both channels reach the model


def test_float32_overflow_refused():
    image = np.random.default_rng(3).random((12, 14)) * 1e300
    with pytest.raises(ValueError, match=r"values up to .*e\+300, beyond float32.*rescale"):
        normalize_image(image, GRAY, 2)
    fine = image / 1e300
    assert normalize_image(fine, GRAY, 2).max() > 0.9
    with_inf = fine.copy()
    with_inf[0, 0] = np.inf  # inf stays a NaN/inf case (replaced), not an overflow
    assert np.isfinite(normalize_image(with_inf, GRAY, 2)).all()
