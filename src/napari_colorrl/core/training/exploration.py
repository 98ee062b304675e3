"""Coherent exploration (``train.exploration_scale``, ``train.exploration_correlation``; beyond
the paper, docs/method.md "Coherent exploration").

Each pixel still takes a_t = 1 with its own probability pi(a_t = 1 | s_t): the uniform number it
compares that probability with is exactly uniform. What changes is that neighbouring pixels draw
correlated numbers (a Gaussian copula over a smoothed noise field), so when the policy explores,
whole patches of about the scale's size change their bit together instead of single pixels. A
merged object then gets tried as a whole in the other color, the one move whose return beats
staying merged (issue 17: flipping a fraction f of a merged object pays only for f near 1).

Over objects (``train.exploration_objects``) the shared part is one draw per ground-truth object
(and one per image's background) instead of a smooth field: every pixel of a leaf shares it, so
the whole leaf, and only that leaf, tends to change its bit together. Training only: inference
takes each pixel's most likely action and never sees the labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(scale: float) -> torch.Tensor:
    """A 1D Gaussian of standard deviation ``scale`` (radius 3 scale) with unit L2 norm, so that
    white noise of unit variance filtered by it along every axis keeps unit variance."""
    radius = max(1, math.ceil(3 * scale))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / scale) ** 2)
    return kernel / kernel.norm()


def smooth_noise(shape: tuple[int, ...], scale: float, device: torch.device) -> torch.Tensor:
    """Stationary Gaussian noise of unit variance over ``shape`` = (B, *S), correlated over about
    ``scale`` pixels: white noise on a field larger by the kernel's radius on each side, filtered
    along each axis without padding (so the borders are like the inside)."""
    kernel = gaussian_kernel(scale).to(device)
    batch, spatial = shape[0], shape[1:]
    pad = kernel.numel() - 1
    field = torch.randn((batch, 1, *(s + pad for s in spatial)), device=device)
    conv = getattr(F, f"conv{len(spatial)}d")
    for axis in range(len(spatial)):
        view = [1, 1] + [1] * len(spatial)
        view[2 + axis] = kernel.numel()
        field = conv(field, kernel.view(view))
    return field[:, 0]


def object_noise(shape: tuple[int, ...], slots: torch.Tensor, n_slots: int,
                 device: torch.device) -> torch.Tensor:
    """Gaussian noise of unit variance over ``shape`` = (B, *S), one draw per object: ``slots``
    (B*P,) the object (slot) of every pixel, flattened as ``shape``, of ``n_slots`` in all."""
    return torch.randn(n_slots, device=device)[slots].view(shape)


def exploration_uniforms(shape: tuple[int, ...], scale: float, correlation: float,
                         device: torch.device,
                         objects: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """Uniform numbers in [0, 1), one per pixel, each exactly uniform; a share ``correlation`` of
    the variance of their Gaussian is shared over about ``scale`` pixels, or, given ``objects``
    (the slot of every pixel and the number of slots, ``object_noise``), by all pixels of each
    object (neither: independent, the paper's sampling)."""
    if correlation <= 0 or (scale <= 0 and objects is None):
        return torch.rand(shape, device=device)
    shared = (object_noise(shape, *objects, device) if objects is not None
              else smooth_noise(shape, scale, device))
    own = torch.randn(shape, device=device)
    z = math.sqrt(correlation) * shared + math.sqrt(1 - correlation) * own
    return (0.5 * (1 + torch.erf(z / math.sqrt(2)))).clamp_(0, 1 - 1e-7)
