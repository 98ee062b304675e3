"""The scale a model works at: the typical size of its objects at the network's input.

A model sees objects of one size in training; an image segmented at another scale (a 4x larger
field of view squeezed into the network, a higher magnification) shows it objects of a size it
never learnt. ``TrainingScale`` records, per spatial axis, the median object diameter at the
network's input and how training images were scaled to it; inference rescales an image so its
objects match (docs/method.md, "Scale and tiles").

Object size per axis (:func:`object_diameters`): the equivalent diameter of each object (of the
disc or ball of its area or volume), split over the axes in proportion to the object's standard
deviation along each, so the geometric mean of the per-axis sizes is the equivalent diameter
and an axis-aligned ellipse or ellipsoid gets its axis lengths. numpy only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ColorRLConfig


def object_diameters(labels: np.ndarray) -> np.ndarray:
    """(N, ndim) float64: per-axis diameters in pixels of the N objects of ``labels`` (ids > 0),
    in the order of their ids; objects absent from the ids are left out."""
    labels = np.asarray(labels)
    ndim = labels.ndim
    ids = labels.ravel().astype(np.int64, copy=False)
    counts = np.bincount(ids)
    present = np.flatnonzero(counts)
    present = present[present > 0]
    if present.size == 0:
        return np.zeros((0, ndim))
    n = counts[present].astype(np.float64)
    sigmas = np.empty((present.size, ndim))
    for axis in range(ndim):
        shape = [1] * ndim
        shape[axis] = labels.shape[axis]
        coord = np.broadcast_to(np.arange(labels.shape[axis], dtype=np.float64).reshape(shape),
                                labels.shape).ravel()
        total = np.bincount(ids, weights=coord, minlength=counts.size)[present]
        square = np.bincount(ids, weights=coord * coord, minlength=counts.size)[present]
        mean = total / n
        # + 1/12: the variance of a pixel of width 1, so a one-pixel object has a size.
        sigmas[:, axis] = np.sqrt(np.maximum(square / n - mean * mean, 0.0) + 1.0 / 12.0)
    if ndim == 2:
        equivalent = 2.0 * np.sqrt(n / math.pi)
    else:
        equivalent = 2.0 * np.cbrt(3.0 * n / (4.0 * math.pi))
    geometric = np.exp(np.log(sigmas).mean(axis=1))
    return equivalent[:, None] * sigmas / geometric[:, None]


@dataclass(frozen=True)
class TrainingScale:
    """The scale a model was trained at (all per spatial axis).

    object_size: median object diameter in pixels/voxels at the network's input.
    image_scale: network pixels per image pixel in training (``input_scale`` for 'crop' models,
        1 unless set; for 'resize' models the median over the training images of input size /
        image size).
    image_shapes: the spatial shapes of the training images (at most ``MAX_SHAPES`` of them, the
        most frequent): a 'resize' model keeps resizing an image of one of these shapes to its
        input size, as in training. None: every shape (a 'resize' model saved before scales
        were recorded resizes every image, as it always did).
    objects: how many objects ``object_size`` was measured on (0: derived from the config).
    """

    object_size: tuple[float, ...]
    image_scale: tuple[float, ...]
    image_shapes: tuple[tuple[int, ...], ...] | None = ()
    objects: int = 0

    @property
    def measured(self) -> bool:
        return self.objects > 0

    @property
    def diameter(self) -> float:
        """The equivalent diameter: the geometric mean of ``object_size``."""
        return float(np.exp(np.mean(np.log(self.object_size))))

    def to_dict(self) -> dict[str, Any]:
        return {"object_size": [float(v) for v in self.object_size],
                "image_scale": [float(v) for v in self.image_scale],
                "image_shapes": None if self.image_shapes is None else
                [[int(v) for v in s] for s in self.image_shapes],
                "objects": int(self.objects)}

    @classmethod
    def from_dict(cls, data: Any, ndim: int) -> TrainingScale:
        """The scale saved by ``to_dict``; ValueError naming what is wrong otherwise."""
        if not isinstance(data, dict):
            raise ValueError("training_scale must be a dictionary")

        def numbers(key: str) -> tuple[float, ...]:
            value = data.get(key)
            if (not isinstance(value, (list, tuple)) or len(value) != ndim
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               and math.isfinite(v) and v > 0 for v in value)):
                raise ValueError(f"training_scale.{key} must be {ndim} positive numbers, got "
                                 f"{value!r}")
            return tuple(float(v) for v in value)

        shapes = data.get("image_shapes", [])
        if shapes is not None and (not isinstance(shapes, (list, tuple))
                                   or len(shapes) > MAX_SHAPES
                or not all(isinstance(s, (list, tuple)) and len(s) == ndim
                           and all(isinstance(v, int) and v > 0 for v in s) for s in shapes)):
            raise ValueError(f"training_scale.image_shapes must be up to {MAX_SHAPES} shapes of "
                             f"{ndim} whole numbers, or null")
        objects = data.get("objects", 0)
        if not isinstance(objects, int) or isinstance(objects, bool) or objects < 0:
            raise ValueError("training_scale.objects must be a whole number >= 0")
        return cls(numbers("object_size"), numbers("image_scale"),
                   None if shapes is None else tuple(tuple(int(v) for v in s) for s in shapes),
                   objects)

    def resizes(self, shape: Sequence[int]) -> bool:
        """Whether a 'resize' model resizes an image of spatial ``shape`` whole to its input
        size (a training shape, or any shape for a model saved before scales were recorded)."""
        return self.image_shapes is None or tuple(int(v) for v in shape) in self.image_shapes

    def describe(self) -> str:
        size = " x ".join(f"{v:.1f}" for v in self.object_size)
        how = (f"measured on {self.objects} training objects" if self.measured
               else "derived from the model's settings")
        return f"objects of {size} px at the network's input ({how})"


#: Training image shapes a scale keeps (a 'resize' model resizes images of these shapes).
MAX_SHAPES = 16


def measure_training_scale(samples: Sequence, config: ColorRLConfig) -> TrainingScale:
    """The ``TrainingScale`` of training samples (objects with ``image`` and ``labels``) for a
    model of ``config``: the labels are seen at the network's input as in training (resized to
    the input size in 'resize' mode, as they are in 'crop' mode). Falls back to
    :func:`derived_scale` when the labels hold no object."""
    from .normalize import network_labels

    sizes, scales, shapes = [], [], {}
    for sample in samples:
        labels = np.asarray(sample.labels)
        shape = tuple(int(v) for v in labels.shape)
        shapes[shape] = shapes.get(shape, 0) + 1
        if config.input_mode == "resize":
            scales.append([n / s for n, s in zip(config.input_size, shape)])
        sizes.append(object_diameters(network_labels(labels, config)))
    found = np.concatenate(sizes) if sizes else np.zeros((0, config.ndim))
    if not len(found):
        return derived_scale(config)
    image_scale = (tuple(float(v) for v in np.median(scales, axis=0)) if scales
                   else config.crop_scale)
    frequent = sorted(shapes, key=lambda s: -shapes[s])[:MAX_SHAPES]
    return TrainingScale(
        object_size=tuple(float(v) for v in np.median(found, axis=0)),
        image_scale=image_scale,
        image_shapes=tuple(frequent) if config.input_mode == "resize" else (),
        objects=int(len(found)),
    )


def derived_scale(config: ColorRLConfig) -> TrainingScale:
    """The scale of a model saved without one (before scales were recorded): objects twice
    the smallest splitting radius across (the radii are set from the object size: objects
    closer than a radius must differ); a 'crop' model sees images at its ``input_scale`` (1:1
    unless set), a 'resize' model resizes every image to its input size, as it always did (its
    training images' sizes are not known)."""
    size = 2.0 * float(min(config.reward.radii))
    resize = config.input_mode == "resize"
    return TrainingScale(object_size=(size,) * config.ndim,
                         image_scale=(1.0,) * config.ndim if resize else config.crop_scale,
                         image_shapes=None if resize else (), objects=0)


def scale_from_extra(extra: dict, config: ColorRLConfig, source: str) -> TrainingScale:
    """The scale a checkpoint's ``extra`` records, or (saved without one, or with a damaged
    one) the derived scale, with one warning saying so."""
    from .checks import ColorRLWarning

    data = extra.get("training_scale") if isinstance(extra, dict) else None
    if data is not None:
        try:
            return TrainingScale.from_dict(data, config.ndim)
        except ValueError as err:
            problem = f"its training scale is unusable ({err})"
    else:
        problem = "it was saved without its training scale (an older napari-colorrl)"
    scale = derived_scale(config)
    how = ("it resizes every image to its input size, as before, and " if
           config.input_mode == "resize" else "")
    warnings.warn(
        f"Model {source}: {problem}; {how}its objects are taken as "
        f"{scale.object_size[0]:g} px at the network's input (twice the smallest splitting "
        f"radius). Give the object size of your images (--object-size, or the dock's object "
        f"size) to segment them at that scale in tiles, or train the model again to record "
        f"its scale.", ColorRLWarning, stacklevel=3)
    return scale


def object_size_pixels(size: Sequence[float] | float, pixel_size: Sequence[float] | float |
                       None, ndim: int) -> tuple[float, ...] | float:
    """The object size the user gave, in pixels: one number (an equivalent diameter; objects
    shaped like the training ones) or one per axis; with ``pixel_size`` (physical units per
    pixel, one number or one per axis) the size is in those units and becomes one per axis.
    ValueError, naming the problem, for counts or values that cannot be sizes."""
    values = _positive(size, ndim, "object size")
    if pixel_size is None:
        return values[0] if len(values) == 1 else values
    pixels = _positive(pixel_size, ndim, "pixel size")
    if len(values) == 1:
        values = values * ndim
    if len(pixels) == 1:
        pixels = pixels * ndim
    return tuple(v / p for v, p in zip(values, pixels))


def _positive(value: Sequence[float] | float, ndim: int, what: str) -> tuple[float, ...]:
    items = [value] if isinstance(value, (int, float)) else list(value)
    if len(items) not in (1, ndim):
        raise ValueError(f"Give the {what} as one number or {ndim} (one per axis, "
                         f"{'Z Y X' if ndim == 3 else 'Y X'}), not {len(items)}.")
    out = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"The {what} must be a number, got {item!r}.") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"The {what} must be a positive number, got {item!r}.")
        out.append(number)
    return tuple(out)
