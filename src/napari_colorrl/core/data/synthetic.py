"""Synthetic touching-object data with ground truth: 2D cells and 3D nuclei.

numpy / scipy / scikit-image only (no torch, no Qt). Every function is deterministic given its
``seed``. The objects are anisotropically-weighted Voronoi cells of clustered seed points, cut by a
noisy radius and warped by a smooth displacement field, so neighbours touch along curved,
irregular boundaries while some objects stay isolated. The image has per-object brightness,
darker thin boundaries between touching objects, texture, blur, Poisson and Gaussian noise.

    >>> image, labels = make_cells_2d(seed=1)       # (176, 176) float32, uint16
    >>> volume, gt = make_nuclei_3d(seed=1)         # (48, 64, 64) float32, uint16
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_cells_2d", "make_nuclei_3d", "make_round_nuclei", "make_dataset",
           "touching_pairs"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation (float32)."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-6)


def _random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """Uniformly random rotation matrix (ndim x ndim)."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _place_seeds(
    rng: np.random.Generator, shape: tuple[int, ...], n: int, spacing: float, margin: float
) -> np.ndarray:
    """Clustered Poisson-disc-ish points: (k, ndim) float array, k <= n, pairwise >= spacing.

    Most points are thrown next to an existing point (so objects touch in clusters), a few
    anywhere (so some objects are isolated).
    """
    lo = np.full(len(shape), margin)
    hi = np.asarray(shape, float) - margin
    hi = np.maximum(hi, lo + 1.0)
    pts: list[np.ndarray] = []
    for _ in range(n * 300):
        if len(pts) >= n:
            break
        if pts and rng.random() < 0.8:
            base = pts[rng.integers(len(pts))]
            direction = rng.standard_normal(len(shape))
            direction /= np.linalg.norm(direction) + 1e-9
            cand = base + direction * spacing * rng.uniform(1.0, 1.35)
        else:
            cand = rng.uniform(lo, hi)
        if np.any(cand < lo) or np.any(cand > hi):
            continue
        if pts and np.min(np.linalg.norm(np.asarray(pts) - cand, axis=1)) < spacing:
            continue
        pts.append(cand)
    return np.asarray(pts, float).reshape(-1, len(shape))


def _fragments(labels: np.ndarray) -> np.ndarray:
    """Pixels of each object outside its largest connected piece."""
    stray = np.zeros(labels.shape, bool)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == lab
        comp, k = ndi.label(mask)
        if k > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            stray[sl] |= mask & (comp != int(np.argmax(sizes)))
    return stray


def _clean_labels(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Each label one (face-)connected component, tiny objects dropped, ids 1..N as uint16.

    Stray fragments are handed to the touching object they share most of their border with
    (grown into by the nearest label); whatever still is not connected is set to background.
    """
    labels = labels.astype(np.int32, copy=True)
    for _ in range(3):
        stray = _fragments(labels)
        if not stray.any():
            break
        fg = labels > 0
        labels[stray] = 0
        _, idx = ndi.distance_transform_edt(labels == 0, return_indices=True)
        nearest = labels[tuple(idx)]
        labels[stray] = nearest[stray]
        labels[~fg] = 0
    else:  # still fragmented after 3 rounds: drop the fragments
        labels[_fragments(labels)] = 0
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(int(min_size), 1)
    keep[0] = False
    new_ids = np.zeros(sizes.shape[0], np.int64)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1)
    return new_ids[labels].astype(np.uint16)


def _neighbour_extremes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Max and min (ignoring background) label in each pixel's full neighbourhood, int64."""
    labels = np.asarray(labels).astype(np.int64)
    sentinel = int(labels.max()) + 1
    high = ndi.maximum_filter(labels, size=3)
    low = ndi.minimum_filter(np.where(labels > 0, labels, sentinel), size=3)
    return high, low, sentinel


def _between_objects(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of object pixels that touch a *different* object (not background)."""
    high, low, sentinel = _neighbour_extremes(labels)
    fg = labels > 0
    return fg & ((high != labels) | ((low != labels) & (low != sentinel)))


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, a < b, of labels that share a boundary (full connectivity), 2D or 3D."""
    labels = np.asarray(labels).astype(np.int64)
    high, low, sentinel = _neighbour_extremes(labels)
    pairs: set[tuple[int, int]] = set()
    fg = labels > 0
    for other in (high, low):
        sel = fg & (other != labels) & (other > 0) & (other != sentinel)
        a, b = labels[sel], other[sel]
        pairs |= set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))
    return pairs


def _objects(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    n_objects: int,
    fill: float,
    aspect: tuple[float, float],
    warp: float,
    rough: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Touching objects: int32 labels (seed order) and float32 radius (0 centre .. 1 edge)."""
    ndim = len(shape)
    volume = float(np.prod(shape))
    unit = np.pi if ndim == 2 else 4.0 * np.pi / 3.0
    r0 = (fill * volume / (max(n_objects, 1) * unit)) ** (1.0 / ndim)
    seeds = _place_seeds(rng, shape, n_objects, spacing=1.45 * r0, margin=0.55 * r0)

    grid = np.indices(shape, dtype=np.float32)
    # smooth domain warp: curved, irregular boundaries
    grid += np.stack([_smooth_noise(rng, shape, 0.9 * r0) for _ in range(ndim)]) * (warp * r0)
    edge_noise = _smooth_noise(rng, shape, 0.25 * r0) * rough

    best = np.full(shape, np.inf, np.float32)
    owner = np.zeros(shape, np.int32)
    for i, centre in enumerate(seeds, start=1):
        axes = r0 * rng.uniform(0.85, 1.2) * rng.uniform(*aspect, size=ndim)
        inv = (_random_rotation(rng, ndim).T / axes[:, None]).astype(np.float32)  # (ndim, ndim)
        rel = grid - centre.astype(np.float32).reshape((ndim,) + (1,) * ndim)
        dist = np.sqrt((np.tensordot(inv, rel, axes=(1, 0)) ** 2).sum(0))
        closer = dist < best
        best[closer] = dist[closer]
        owner[closer] = i
    owner[best > 1.0 + edge_noise] = 0
    return owner, best


def _render(
    rng: np.random.Generator,
    labels: np.ndarray,
    radius: np.ndarray,
    *,
    boundary_dim: float,
    texture_sigma: float,
    blur: float,
    photons: float,
    read_noise: float,
) -> np.ndarray:
    """Fluorescence-like float32 image in [0, 1] for the given labels."""
    shape = labels.shape
    n = int(labels.max())
    brightness = np.concatenate([[0.0], rng.uniform(0.4, 1.0, n)]).astype(np.float32)
    img = brightness[labels]
    fg = labels > 0
    # brighter centre, dimmer rim
    img *= np.where(fg, 1.0 - 0.3 * np.clip(radius, 0, 1) ** 2, 0.0).astype(np.float32)
    # texture (granules / chromatin)
    img *= 1.0 + 0.12 * _smooth_noise(rng, shape, texture_sigma)
    # darker thin boundaries between touching objects (not too dark: learnable, not trivial)
    between = _between_objects(labels)
    img[between] *= boundary_dim
    # out-of-focus haze and uneven background
    img = img + 0.12 * ndi.gaussian_filter(img, 4.0 * blur)
    img += 0.06 + 0.02 * _smooth_noise(rng, shape, max(shape) / 6.0)
    img = ndi.gaussian_filter(img, blur)
    # shot noise + read noise
    img = rng.poisson(np.clip(img, 0, None) * photons).astype(np.float32) / photons
    img += rng.normal(0.0, read_noise, shape).astype(np.float32)
    hi = float(np.percentile(img, 99.8))
    return np.clip(img / max(hi, 1e-6), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def make_cells_2d(
    shape: tuple[int, int] = (176, 176), n_objects: int = 14, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic fluorescence image of touching, irregular 2D cells with ground truth.

    Returns ``(image, labels)``: image float32 of ``shape`` in [0, 1]; labels uint16 of ``shape``,
    0 = background, 1..N contiguous, every label one face-connected component. N is close to
    ``n_objects`` (a few fewer when they do not fit). Deterministic given ``seed``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"make_cells_2d needs a 2D shape, got {shape}")
    rng = np.random.default_rng(seed)
    owner, radius = _objects(
        rng, shape, n_objects, fill=0.42, aspect=(0.75, 1.3), warp=0.22, rough=0.12
    )
    labels = _clean_labels(owner, min_size=max(20, int(0.004 * np.prod(shape) / 4)))
    image = _render(
        rng,
        labels,
        radius,
        boundary_dim=0.5,
        texture_sigma=1.5,
        blur=1.0,
        photons=60.0,
        read_noise=0.02,
    )
    return image, labels


def make_nuclei_3d(
    shape: tuple[int, int, int] = (48, 64, 64), n_objects: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic fluorescence volume of touching ellipsoidal 3D nuclei with ground truth.

    Random axes and orientations, per-nucleus brightness, dim boundaries between touching nuclei,
    blur and noise. Returns ``(image, labels)``: image float32 (Z, Y, X) in [0, 1]; labels uint16
    (Z, Y, X), 0 = background, 1..N contiguous, each one face-connected component. Isotropic
    voxels. Deterministic given ``seed``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"make_nuclei_3d needs a 3D shape, got {shape}")
    rng = np.random.default_rng(seed)
    owner, radius = _objects(
        rng, shape, n_objects, fill=0.38, aspect=(0.7, 1.35), warp=0.12, rough=0.08
    )
    labels = _clean_labels(owner, min_size=max(60, int(0.05 * np.prod(shape) / max(n_objects, 1))))
    image = _render(
        rng,
        labels,
        radius,
        boundary_dim=0.5,
        texture_sigma=1.2,
        blur=1.0,
        photons=50.0,
        read_noise=0.02,
    )
    return image, labels


def make_round_nuclei(
    shape: tuple[int, ...] = (256, 256), radius: float = 8.0, density: float = 1.1e-3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Bright round nuclei of one size on a dark, noisy background (DSB-like), 2D or 3D.

    radius: of every nucleus in pixels (within +-15%); density: nuclei per pixel (voxel)
    attempted, placed without overlap (1.1e-3 gives 46 nuclei of radius 8 in 256 x 256, as
    many per area at any size, so a larger image is a larger field of view of the same
    objects). Returns ``(image, labels)``: uint8 image, uint16 labels 1..N. Deterministic given
    ``seed``; built one object's bounding box at a time (fast at 8192 x 8192).
    """
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    attempts = int(round(density * float(np.prod(shape))))
    placed = 0
    for _ in range(attempts):
        r = radius * rng.uniform(0.85, 1.15)
        axes = r * rng.uniform(0.85, 1.15, size=len(shape))
        centre = np.array([rng.uniform(a + 1, s - a - 1) for a, s in zip(axes, shape)])
        low = np.maximum(np.floor(centre - axes).astype(int), 0)
        high = np.minimum(np.ceil(centre + axes).astype(int) + 1, shape)
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        grid = np.ogrid[box]
        inside = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)) <= 1.0
        if labels[box][inside].any() or placed + 1 >= 2**16:
            continue
        placed += 1
        labels[box][inside] = placed
    brightness = rng.uniform(120, 220, placed + 1)
    brightness[0] = 12
    image = ndi.gaussian_filter(brightness[labels].astype(np.float32), 1.0)
    image += rng.normal(0, 4, shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def make_dataset(
    kind: str = "2d", n: int = 8, seed: int = 0, **kw: object
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` independent (image, labels) pairs: ``kind`` "2d" (cells) or "3d" (nuclei).

    Extra keyword arguments (``shape``, ``n_objects``) go to the generator. Sample ``i`` uses a
    seed derived from ``(seed, i)``, so the whole list is deterministic given ``seed``.
    """
    kinds = {
        "2d": make_cells_2d,
        "cells": make_cells_2d,
        "3d": make_nuclei_3d,
        "nuclei": make_nuclei_3d,
    }
    key = str(kind).lower()
    if key not in kinds:
        raise ValueError(f"unknown kind {kind!r}; use '2d' or '3d'")
    seeds = np.random.SeedSequence(seed).generate_state(max(int(n), 0), dtype=np.uint32)
    return [kinds[key](seed=int(s), **kw) for s in seeds]  # type: ignore[arg-type]
