"""The coloring engine: Algorithm 1 of the ColorRL supplement, for any policy, 2D and 3D.

At step t every pixel takes a binary action a_t from the policy, which sees the image and one
channel per step (+1 where a_k = 1, -1 where a_k = 0, 0 for steps not yet taken). After T steps
the color of a pixel is c = sum_t a_t 2^t. Inference takes the argmax; training samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Policy = Callable[..., "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


def color_dtype(steps: int) -> np.dtype:
    """Smallest unsigned dtype that holds colors 0 .. 2^steps - 1."""
    if steps <= 8:
        return np.dtype(np.uint8)
    if steps <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def step_value(action: torch.Tensor) -> torch.Tensor:
    """The step channel for actions in {0, 1}: +1 where a = 1, -1 where a = 0."""
    return action.to(torch.float32) * 2.0 - 1.0


def colors_from_steps(steps: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """c = sum_t a_t 2^t from step maps (T, ...) or (B, T, ...) given as the leading T axis."""
    if isinstance(steps, torch.Tensor):
        weights = 2 ** torch.arange(steps.shape[0], device=steps.device, dtype=torch.int64)
        shape = (-1,) + (1,) * (steps.ndim - 1)
        return (steps.to(torch.int64) * weights.view(shape)).sum(0)
    steps = np.asarray(steps)
    dtype = color_dtype(steps.shape[0])
    if steps.shape[0] > 8 * dtype.itemsize:
        weights = (2 ** np.arange(steps.shape[0], dtype=np.int64)).reshape(
            (-1,) + (1,) * (steps.ndim - 1)
        )
        return (steps.astype(np.int64) * weights).sum(0).astype(dtype)
    # One pass per step in the color dtype (wrapping like the int64 sum cast to it), instead of
    # an int64 copy of all T maps: many times faster on full-size images and volumes.
    colors = np.zeros(steps.shape[1:], dtype=dtype)
    for t in range(steps.shape[0]):
        colors += np.left_shift(steps[t].astype(dtype), t, dtype=dtype)
    return colors


@dataclass(frozen=True)
class ColoringResult:
    """Output of one coloring episode.

    steps: (B, T, *S) uint8 binary action maps. colors: (B, *S) color codes, the smallest unsigned
    dtype that fits 2^T - 1.
    """

    steps: np.ndarray
    colors: np.ndarray


def _logits(policy: Policy, image: torch.Tensor, channels: torch.Tensor, cache: object):
    if cache is not None:
        out = policy(image, channels, image_features=cache)
    else:
        out = policy(image, channels)
    return out[0] if isinstance(out, tuple) else out


@torch.inference_mode()
def run_coloring(
    policy: Policy,
    image: torch.Tensor,
    steps: int,
    *,
    sample: bool = False,
    seed: int | None = None,
    passes: int | None = None,
) -> ColoringResult:
    """Color a batch of images in ``steps`` forward passes of ``policy``.

    policy: a callable ``policy(image, step_channels)`` returning logits (B, 2, *S) or a tuple
        whose first item is the logits. If it has ``encode_image``, the image branch is computed
        once and passed back as ``image_features`` at each step.
    image: (B, C, *S) float tensor on the policy's device.
    sample: draw actions from the policy (with ``seed`` for repeatability) instead of argmax.
    passes: run only the first ``passes`` steps (a model's ``depth``); the network still gets
        its ``steps`` step channels, those of the steps not taken left 0 as during an episode,
        and the result holds the ``passes`` steps taken.

    Runs under ``torch.inference_mode``; the T-step loop stays on the device (no host copy or
    sync until the step maps are read back once at the end).
    """
    if image.ndim < 4:
        raise ValueError(f"image must be (B, C, *S) with 2 or 3 spatial axes, got {image.shape}.")
    passes = steps if passes is None else int(passes)
    if not 1 <= passes <= steps:
        raise ValueError(f"passes must be between 1 and steps ({steps}), got {passes}.")
    batch, spatial = image.shape[0], image.shape[2:]
    channels = torch.zeros((batch, steps, *spatial), dtype=image.dtype, device=image.device)
    actions = torch.zeros((batch, passes, *spatial), dtype=torch.uint8, device=image.device)
    generator = None
    if sample:
        generator = torch.Generator(device=image.device)
        generator.manual_seed(0 if seed is None else int(seed))
    cache = policy.encode_image(image) if hasattr(policy, "encode_image") else None
    for t in range(passes):
        logits = _logits(policy, image, channels, cache)
        if sample:
            prob_one = torch.softmax(logits.float(), dim=1)[:, 1]
            draw = torch.rand(prob_one.shape, generator=generator, device=image.device)
            action = draw < prob_one
        else:
            action = logits[:, 1] > logits[:, 0]
        actions[:, t] = action
        channels[:, t] = step_value(action)
    steps_np = actions.cpu().numpy()
    colors = colors_from_steps(np.moveaxis(steps_np, 1, 0))
    return ColoringResult(steps=steps_np, colors=colors)
