"""Input normalisation: any image (grayscale or RGB, any integer or float dtype) to float32 [0, 1].

The settings live in the model's config (``NormalizationConfig``) so a model always sees its
images scaled the way it was trained.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from napari_colorrl.core.config import ColorRLConfig, NormalizationConfig


def split_channels(image: np.ndarray, ndim: int) -> tuple[np.ndarray, bool]:
    """Return ``(array (C, *S), had_channels)`` for a grayscale or multi-channel image.

    A 2D image may be (H, W), (H, W, C) or (C, H, W) with C in 1..4; a 3D volume (Z, Y, X),
    (Z, Y, X, C) or (C, Z, Y, X). Channels last are preferred when both ends could be channels.
    """
    image = np.asarray(image)
    if image.ndim == ndim:
        return image[None], False
    if image.ndim == ndim + 1:
        if image.shape[-1] <= 4:
            return np.moveaxis(image, -1, 0), True
        if image.shape[0] <= 4:
            return image, True
    kind = "2D image (Y, X)" if ndim == 2 else "3D volume (Z, Y, X)"
    other = 3 if ndim == 2 else 2
    fix = f"use a {other}D model for {other}D data, or " if image.ndim in (other, other + 1) else ""
    raise ValueError(
        f"The image has shape {image.shape}, but this {ndim}D model expects a {kind}, optionally "
        f"with up to 4 colour channels: {fix}pick one frame or channel of the image."
    )


def spatial_shape(image: np.ndarray, ndim: int) -> tuple[int, ...]:
    """Spatial shape of an image that may carry a channel axis."""
    return tuple(split_channels(image, ndim)[0].shape[1:])


def normalize_image(
    image: np.ndarray, config: NormalizationConfig, ndim: int
) -> np.ndarray:
    """Scale ``image`` to float32 (C, *S) in [0, 1], with C = config.channels.

    RGBA drops alpha; RGB given to a grayscale model is averaged; grayscale given to an RGB model
    is repeated. NaN and inf are replaced by the image's finite minimum. A constant image becomes
    all zeros. Each channel is scaled separately.
    """
    channels, _ = split_channels(image, ndim)
    data = channels.astype(np.float32, copy=True)
    if data.shape[0] == 4:
        data = data[:3]
    if data.shape[0] == 2:
        data = data[:1]
    if config.channels == 1 and data.shape[0] != 1:
        data = data.mean(axis=0, keepdims=True)
    elif config.channels == 3 and data.shape[0] == 1:
        data = np.repeat(data, 3, axis=0)
    out = np.empty_like(data)
    for c in range(data.shape[0]):
        out[c] = _scale(data[c], config)
    return out


def _scale(channel: np.ndarray, config: NormalizationConfig) -> np.ndarray:
    finite = np.isfinite(channel)
    if not finite.all():
        fill = channel[finite].min() if finite.any() else 0.0
        channel = np.where(finite, channel, fill)
    if config.mode == "percentile":
        # Percentiles of a subsample: exact enough and fast on large volumes.
        flat = channel.ravel()
        if flat.size > 1_000_000:
            flat = flat[:: flat.size // 1_000_000]
        low, high = np.percentile(flat, [config.low, config.high])
    else:
        low, high = float(channel.min()), float(channel.max())
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


def network_labels(labels: np.ndarray, config: ColorRLConfig) -> np.ndarray:
    """Labels at the network's resolution (nearest resize in 'resize' mode)."""
    if config.input_mode == "resize":
        return resize_nearest(labels, tuple(config.input_size))
    return labels
