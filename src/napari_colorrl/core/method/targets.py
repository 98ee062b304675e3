"""Reward targets of ColorRL, prepared once per label map with numpy/scipy (2D and 3D).

For every ground-truth instance S_i (ids relabelled to 1..N) this module finds:

- its interior Inr_i: the pixels of S_i whose Euclidean distance to the outside of S_i (the
  image border counts as outside, as in a binary erosion with border value 0) is among the
  largest, keeping about alpha^2 of the area (alpha = ``RewardConfig.interior_shrink``; the
  threshold is the distance of the ceil-rounded k-th deepest pixel, k = round(alpha^2 |S_i|), so
  ties at the threshold are kept and the deepest pixel always is; alpha >= 1 keeps all of S_i);
- per splitting radius r, its ring F_i = (dilate(S_i, disk/ball(r)) minus S_i) ∩ foreground,
  stored as pairs (instance i, flat pixel q), since rings of different instances overlap;
- per radius, its neighbours: the instances j that own a pixel of F_i (a symmetric relation).

A Python loop over instances runs here, once per image; the per-step rewards
(:mod:`napari_colorrl.core.method.rewards`) only use bincounts and gathers. Flips and 90-degree
rotations permute pixels exactly, so :meth:`RewardTargets.transformed` remaps prepared targets
instead of preparing them again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from ..config import RewardConfig


@dataclass
class RewardTargets:
    """Prepared reward targets of one label map (numpy arrays, pixels flattened in C order).

    shape: spatial shape (H, W) or (D, H, W); P = prod(shape), N = n_instances.
    instance: (P,) int32, instance id 1..N of each pixel, 0 for background.
    interior: (P,) int32, instance id of interior pixels, 0 elsewhere.
    interior_size: (N + 1,) int64, |Inr_i| (slot 0, the background, is 0).
    radii: the splitting radii, one ring per radius, in the order of the config.
    ring_instance / ring_pixel: per radius, (K_r,) int32 instance ids i and (K_r,) int64 flat
        pixel indices q of the pairs q in F_i.
    neighbours: per radius, (E_r, 2) int32 pairs (i, j), j owning a pixel of F_i; both
        directions are present, sorted by (i, j).
    config: the reward settings the targets were prepared with (weights travel with them).
    """

    shape: tuple[int, ...]
    n_instances: int
    instance: np.ndarray
    interior: np.ndarray
    interior_size: np.ndarray
    radii: tuple[float, ...]
    ring_instance: tuple[np.ndarray, ...]
    ring_pixel: tuple[np.ndarray, ...]
    neighbours: tuple[np.ndarray, ...]
    config: RewardConfig = field(default_factory=RewardConfig)

    @property
    def labels(self) -> np.ndarray:
        """The relabelled label map, ``shape`` int32."""
        return self.instance.reshape(self.shape)

    def ring_size(self, k: int) -> np.ndarray:
        """(N + 1,) int64 |F_i| for radius number ``k``."""
        return np.bincount(self.ring_instance[k], minlength=self.n_instances + 1)

    def neighbour_count(self, k: int) -> np.ndarray:
        """(N + 1,) int64 number of neighbours of each instance for radius number ``k``."""
        return np.bincount(self.neighbours[k][:, 0], minlength=self.n_instances + 1)

    def transformed(
        self,
        flip_axes: Sequence[int] = (),
        k: int = 0,
        axes: Sequence[int] = (-2, -1),
    ) -> RewardTargets:
        """Targets of the label map flipped along ``flip_axes`` then rotated by ``np.rot90``
        ``k`` quarter turns in ``axes`` (the order of ``augment.Permutation``).

        Equal to ``prepare_targets`` of the transformed labels (up to the order of ring pairs),
        without any distance transform: only pixel indices are remapped.
        """
        index = np.arange(int(np.prod(self.shape)), dtype=np.int64).reshape(self.shape)
        if len(flip_axes):
            index = np.flip(index, axis=tuple(int(a) for a in flip_axes))
        if k % 4:
            index = np.rot90(index, k=k, axes=tuple(int(a) for a in axes))
        perm = np.ascontiguousarray(index).ravel()  # new flat position -> old flat index
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(perm.size, dtype=np.int64)  # old flat index -> new position
        return RewardTargets(
            shape=tuple(index.shape),
            n_instances=self.n_instances,
            instance=self.instance[perm],
            interior=self.interior[perm],
            interior_size=self.interior_size,
            radii=self.radii,
            ring_instance=self.ring_instance,
            ring_pixel=tuple(inverse[q] for q in self.ring_pixel),
            neighbours=self.neighbours,
            config=self.config,
        )


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels relabelled to 1..N (int32) and N; rejects non-integer or negative labels."""
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2D or 3D, got shape {labels.shape}.")
    if labels.dtype == bool:
        labels = labels.astype(np.int32)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError(f"labels must hold whole numbers, got dtype {labels.dtype}.")
        labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be >= 0 (0 is background).")
    relabelled = relabel_sequential(labels.astype(np.int64, copy=False))[0].astype(np.int32)
    return relabelled, int(relabelled.max(initial=0))


def grown_box(box: tuple[slice, ...], shape: tuple[int, ...], r: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, s.start - r), min(n, s.stop + r)) for s, n in zip(box, shape, strict=True)
    )


def _interior_mask(obj: np.ndarray, alpha: float) -> np.ndarray:
    """Pixels of ``obj`` (bool crop) kept as interior: about alpha^2 of them, the deepest."""
    if alpha >= 1.0:
        return obj
    depth = ndi.distance_transform_edt(np.pad(obj, 1))[(slice(1, -1),) * obj.ndim]
    values = depth[obj]
    keep = min(values.size, max(1, round(alpha * alpha * values.size)))
    threshold = np.partition(values, values.size - keep)[values.size - keep]
    return obj & (depth >= threshold)


def prepare_targets(labels: np.ndarray, config: RewardConfig | None = None) -> RewardTargets:
    """Interiors, rings and neighbours of a label map (see the module docstring).

    labels: (H, W) or (D, H, W) non-negative integers, 0 = background; relabelled to 1..N.
    config: alpha (``interior_shrink``) and ``radii`` are used here; the whole config travels
        with the targets for the rewards.
    """
    config = config if config is not None else RewardConfig()
    lab, n = relabel(labels)
    shape = lab.shape
    radii = tuple(float(r) for r in config.radii)
    reach = int(math.floor(max(radii))) if radii else 0
    interior = np.zeros(shape, dtype=np.int32)
    rings_i: list[list[np.ndarray]] = [[] for _ in radii]
    rings_q: list[list[np.ndarray]] = [[] for _ in radii]
    pairs: list[list[np.ndarray]] = [[] for _ in radii]
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:  # pragma: no cover - relabel_sequential leaves no gaps
            continue
        obj = lab[box] == i
        interior[box][_interior_mask(obj, float(config.interior_shrink))] = i
        if not radii:
            continue
        big = grown_box(box, shape, reach)
        crop = lab[big]
        obj = crop == i
        distance = ndi.distance_transform_edt(~obj)
        others = (crop > 0) & ~obj
        start = np.array([s.start for s in big])[:, None]
        for k, r in enumerate(radii):
            ring = others & (distance <= r)
            coords = np.array(np.nonzero(ring)) + start
            flat = np.ravel_multi_index(tuple(coords), shape).astype(np.int64)
            rings_q[k].append(flat)
            rings_i[k].append(np.full(flat.size, i, dtype=np.int32))
            owners = np.unique(crop[ring])
            pairs[k].append(np.stack([np.full(owners.size, i), owners], axis=1).astype(np.int32))
    empty_i, empty_q = np.zeros(0, np.int32), np.zeros(0, np.int64)
    flat_interior = interior.ravel()
    interior_size = np.bincount(flat_interior, minlength=n + 1).astype(np.int64)
    interior_size[0] = 0
    return RewardTargets(
        shape=tuple(shape),
        n_instances=n,
        instance=lab.ravel().copy(),
        interior=flat_interior,
        interior_size=interior_size,
        radii=radii,
        ring_instance=tuple(np.concatenate(x) if x else empty_i for x in rings_i),
        ring_pixel=tuple(np.concatenate(x) if x else empty_q for x in rings_q),
        neighbours=tuple(
            np.concatenate(x) if x else np.zeros((0, 2), np.int32) for x in pairs
        ),
        config=config,
    )


def instance_centroids(targets: RewardTargets) -> np.ndarray:
    """(N + 1, ndim) float64 centroids in pixel coordinates (row 0, the background, is 0)."""
    fg = np.flatnonzero(targets.instance)
    ids = targets.instance[fg]
    counts = np.bincount(ids, minlength=targets.n_instances + 1).astype(np.float64)
    coords = np.unravel_index(fg, targets.shape)
    out = np.zeros((targets.n_instances + 1, len(targets.shape)))
    for axis, c in enumerate(coords):
        out[:, axis] = np.bincount(ids, weights=c, minlength=targets.n_instances + 1)
    return out / np.maximum(counts, 1.0)[:, None]


def choose_subset(
    targets: RewardTargets,
    rng: np.random.Generator,
    config: RewardConfig | None = None,
) -> np.ndarray:
    """The pixels rewarded (and in the loss) in one episode: ``shape`` bool.

    All pixels, unless ``config.subset`` is set and the image holds more than
    ``config.subset_min_instances`` instances (supplement, crowded images): then a random
    instance plus the ceil((N - 1) / 3) other instances with the nearest centroids are active,
    and the mask is their pixels plus a random share of the background pixels equal to the
    share of foreground pixels that is active. Store the mask with its episode (in
    ``BatchTargets``): the loss must use this episode's mask, not the next one's.
    """
    config = config if config is not None else targets.config
    n = targets.n_instances
    if not config.subset or n <= config.subset_min_instances:
        return np.ones(targets.shape, dtype=bool)
    centroids = instance_centroids(targets)[1:]
    chosen = int(rng.integers(n))
    distance = np.linalg.norm(centroids - centroids[chosen], axis=1)
    distance[chosen] = -1.0
    order = np.argsort(distance, kind="stable")
    active = np.zeros(n + 1, dtype=bool)
    active[1 + order[: 1 + math.ceil((n - 1) / 3)]] = True
    mask = active[targets.instance]
    fg = targets.instance > 0
    background = np.flatnonzero(~fg)
    share = mask.sum() / max(int(fg.sum()), 1)
    picked = rng.choice(background, size=int(round(share * background.size)), replace=False)
    mask[picked] = True
    return mask.reshape(targets.shape)
