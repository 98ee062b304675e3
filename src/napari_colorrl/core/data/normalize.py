"""Input normalisation: any image (grayscale or RGB, any integer or float dtype) to float32 [0, 1].

The settings live in the model's config (``NormalizationConfig``) so a model always sees its
images scaled the way it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import resize

from ..config import ColorRLConfig, NormalizationConfig


def channel_axis(shape: tuple[int, ...], ndim: int) -> int | None:
    """Where the colour channels of an image of ``shape`` are: None (grayscale), 0 or -1.

    A 2D image may be (H, W), (H, W, C) or (C, H, W) with C in 1..4; a 3D volume (Z, Y, X) or
    (Z, Y, X, C). A volume with a short first axis, (n <= 4, Z, Y, X), could be channels or a
    time series, and raises ValueError, as does an image whose both ends could be channels
    (e.g. (3, 100, 4)). Files whose metadata names the axes are read channels-last
    (``files.read_image``); training samples have their channels put last by
    ``checks.check_training_samples``, where the labels say which axes are spatial. Reads the
    shape only (a lazy array stays unread).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == ndim:
        return None
    if len(shape) == ndim + 1:
        first, last = shape[0] <= 4, shape[-1] <= 4
        if first and last:
            raise ValueError(
                f"The image has shape {shape}: both its first and its last axis could be "
                f"colour channels; give it as channels-last (..., C) with a spatial size over 4 "
                f"pixels, or crop/pad the narrow axis."
            )
        if last:
            return -1
        if first and ndim == 3:
            raise ValueError(
                f"The image has shape {shape}: its first axis could be {shape[0]} colour "
                f"channels or {shape[0]} time points (a stack of volumes). Give channels last "
                f"(Z, Y, X, C), save it as a TIFF whose metadata names the axes (ImageJ or "
                f"OME, e.g. CZYX or TZYX), or segment one volume at a time."
            )
        if first:
            return 0
    kind = "2D image (Y, X)" if ndim == 2 else "3D volume (Z, Y, X)"
    other = 3 if ndim == 2 else 2
    fix = f"use a {other}D model for {other}D data, or " if len(shape) in (other, other + 1) else ""
    raise ValueError(
        f"The image has shape {shape}, but this {ndim}D model expects a {kind}, optionally "
        f"with up to 4 colour channels: {fix}pick one frame or channel of the image."
    )


def split_channels(image: np.ndarray, ndim: int) -> tuple[np.ndarray, bool]:
    """Return ``(array (C, *S), had_channels)`` for a grayscale or multi-channel image, in the
    layouts :func:`channel_axis` accepts (ValueError for the others)."""
    image = np.asarray(image)
    axis = channel_axis(image.shape, ndim)
    if axis is None:
        return image[None], False
    return (np.moveaxis(image, -1, 0) if axis == -1 else image), True


def spatial_shape(image: np.ndarray, ndim: int) -> tuple[int, ...]:
    """Spatial shape of an image that may carry a channel axis (from its shape alone)."""
    shape = tuple(np.shape(image))
    axis = channel_axis(shape, ndim)
    if axis is None:
        return shape
    return shape[:-1] if axis == -1 else shape[1:]


def normalize_image(
    image: np.ndarray, config: NormalizationConfig, ndim: int
) -> np.ndarray:
    """Scale ``image`` to float32 (C, *S) in [0, 1], with C = config.channels.

    ``model_channels`` then ``normalize_channels``: the channels the model takes, each scaled
    separately (see both).
    """
    return normalize_channels(model_channels(image, config, ndim), config)


def model_channels(image: np.ndarray, config: NormalizationConfig, ndim: int) -> np.ndarray:
    """The image as float32 (C, *S) with the C = config.channels channels the model takes,
    unscaled.

    A grayscale model gets the mean of all channels (2, 3 or 4: a constant alpha channel only
    shifts the mean, which the scaling removes). An RGB model gets RGB as is, the first three
    channels of four (a fourth that is not constant is dropped with a warning), and the
    grayscale (or two-channel mean) repeated. Values beyond float32 (e.g. float64 near 1e300)
    raise ValueError.
    """
    channels, _ = split_channels(image, ndim)
    return network_channels(channels, config, warn_alpha=True)


def network_channels(channels: np.ndarray, config: NormalizationConfig,
                     warn_alpha: bool = False) -> np.ndarray:
    """``model_channels`` of an image's channels already split, (C_in, *S) (a tile of it, or
    a subsample); warn_alpha: warn when a dropped 4th channel is not constant."""
    with np.errstate(over="ignore", invalid="ignore"):
        data = channels.astype(np.float32, copy=True)
    if channels.dtype.kind == "f" and channels.dtype.itemsize > 4:
        _check_float32_range(channels, data)
    if config.channels == 3 and data.shape[0] == 4:
        if warn_alpha and data[3].min() != data[3].max():
            from .checks import warn

            warn(
                "The image has 4 channels and the model takes RGB: the 4th channel was "
                "dropped as alpha, but it is not constant. If it holds signal, give the model "
                "the channels it was trained on."
            )
        data = data[:3]
    if config.channels == 1 and data.shape[0] != 1:
        data = data.mean(axis=0, keepdims=True)
    elif config.channels == 3 and data.shape[0] != 3:
        data = np.repeat(data.mean(axis=0, keepdims=True), 3, axis=0)
    return data


def normalize_channels(data: np.ndarray, config: NormalizationConfig) -> np.ndarray:
    """Each channel of a float (C, *S) array scaled to float32 [0, 1] (``config.mode``).

    NaN and inf are replaced by the channel's finite minimum; a constant channel becomes all
    zeros.
    """
    out = np.empty(data.shape, dtype=np.float32)
    for c in range(data.shape[0]):
        out[c] = _scale(data[c], config)
    return out


@dataclass(frozen=True)
class Levels:
    """Per network channel: the value mapped to 0 (``low``), the one mapped to 1 (``high``),
    and the value that replaces NaN and inf (``fill``: the finite minimum)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    fill: tuple[float, ...]


def channel_levels(data: np.ndarray, config: NormalizationConfig) -> Levels:
    """The ``Levels`` of network channels ``data`` (C, *S), found as ``normalize_channels``
    finds them: percentiles of a subsample of about a million values, or min and max."""
    found = [_levels(channel, config) for channel in data]
    return Levels(*(tuple(v[i] for v in found) for i in range(3)))


def apply_levels(data: np.ndarray, levels: Levels) -> np.ndarray:
    """Network channels (C, *S) scaled to float32 [0, 1] by ``levels``: what
    ``normalize_channels`` does with the levels of the whole image, for one tile of it."""
    out = np.empty(data.shape, np.float32)
    for c, channel in enumerate(data):
        finite = np.isfinite(channel)
        if not finite.all():
            channel = np.where(finite, channel, np.float32(levels.fill[c]))
        low, high = levels.low[c], levels.high[c]
        if high <= low:
            out[c] = 0.0
        else:
            out[c] = np.clip((channel - low) / (high - low), 0.0, 1.0)
    return out


def _check_float32_range(original: np.ndarray, data: np.ndarray) -> None:
    """ValueError when finite values of ``original`` became inf in its float32 copy ``data``."""
    if np.isfinite(data).all():
        return
    overflow = np.isinf(data) & np.isfinite(original)
    if overflow.any():
        top = float(np.abs(original[overflow]).max())
        raise ValueError(
            f"The image holds values up to {top:.3g}, beyond float32 (about 3.4e38); rescale it "
            f"(e.g. divide by its maximum) or convert it to float32 first."
        )


def _levels(channel: np.ndarray, config: NormalizationConfig) -> tuple[float, float, float]:
    """(low, high, fill) of one channel; low and high keep the types the scaling of
    ``_scale`` has always computed with (float64 percentiles, Python floats for min/max)."""
    finite = np.isfinite(channel)
    fill = 0.0
    if not finite.all():
        fill = float(channel[finite].min()) if finite.any() else 0.0
        channel = np.where(finite, channel, np.float32(fill))
    if config.mode == "percentile":
        # Percentiles of a subsample: exact enough and fast on large volumes.
        flat = channel.ravel()
        if flat.size > 1_000_000:
            flat = flat[:: flat.size // 1_000_000]
        low, high = np.percentile(flat, [config.low, config.high])  # float64 scalars
    else:
        low, high = float(channel.min()), float(channel.max())
    return low, high, fill


def _scale(channel: np.ndarray, config: NormalizationConfig) -> np.ndarray:
    low, high, fill = _levels(channel, config)
    finite = np.isfinite(channel)
    if not finite.all():
        channel = np.where(finite, channel, np.float32(fill))
    if high <= low:
        return np.zeros_like(channel, dtype=np.float32)
    return np.clip((channel - low) / (high - low), 0.0, 1.0).astype(np.float32)


def resize_image(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize a (C, *S) float image to (C, *shape), linear with anti-aliasing when shrinking."""
    if tuple(image.shape[1:]) == tuple(shape):
        return image
    return resize(
        image, (image.shape[0], *shape), order=1, preserve_range=True, anti_aliasing=True
    ).astype(np.float32)


def resize_nearest(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of an n-D array (labels, color maps) by index lookup.

    One ``take`` per resized axis (pixel centres mapped back): the same result as one open-mesh
    fancy index over all axes, tens of times faster on full-size images.
    """
    if tuple(array.shape) == tuple(shape):
        return array
    if len(shape) != array.ndim:
        raise ValueError(f"shape {tuple(shape)} needs {array.ndim} axes like the array.")
    out = array
    for axis, (n, m) in enumerate(zip(shape, array.shape)):
        if n != m:
            index = np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
            out = out.take(index, axis=axis)
    return out


def scaled_shape(shape: tuple[int, ...], config: ColorRLConfig) -> tuple[int, ...]:
    """The spatial ``shape`` of an image at the network's scale in 'crop' mode (``input_scale``
    per axis; the shape itself at scale 1)."""
    return tuple(max(1, round(int(s) * f)) for s, f in zip(shape, config.crop_scale))


def network_image(image: np.ndarray, config: ColorRLConfig) -> np.ndarray:
    """A normalised (C, *S) image at the network's resolution: resized to the input size in
    'resize' mode, by ``input_scale`` in 'crop' mode (linear, anti-aliased when shrinking)."""
    if config.input_mode == "resize":
        return resize_image(image, tuple(config.input_size))
    return resize_image(image, scaled_shape(tuple(image.shape[1:]), config))


def network_labels(labels: np.ndarray, config: ColorRLConfig) -> np.ndarray:
    """Labels at the network's resolution (nearest resize: to the input size in 'resize' mode,
    by ``input_scale`` in 'crop' mode)."""
    if config.input_mode == "resize":
        return resize_nearest(labels, tuple(config.input_size))
    return resize_nearest(labels, scaled_shape(tuple(labels.shape), config))
