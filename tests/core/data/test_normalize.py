import numpy as np
import pytest

from napari_colorrl.core.config import NormalizationConfig
from napari_colorrl.core.data.normalize import normalize_image, split_channels


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_any_dtype_to_unit_range(dtype):
    rng = np.random.default_rng(0)
    image = (rng.random((20, 30)) * 200).astype(dtype)
    for mode in ("percentile", "minmax"):
        out = normalize_image(image, NormalizationConfig(mode=mode), ndim=2)
        assert out.shape == (1, 20, 30) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1 and out.max() > 0.9


def test_rgb_channels_last_and_first_and_gray_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    out = normalize_image(rgb, NormalizationConfig(channels=3), ndim=2)
    assert out.shape == (3, 10, 12)
    first = normalize_image(np.moveaxis(rgb, -1, 0), NormalizationConfig(channels=3), ndim=2)
    np.testing.assert_allclose(out, first)
    gray = normalize_image(rgb, NormalizationConfig(channels=1), ndim=2)
    assert gray.shape == (1, 10, 12)
    rgba = np.concatenate([rgb, np.full((10, 12, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_allclose(normalize_image(rgba, NormalizationConfig(channels=3), 2), out)
    up = normalize_image(rgb[..., 0], NormalizationConfig(channels=3), ndim=2)
    assert up.shape == (3, 10, 12)


def test_constant_nan_inf_images():
    assert normalize_image(np.full((5, 5), 7.0), NormalizationConfig(), 2).max() == 0
    image = np.arange(25, dtype=np.float32).reshape(5, 5)
    image[0, 0] = np.nan
    image[1, 1] = np.inf
    out = normalize_image(image, NormalizationConfig(mode="minmax"), 2)
    assert np.isfinite(out).all()


def test_wrong_dimensionality_message():
    with pytest.raises(ValueError, match="3D volume"):
        split_channels(np.zeros((4, 5)), ndim=3)
    assert split_channels(np.zeros((4, 5, 6)), ndim=3)[0].shape == (1, 4, 5, 6)
