"""The code-agreement term (``train.agreement_weight``; beyond the paper, docs/method.md,
"Training"): a supervised loss on the policy's own step probabilities that asks every object to
take one code and touching objects different codes, whatever the codes are.

With m_i(t) the mean of P(a_t = 1) over the interior pixels of object i (in the episode's mask),
two pixels of i take the same action at step t with probability A_i(t) = m_i(t)^2 +
(1 - m_i(t))^2, and touching objects i and j are told apart at step t by
D_ij(t) = |m_i(t) - m_j(t)|. The loss is

    - mean over objects i of  sum_{t >= 1} log A_i(t)
    - mean over touching pairs {i, j} of  log(1 - prod_{t >= 1} (1 - D_ij(t))),

zero exactly when every object takes one code and no two touching objects the same, so any
valid coloring is a minimum. Objects and pairs weigh alike, as SBD weighs objects; the term falls
at every step of moving a merged object's pixels to another color together, where the sampled
reward first dips (``tests/core/training/test_agreement.py``). Three choices, made after
screens that failed (docs/method.md): step 0, the foreground decision, stays the
rewards' alone; the pairs are the objects that touch (:func:`touching_pairs`), the only ones
the connected components of each color merge; and D, not the chance that two objects' sampled
codes differ, which counts sampling noise as separation.

Its repair form (``train.agreement_form = "repair"``, :func:`code_repair_loss`) prescribes
codes after all, the policy's own with the fewest bits changed that part touching objects.
"""

from __future__ import annotations

import itertools

import torch

from ..method.rewards import BatchTargets

#: Added to 1 - prod_t (1 - D_ij(t)), so a pair merged with certainty costs -log(1e-6), about 13.8,
#: and still has a gradient (the log undoes the saturation of confident probabilities).
_EPS = 1e-6


def object_means(prob_one: torch.Tensor, targets: BatchTargets
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, G) mean of P(a_t = 1) over each slot's interior pixels in the episode's mask, and
    (G,) whether the slot has any such pixel. prob_one: (T, B, *S)."""
    steps = prob_one.shape[0]
    flat = prob_one.reshape(steps, -1)
    pixels, ids = targets.interior_pixels, targets.interior_ids
    keep = targets.mask.reshape(-1)[pixels]
    pixels, ids = pixels[keep], ids[keep]
    counts = torch.bincount(ids, minlength=targets.n_slots)
    sums = flat.new_zeros((steps, targets.n_slots)).index_add(1, ids, flat[:, pixels])
    return sums / counts.clamp_min(1).to(flat.dtype), counts > 0


def touching_pairs(targets: BatchTargets) -> tuple[torch.Tensor, torch.Tensor]:
    """The slot pairs (a, b), a < b, of objects that touch in the episode's labels: a pixel of
    each within one step of each other along any axes (full connectivity, as the connected
    components of post-processing), both in the mask."""
    shape = (targets.batch_size, *targets.shape)
    slots = targets.instance.view(shape)
    inside = targets.foreground.view(shape) & targets.mask
    keys = []
    for offset in itertools.product((-1, 0, 1), repeat=len(targets.shape)):
        if offset <= (0,) * len(offset):  # each direction once (and not the pixel itself)
            continue
        here = (slice(None), *(slice(0, -1) if o > 0 else slice(1, None) if o < 0 else
                               slice(None) for o in offset))
        there = (slice(None), *(slice(1, None) if o > 0 else slice(0, -1) if o < 0 else
                                slice(None) for o in offset))
        a, b = slots[here], slots[there]
        both = inside[here] & inside[there] & (a != b)
        a, b = a[both], b[both]
        keys.append(torch.minimum(a, b) * targets.n_slots + torch.maximum(a, b))
    keys = torch.unique(torch.cat(keys))
    return keys // targets.n_slots, keys % targets.n_slots


def code_agreement_loss(prob_one: torch.Tensor, targets: BatchTargets) -> torch.Tensor:
    """The code-agreement term (module docstring) of one rollout's step probabilities
    ``prob_one`` (T, B, *S, with graph; step 0 is left out); 0 without objects or with T = 1."""
    if prob_one.shape[0] < 2:
        return prob_one.sum() * 0
    means, present = object_means(prob_one[1:].float(), targets)
    agree = means ** 2 + (1 - means) ** 2
    within = -agree.log().sum(0)[present]
    loss = within.mean() if within.numel() else prob_one.sum() * 0
    src, dst = touching_pairs(targets)
    keep = present[src] & present[dst]
    src, dst = src[keep], dst[keep]
    if src.numel():
        same = (1 - (means[:, src] - means[:, dst]).abs()).prod(0)
        loss = loss - ((1 - same) + _EPS).log().mean()
    return loss


def repaired_codes(means: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """The repair form's target codes, (S, G) bool: each object's own code (bit s where its mean
    P(a = 1) exceeds 0.5; ``means`` (S, G) over the steps after step 0), then for each touching
    pair in turn that still shares its code, one bit of one of the two flipped: of the 2 S
    candidates, one whose new code no neighbour of the object holds if any, and among those the
    bit the policy is least sure of (mean nearest 0.5). Every object keeps the code the policy
    gave it except where a merge is undone, by the fewest bits the policy holds most loosely."""
    codes = means > 0.5
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    doubt = (means - 0.5).abs()
    for a, b in pairs:
        if not torch.equal(codes[:, a], codes[:, b]):
            continue
        best = None
        for obj in (a, b):
            for s in range(codes.shape[0]):
                code = codes[:, obj].clone()
                code[s] = ~code[s]
                clash = any(torch.equal(codes[:, n], code) for n in neighbours[obj])
                cost = (clash, float(doubt[s, obj]))
                if best is None or cost < best[0]:
                    best = (cost, obj, s)
        _, obj, s = best
        codes[s, obj] = ~codes[s, obj]
    return codes


def code_repair_loss(prob_one: torch.Tensor, targets: BatchTargets) -> torch.Tensor:
    """The repair form of the code-agreement term (``train.agreement_form = "repair"``): where
    touching objects share a code, the cross-entropy of each changed bit's step probabilities
    over the changed object's interior toward its repaired value (:func:`repaired_codes`),
    summed over the changed bits and averaged over all objects present; 0 where no touching
    objects share a code (or T = 1). prob_one: (T, B, *S), with graph; step 0 is left out."""
    if prob_one.shape[0] < 2:
        return prob_one.sum() * 0
    later = prob_one[1:].float()
    means, present = object_means(later.detach(), targets)
    src, dst = touching_pairs(targets)
    keep = present[src] & present[dst]
    pairs = list(zip(src[keep].tolist(), dst[keep].tolist()))
    codes = repaired_codes(means, pairs)
    changed = (codes != (means > 0.5)).nonzero().tolist()
    if not changed:
        return prob_one.sum() * 0
    flat = later.reshape(later.shape[0], -1)
    pixels, ids = targets.interior_pixels, targets.interior_ids
    inside = targets.mask.reshape(-1)[pixels]
    pixels, ids = pixels[inside], ids[inside]
    total = flat.new_zeros(())
    for s, obj in changed:
        p = flat[s, pixels[ids == obj]].clamp(1e-6, 1 - 1e-6)
        total = total - (p.log() if codes[s, obj] else (1 - p).log()).mean()
    return total / int(present.sum())
