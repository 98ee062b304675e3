"""The frames of an array for a 2D or 3D model: a single image or volume, or a stack of them
(a time series, a 2D model on a volume's planes), with or without a channel axis; and views of
one frame that read and write only the windows asked for (``inference.Segmenter`` segments a
stack frame by frame through them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .lazy import AxesView
from .normalize import channel_axis


def frame_layout(shape: Sequence[int], ndim: int, rgb: bool | None = None
                 ) -> tuple[int, int | None]:
    """(number of leading frame axes, channel axis or None) of an array of ``shape`` for a
    ``ndim``-D model: a single image or volume, or a stack of them (time series, a 2D model on
    a volume's planes).

    rgb: True, the last axis holds colour channels (a napari RGB layer); False, there is none
    (every axis beyond the model's is a frame axis, as for a napari image layer); None, from
    the shape as ``normalize.channel_axis`` finds it for a single image, else frames (with a
    last axis of up to 4 channels, when there are axes to spare). ValueError when the array has
    too few axes.
    """
    shape = tuple(int(s) for s in shape)
    if rgb is True:
        frames, axis = len(shape) - ndim - 1, -1
    elif rgb is False:
        frames, axis = len(shape) - ndim, None
    else:
        try:
            return 0, channel_axis(shape, ndim)
        except ValueError:
            if len(shape) <= ndim:
                raise
        spare = len(shape) - ndim
        last = spare >= 2 and shape[-1] <= 4
        frames, axis = (spare - 1, -1) if last else (spare, None)
    if frames < 0:
        channel_axis(shape[: ndim - 1], ndim)  # raises the message for too few axes
    return frames, axis


def frame_shape(shape: Sequence[int], ndim: int, rgb: bool | None = None) -> tuple[int, ...]:
    """The labels' shape for an array of ``shape``: its frame and spatial axes, no channels."""
    frames, axis = frame_layout(shape, ndim, rgb)
    shape = tuple(int(s) for s in shape)
    if axis == -1:
        return shape[:-1]
    if axis == 0:
        return shape[1:]
    return shape


def frame_view(array: Any, index: tuple[int, ...]) -> Any:
    """Frame ``index`` of ``array`` (its leading axes), reading and writing only the windows
    asked for: a numpy view, or a ``data.lazy.AxesView`` of anything else."""
    if not index:
        return array
    if isinstance(array, np.ndarray):
        return array[index]
    return AxesView(array, dict(enumerate(index)))
