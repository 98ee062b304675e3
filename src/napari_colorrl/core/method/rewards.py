"""Dense per-pixel rewards of ColorRL on a torch device, vectorised over a batch (2D and 3D).

Targets are prepared once per image (:mod:`napari_colorrl.core.method.targets`, re-exported
here), collated into a :class:`BatchTargets` whose instance ids are offset per sample so one
``torch.bincount`` covers the whole batch, and :func:`step_rewards` turns the colors of a step
into rewards (docs/method.md, "Rewards"). With c_t = sum_{k<=t} a_k 2^k:

- step 0 (``foreground`` part): a foreground pixel gets +(1 - beta) for a_0 = 1, -(1 - beta)
  for a_0 = 0; a background pixel +beta for a_0 = 0, -beta for a_0 = 1. Nothing else at step 0.
- steps t >= 1: ``background`` = -beta for a background pixel whose color turns from 0 to
  non-zero; ``merge`` = w_merge (s_t / (T n) - (s_{t-1} - s_t) / n) for p in S_i, with
  s_t(p) = #{q in Inr_i : c_t(q) = c_t(p)}, n = |Inr_i| + 1; ``split`` = w_split times the sum
  over radii, for p in Inr_i, of
  - proximity form: (m_{t-1} - m_t) / n - m_t / (T n), m_t(p) = #{q in F_i : c_t(q) = c_t(p)},
    n = |F_i| + 1;
  - instance form: (m_{t-1} - m_t) - m_t / T, m_t(p) = mean over the neighbours j of i of
    #{q in Inr_j : c_t(q) = c_t(p)} / (|Inr_j| + 1). An instance without neighbours (at that
    radius) gets +1 / (T - 1) per step t >= 1, +1 over the episode: the best total a crowded
    instance can earn (m_0 is about 1 when the step-0 decision is right, m_t = 0 afterwards),
    so isolated objects are not favoured over crowded ones.
  - worst form (beyond the paper, docs/method.md): as the instance form with the mean over the
    neighbours replaced by the maximum, m_t(p) = max over j of #{q in Inr_j : c_t(q) = c_t(p)}
    / (|Inr_j| + 1), and m_{t-1} the maximum of the shares at c_{t-1} (each neighbour's own
    histogram with the halves merged: the maximum of merged halves is not the merged maximum).
    Sharing a color with the one touching neighbour costs as much as with all of them.

All parts are zeroed outside the episode's own mask (``BatchTargets.mask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import RewardConfig
from .targets import RewardTargets

PART_NAMES = ("foreground", "background", "split", "merge", "total")


@dataclass
class BatchTargets:
    """Targets of a batch of B samples of one spatial shape, as tensors on one device.

    Pixels are flattened over (B, *S) (P = prod(S), index b * P + p). Instance slots are global:
    sample b owns slots offset_b .. offset_b + N_b, slot offset_b standing for its background
    (it has no interior, ring or neighbour, so every count gathered there is 0). G = n_slots.

    foreground: (B*P,) bool. instance: (B*P,) int64 slot of each pixel (background -> slot
    offset_b). interior: (B*P,) int64 slot of interior pixels (others -> slot offset_b).
    interior_pixels / interior_ids: (K,) int64 flat indices and slots of interior pixels.
    interior_norm: (G,) float32 1 / (|Inr_i| + 1).
    Per radius (tuples): ring_ids / ring_pixels (K_r,) int64 pairs (i, q in F_i);
    ring_norm (G,) float32 1 / (|F_i| + 1); neighbour_src / neighbour_dst (E_r,) int64 slot
    pairs; neighbour_weight (E_r,) float32 1 / (number of neighbours of src);
    isolated (G,) bool, real instances without neighbours.
    mask: (B, *S) bool, the pixels rewarded and in the loss in this episode.
    """

    shape: tuple[int, ...]
    batch_size: int
    n_slots: int
    config: RewardConfig
    foreground: torch.Tensor
    instance: torch.Tensor
    interior: torch.Tensor
    interior_pixels: torch.Tensor
    interior_ids: torch.Tensor
    interior_norm: torch.Tensor
    ring_ids: tuple[torch.Tensor, ...]
    ring_pixels: tuple[torch.Tensor, ...]
    ring_norm: tuple[torch.Tensor, ...]
    neighbour_src: tuple[torch.Tensor, ...]
    neighbour_dst: tuple[torch.Tensor, ...]
    neighbour_weight: tuple[torch.Tensor, ...]
    isolated: tuple[torch.Tensor, ...]
    mask: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.foreground.device


@dataclass
class RewardParts:
    """Rewards of one step, float32 tensors (B, *S), already weighted and masked.

    foreground: the step-0 foreground/background decision (0 at t >= 1). background: bg_t.
    split: w_split times the split terms summed over radii. merge: w_merge times merge_t.
    total: their sum. mask: (B, *S) bool, the episode's mask.
    """

    foreground: torch.Tensor
    background: torch.Tensor
    split: torch.Tensor
    merge: torch.Tensor
    total: torch.Tensor
    mask: torch.Tensor

    def means(self) -> dict[str, float]:
        """Mean of each part over the masked pixels (one device sync)."""
        weight = self.mask.to(self.total.dtype)
        count = weight.sum().clamp_min(1.0)
        stacked = torch.stack([(getattr(self, n) * weight).sum() for n in PART_NAMES]) / count
        return dict(zip(PART_NAMES, stacked.tolist(), strict=True))


def collate_targets(
    targets: Sequence[RewardTargets],
    device: torch.device | str = "cpu",
    masks: Sequence[np.ndarray | None] | None = None,
) -> BatchTargets:
    """Stack the targets of B samples of one shape on ``device``, with slot offsets.

    masks: per sample, a bool array of the spatial shape (or flat) from :func:`choose_subset`,
    or None for all pixels. The first sample's config (weights, split form) is used; all
    samples must share shape and radii.
    """
    if not targets:
        raise ValueError("collate_targets needs at least one sample.")
    device = torch.device(device)
    shape, radii = targets[0].shape, targets[0].radii
    for t in targets:
        if t.shape != shape:
            raise ValueError(f"All samples of a batch need one shape: {t.shape} != {shape}.")
        if t.radii != radii:
            raise ValueError(f"All samples of a batch need the same radii: {t.radii} != {radii}.")
    pixels = int(np.prod(shape))
    offsets = np.cumsum([0] + [t.n_instances + 1 for t in targets])
    n_slots = int(offsets[-1])
    masks = masks if masks is not None else [None] * len(targets)
    if len(masks) != len(targets):
        raise ValueError(f"{len(masks)} masks given for {len(targets)} samples.")

    def cat(arrays: list[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(arrays)).to(device=device, dtype=dtype)

    instance, interior, inr_px, inr_ids, inr_norm, mask_list = [], [], [], [], [], []
    for b, (t, m) in enumerate(zip(targets, masks, strict=True)):
        off, base = int(offsets[b]), b * pixels
        instance.append(t.instance.astype(np.int64) + off)
        interior.append(t.interior.astype(np.int64) + off)
        px = np.flatnonzero(t.interior)
        inr_px.append(px + base)
        inr_ids.append(t.interior[px].astype(np.int64) + off)
        inr_norm.append(1.0 / (t.interior_size.astype(np.float64) + 1.0))
        mask_list.append(
            np.ones(pixels, bool) if m is None else np.asarray(m, dtype=bool).reshape(pixels)
        )
    ring_ids, ring_px, ring_norm = [], [], []
    nb_src, nb_dst, nb_w, isolated = [], [], [], []
    for k in range(len(radii)):
        ids, px, norm, src, dst, w, iso = [], [], [], [], [], [], []
        for b, t in enumerate(targets):
            off = int(offsets[b])
            ids.append(t.ring_instance[k].astype(np.int64) + off)
            px.append(t.ring_pixel[k].astype(np.int64) + b * pixels)
            norm.append(1.0 / (t.ring_size(k).astype(np.float64) + 1.0))
            degree = t.neighbour_count(k)
            pairs = t.neighbours[k].astype(np.int64)
            src.append(pairs[:, 0] + off)
            dst.append(pairs[:, 1] + off)
            w.append(1.0 / degree[pairs[:, 0]].astype(np.float64))
            alone = degree == 0
            alone[0] = False
            iso.append(alone)
        ring_ids.append(cat(ids, torch.int64))
        ring_px.append(cat(px, torch.int64))
        ring_norm.append(cat(norm, torch.float32))
        nb_src.append(cat(src, torch.int64))
        nb_dst.append(cat(dst, torch.int64))
        nb_w.append(cat(w, torch.float32))
        isolated.append(cat(iso, torch.bool))
    instance_t = cat(instance, torch.int64)
    return BatchTargets(
        shape=tuple(shape),
        batch_size=len(targets),
        n_slots=n_slots,
        config=targets[0].config,
        foreground=instance_t != torch.from_numpy(np.repeat(offsets[:-1], pixels)).to(device),
        instance=instance_t,
        interior=cat(interior, torch.int64),
        interior_pixels=cat(inr_px, torch.int64),
        interior_ids=cat(inr_ids, torch.int64),
        interior_norm=cat(inr_norm, torch.float32),
        ring_ids=tuple(ring_ids),
        ring_pixels=tuple(ring_px),
        ring_norm=tuple(ring_norm),
        neighbour_src=tuple(nb_src),
        neighbour_dst=tuple(nb_dst),
        neighbour_weight=tuple(nb_w),
        isolated=tuple(isolated),
        mask=cat(mask_list, torch.bool).reshape(len(targets), *shape),
    )


def _histogram(ids: torch.Tensor, colors: torch.Tensor, n_slots: int, n_colors: int):
    """(G, n_colors) float32 counts of (slot, color) pairs."""
    counts = torch.bincount(ids * n_colors + colors, minlength=n_slots * n_colors)
    return counts.view(n_slots, n_colors).to(torch.float32)


def _previous(hist: torch.Tensor) -> torch.Tensor:
    """Histogram over c_{t-1} from the one over c_t = c_{t-1} + a_t 2^t (merge the two halves)."""
    return hist.view(hist.shape[0], 2, hist.shape[1] // 2).sum(1)


def _neighbour_max(shares: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(G, K): per instance i and color, the largest share of that color over the neighbours j
    of i (``shares[j]`` for the pairs (src, dst) = (i, j); 0 without neighbours)."""
    out = torch.zeros_like(shares)
    if src.numel():
        index = src[:, None].expand(-1, shares.shape[1])
        out.scatter_reduce_(0, index, shares[dst], reduce="amax", include_self=True)
    return out


def _pair_counts(hist: torch.Tensor, slot: torch.Tensor, c: torch.Tensor, c_prev: torch.Tensor):
    """Per pixel, hist[slot, c_t] and the same over c_{t-1}: two (B*P,) float32 tensors."""
    n_colors = hist.shape[1]
    now = hist.reshape(-1)[slot * n_colors + c]
    before = _previous(hist).reshape(-1)[slot * (n_colors // 2) + c_prev]
    return now, before


def step_rewards(
    batch: BatchTargets,
    prev_colors: torch.Tensor,
    colors: torch.Tensor,
    action: torch.Tensor,
    t: int,
    steps: int,
) -> RewardParts:
    """Rewards of step ``t`` (0-based) of a T = ``steps`` step episode.

    prev_colors / colors: (B, *S) int64 color codes c_{t-1} (zeros at t = 0) and c_t; they must
    follow the coloring, c_t = c_{t-1} + a_t 2^t < 2^(t+1). action: (B, *S) bool or {0, 1}.
    Vectorised: per radius one bincount for the rings (proximity form), one for the interiors,
    then gathers; the c_{t-1} histograms are the c_t ones with the two halves merged.
    """
    if not 0 <= t < steps:
        raise ValueError(f"step t = {t} is outside 0 .. T-1 = {steps - 1}.")
    shape = tuple(colors.shape)
    if t == 0:
        weight = batch.mask.to(device=colors.device, dtype=torch.float32)
        zeros = torch.zeros(shape, dtype=torch.float32, device=colors.device)
        fg, beta = batch.foreground, float(batch.config.beta)
        took = action.reshape(-1) != 0
        magnitude = torch.where(fg, 1.0 - beta, beta)
        foreground = torch.where(took == fg, magnitude, -magnitude).view(shape) * weight
        return RewardParts(foreground, zeros, zeros, zeros, foreground, batch.mask)

    c = colors.reshape(-1).to(torch.int64)
    c_prev = prev_colors.reshape(-1).to(torch.int64)
    n_colors = 1 << (t + 1)
    inner, rings = _histograms(
        batch, lambda ids, px: _histogram(ids, c[px], batch.n_slots, n_colors))
    return _later_step(batch, c_prev, c, t, steps, inner, rings, shape)


def expected_step_rewards(
    batch: BatchTargets,
    prev_colors: torch.Tensor,
    prob_one: torch.Tensor,
    t: int,
    steps: int,
) -> tuple[RewardParts, RewardParts]:
    """The expected rewards of step ``t`` of every pixel for a_t = 0 and for a_t = 1, when every
    other pixel q samples its action from ``prob_one`` (B, *S), P(a_t(q) = 1), independently.

    The rewards of a step are linear in counts of (instance, color) pairs, so their expectation
    is the same formula on histograms filled with the probabilities of the two colors each pixel
    can take (c_{t-1} and c_{t-1} + 2^t) instead of its sampled one; a pixel's own count, which
    its action decides, is corrected in the merge term (the only one whose histogram holds the
    pixel itself). Exact for the proximity and instance forms; for the worst form the maximum of
    the expected shares stands for the expected maximum. Used by ``train.expected_reward``
    (docs/method.md).
    """
    if not 0 <= t < steps:
        raise ValueError(f"step t = {t} is outside 0 .. T-1 = {steps - 1}.")
    shape = tuple(prev_colors.shape)
    if t == 0:  # the foreground reward: a pixel's own action alone
        zeros = torch.zeros(shape, dtype=torch.int64, device=prev_colors.device)
        return tuple(step_rewards(batch, zeros, zeros + a, zeros + a, 0, steps)
                     for a in (0, 1))
    c_prev = prev_colors.reshape(-1).to(torch.int64)
    p_one = prob_one.reshape(-1).to(torch.float32)
    n_colors, bit = 1 << (t + 1), 1 << t

    def soft(ids: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
        index, p = ids * n_colors + c_prev[px], p_one[px]
        size = batch.n_slots * n_colors
        counts = (torch.bincount(index, weights=1.0 - p, minlength=size)
                  + torch.bincount(index + bit, weights=p, minlength=size))
        return counts.view(batch.n_slots, n_colors).to(torch.float32)

    inner, rings = _histograms(batch, soft)
    own = batch.foreground & (batch.interior == batch.instance)  # p counts in its own Inr_i
    return tuple(
        _later_step(batch, c_prev, c_prev + a * bit, t, steps, inner, rings, shape,
                    own=own * (p_one if a == 0 else 1.0 - p_one))
        for a in (0, 1))


def _histograms(batch: BatchTargets, count) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The interior histogram and, for the proximity form, one ring histogram per radius, each
    from ``count(ids, pixels)``."""
    inner = count(batch.interior_ids, batch.interior_pixels)
    rings = []
    if batch.config.split_form == "proximity":
        rings = [count(ids, px) for ids, px in zip(batch.ring_ids, batch.ring_pixels,
                                                    strict=True)]
    return inner, rings


def _later_step(batch: BatchTargets, c_prev: torch.Tensor, c: torch.Tensor, t: int, steps: int,
                inner: torch.Tensor, rings: list[torch.Tensor], shape: tuple[int, ...],
                own: torch.Tensor | None = None) -> RewardParts:
    """The rewards of a step t >= 1 for the colors ``c`` (flat), given the c_t histograms of the
    interiors and rings; ``own`` (flat) is added to each pixel's count of its own color in its
    own interior (the expected form: the pixel's own share, which its action decides)."""
    cfg = batch.config
    weight = batch.mask.to(device=c.device, dtype=torch.float32)
    zeros = torch.zeros(shape, dtype=torch.float32, device=c.device)
    fg = batch.foreground
    beta = float(cfg.beta)
    n_colors = 1 << (t + 1)
    turned = ~fg & (c_prev == 0) & (c != 0)
    background = torch.where(turned, -beta, 0.0).view(shape) * weight

    s_now, s_before = _pair_counts(inner, batch.instance, c, c_prev)
    if own is not None:
        s_now = s_now + own
    merge = (s_now / steps - (s_before - s_now)) * batch.interior_norm[batch.instance]
    merge = merge.view(shape) * (float(cfg.w_merge) * weight)

    slot = batch.interior
    split = torch.zeros_like(c, dtype=torch.float32)
    if cfg.split_form == "proximity":
        for ring, norm in zip(rings, batch.ring_norm, strict=True):
            m_now, m_before = _pair_counts(ring, slot, c, c_prev)
            split += (m_before - m_now - m_now / steps) * norm[slot]
    elif cfg.split_form == "instance":
        split = _instance_split(batch, inner, slot, c, c_prev, steps)
    elif cfg.split_form == "worst":
        share = float(cfg.worst_share)
        split = share * _worst_split(batch, inner, slot, c, c_prev, steps, n_colors)
        if share < 1.0:  # the rest from the mean over the neighbours
            split += (1.0 - share) * _instance_split(batch, inner, slot, c, c_prev, steps)
    else:
        raise ValueError(f"split_form must be 'instance', 'proximity' or 'worst', got "
                         f"{cfg.split_form!r}.")
    split = split.view(shape) * (float(cfg.w_split) * weight)
    return RewardParts(zeros, background, split, merge, background + split + merge, batch.mask)


def _instance_split(batch: BatchTargets, inner: torch.Tensor, slot: torch.Tensor,
                    c: torch.Tensor, c_prev: torch.Tensor, steps: int) -> torch.Tensor:
    """The instance form's split term (flat, before w_s and the mask): per radius, the mean over
    the neighbours j of the share of Inr_j in the pixel's color, at c_{t-1} minus at c_t."""
    shares = inner * batch.interior_norm[:, None]  # fraction of Inr_j per color
    lone = 1.0 / (steps - 1)
    split = torch.zeros_like(c, dtype=torch.float32)
    for src, dst, w, iso in zip(batch.neighbour_src, batch.neighbour_dst,
                                batch.neighbour_weight, batch.isolated, strict=True):
        mean = torch.zeros_like(shares).index_add_(0, src, shares[dst] * w[:, None])
        m_now, m_before = _pair_counts(mean, slot, c, c_prev)
        split += m_before - m_now - m_now / steps + iso[slot].to(torch.float32) * lone
    return split


def _worst_split(batch: BatchTargets, inner: torch.Tensor, slot: torch.Tensor,
                 c: torch.Tensor, c_prev: torch.Tensor, steps: int,
                 n_colors: int) -> torch.Tensor:
    """The worst form's split term (flat, before w_s and the mask): the instance form with the
    mean over the neighbours replaced by the maximum, the c_{t-1} maximum taken from each
    neighbour's own histogram over c_{t-1}."""
    shares = inner * batch.interior_norm[:, None]  # fraction of Inr_j per color at c_t
    before = _previous(inner) * batch.interior_norm[:, None]  # ... and at c_{t-1}
    lone = 1.0 / (steps - 1)
    split = torch.zeros_like(c, dtype=torch.float32)
    for src, dst, iso in zip(batch.neighbour_src, batch.neighbour_dst, batch.isolated,
                             strict=True):
        worst = _neighbour_max(shares, src, dst)
        worst_before = _neighbour_max(before, src, dst)
        m_now = worst.reshape(-1)[slot * n_colors + c]
        m_before = worst_before.reshape(-1)[slot * (n_colors // 2) + c_prev]
        split += m_before - m_now - m_now / steps + iso[slot].to(torch.float32) * lone
    return split


def episode_rewards(batch: BatchTargets, actions: torch.Tensor) -> list[RewardParts]:
    """Rewards of every step of an episode. actions: (T, B, *S) bool or {0, 1}."""
    steps = actions.shape[0]
    prev = torch.zeros(actions.shape[1:], dtype=torch.int64, device=actions.device)
    out = []
    for t in range(steps):
        colors = prev + (actions[t] != 0).to(torch.int64) * (1 << t)
        out.append(step_rewards(batch, prev, colors, actions[t], t, steps))
        prev = colors
    return out
