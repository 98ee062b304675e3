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
