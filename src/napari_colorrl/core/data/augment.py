"""Augmentation of image and labels together (the authors' list): flips, 90-degree rotations,
small affine and elastic deformation, brightness/contrast, noise, blur. 2D and 3D.

Flips and rotations are exact index permutations, so the prepared reward targets (rings,
interiors) are permuted instead of recomputed; only a geometric deformation asks for new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class Permutation:
    """A flip/rot90 transform: flip ``flip_axes`` then rotate ``k`` quarter turns in ``axes``."""

    flip_axes: tuple[int, ...] = ()
    k: int = 0
    axes: tuple[int, int] = (-2, -1)

    def apply(self, array: np.ndarray, spatial_ndim: int) -> np.ndarray:
        """Apply to an array whose last ``spatial_ndim`` axes are spatial."""
        offset = array.ndim - spatial_ndim
        out = array
        if self.flip_axes:
            out = np.flip(out, axis=tuple(offset + a for a in self.flip_axes))
        if self.k % 4:
            axes = tuple(offset + (a % spatial_ndim) for a in self.axes)
            out = np.rot90(out, k=self.k, axes=axes)
        return np.ascontiguousarray(out)


def random_permutation(rng: np.random.Generator, shape: tuple[int, ...]) -> Permutation:
    """A random flip/rot90; rotations only in square planes so the shape is kept."""
    ndim = len(shape)
    flips = tuple(int(a) for a in range(ndim) if rng.random() < 0.5)
    axes = (ndim - 2, ndim - 1)
    k = int(rng.integers(4)) if shape[axes[0]] == shape[axes[1]] else 2 * int(rng.integers(2))
    return Permutation(flip_axes=flips, k=k, axes=axes)


def deform(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    max_rotate: float = 15.0,
    max_scale: float = 0.1,
    elastic_alpha: float = 0.03,
    elastic_sigma: float = 0.08,
) -> tuple[np.ndarray, np.ndarray]:
    """Small random affine (rotation in the last plane, scale) plus smooth elastic displacement.

    image: (C, *S) float32; labels: (*S) int. Image is interpolated linearly, labels nearest.
    elastic_alpha / elastic_sigma are fractions of the image size (displacement, smoothness).
    """
    shape = labels.shape
    ndim = len(shape)
    center = (np.array(shape) - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-max_rotate, max_rotate))
    scale = 1.0 + rng.uniform(-max_scale, max_scale)
    matrix = np.eye(ndim) / scale
    c, s = np.cos(angle), np.sin(angle)
    rot = np.eye(ndim)
    rot[-2:, -2:] = [[c, -s], [s, c]]
    matrix = rot @ matrix
    grid = np.indices(shape, dtype=np.float32).reshape(ndim, -1)
    coords = matrix @ (grid - center[:, None]) + center[:, None]
    size = float(min(shape))
    for axis in range(ndim):
        noise = rng.standard_normal(shape).astype(np.float32)
        smooth = ndi.gaussian_filter(noise, sigma=elastic_sigma * size, mode="reflect")
        smooth *= elastic_alpha * size / (smooth.std() + 1e-8)
        coords[axis] += smooth.ravel()
    new_labels = ndi.map_coordinates(labels, coords, order=0, mode="reflect").reshape(shape)
    new_image = np.stack(
        [ndi.map_coordinates(ch, coords, order=1, mode="reflect").reshape(shape) for ch in image]
    )
    return new_image.astype(np.float32), new_labels.astype(labels.dtype)


def intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness/contrast, gamma, Gaussian noise and blur on a (C, *S) [0, 1] image."""
    out = image
    if rng.random() < 0.8:
        contrast = rng.uniform(0.75, 1.25)
        brightness = rng.uniform(-0.1, 0.1)
        out = (out - 0.5) * contrast + 0.5 + brightness
    if rng.random() < 0.3:
        out = np.clip(out, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        sigma = rng.uniform(0.3, 1.0)
        out = np.stack([ndi.gaussian_filter(ch, sigma) for ch in out])
    if rng.random() < 0.3:
        out = out + rng.normal(0.0, rng.uniform(0.01, 0.05), size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
