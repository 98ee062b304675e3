"""The 'worst' split form (issue 17, point 1): the cost of sharing a color with one touching
neighbour does not shrink with the number of neighbours, so the coherent flip of a merged object
pays from its first pixels on. No training: the rewards of hand-made colorings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_colorrl.core.config import RewardConfig
from napari_colorrl.core.method.rewards import collate_targets, episode_rewards
from napari_colorrl.core.method.targets import prepare_targets
from reward_cases import CORRECT, MERGED, STEPS, coloring, plus, total_return


def flip_curve(config: RewardConfig, fractions: np.ndarray, seed: int = 0) -> list[float]:
    """Total return when a random fraction f of j's pixels takes its own color 3."""
    labels = plus(20)
    merged = coloring(labels, MERGED)
    order = np.random.default_rng(seed).permutation(np.flatnonzero(labels.ravel() == 2))
    out = []
    for f in fractions:
        colors = merged.copy()
        colors.ravel()[order[: int(round(f * len(order)))]] = 3
        out.append(total_return(labels, colors, config))
    return out


@pytest.mark.parametrize("w_split", [1.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_flipping_a_merged_neighbour_pays_from_the_first_pixel(w_split, seed):
    fractions = np.linspace(0.0, 1.0, 11)
    worst = flip_curve(RewardConfig(radii=(4,), split_form="worst", w_split=w_split,
                                    interior_shrink=1.0), fractions, seed)
    assert all(b > a for a, b in zip(worst, worst[1:])), worst  # rises from f = 0, no dip
    # The instance form averages the collision over i's four neighbours: the same flip first
    # loses (the dip of the merged-object equilibrium), which is what 'worst' removes.
    instance = flip_curve(RewardConfig(radii=(4,), split_form="instance", w_split=w_split,
                                       interior_shrink=1.0), fractions, seed)
    assert min(instance[1:4]) < instance[0]


@pytest.mark.parametrize("form", ["worst", "instance"])
def test_the_correct_coloring_is_the_best_state_for_every_pixel(form):
    """From the correct coloring, changing any one pixel's action at any step lowers the total
    return: no pixel gains by leaving it."""
    config = RewardConfig(radii=(3,), split_form=form, interior_shrink=1.0)
    labels = plus(6)
    correct = coloring(labels, CORRECT)
    best = total_return(labels, correct, config)
    worse = []
    for p in range(labels.size):
        for t in range(STEPS):
            colors = correct.copy()
            colors.ravel()[p] ^= 1 << t
            worse.append(total_return(labels, colors, config))
    assert max(worse) < best


def test_the_worst_form_takes_the_most_shared_neighbour():
    """A pixel of i sharing its color with all of one neighbour's interior gets the same split
    penalty whether i has one neighbour or four (the instance form divides it by four)."""
    config = RewardConfig(radii=(4,), split_form="worst", interior_shrink=1.0)
    pair = np.zeros((20, 40), np.int32)
    pair[:, :20], pair[:, 20:] = 1, 2
    labels = plus(20)
    two = coloring(pair, {1: 1, 2: 1})
    five = coloring(labels, MERGED)

    def split_of_i(lab, colors):
        actions = torch.from_numpy(np.stack([(colors >> t) & 1 for t in range(STEPS)])[:, None]
                                   .astype(bool))
        parts = episode_rewards(collate_targets([prepare_targets(lab, config)]), actions)
        split = sum(p.split for p in parts)[0].numpy()
        return float(split[lab == 1].mean())

    assert split_of_i(pair, two) == pytest.approx(split_of_i(labels, five), rel=0.05)


@pytest.mark.parametrize("share", [0.0, 0.5, 0.8])
def test_worst_share_blends_the_worst_and_the_instance_forms(share):
    """reward.worst_share = s: the split term is s x the worst form's plus (1 - s) x the instance
    form's, pixel by pixel and step by step; the other parts do not change."""
    labels = plus(8)
    rng = np.random.default_rng(3)
    colors = rng.integers(0, 1 << STEPS, labels.shape) | 1  # every pixel foreground
    colors[labels == 0] = 0
    actions = torch.from_numpy(np.stack([(colors >> t) & 1 for t in range(STEPS)])[:, None]
                               .astype(bool))

    def parts(form, **changes):
        config = RewardConfig(radii=(3, 6), split_form=form, **changes)
        return episode_rewards(collate_targets([prepare_targets(labels, config)]), actions)

    worst, instance = parts("worst"), parts("instance")
    mixed = parts("worst", worst_share=share)
    for w, i, m in zip(worst, instance, mixed, strict=True):
        assert torch.allclose(m.split, share * w.split + (1 - share) * i.split, atol=1e-6)
        assert torch.equal(m.merge, w.merge) and torch.equal(m.background, w.background)
    assert not torch.allclose(sum(w.split for w in worst), sum(i.split for i in instance))


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_a_single_pixel_of_a_merged_neighbour_gains_by_leaving(share):
    """The per-pixel view of the merged-object equilibrium: one interior pixel of j (merged
    with i) that alone takes j's own color changes its own return by -merge + split gain. Under
    the instance form its split gain is divided over i's four neighbours and the pixel loses;
    with worst_share 0.5 or 1 it gains, so a per-pixel learner is pushed out of the merge."""
    labels = plus(20)
    merged = coloring(labels, MERGED)
    ys, xs = np.nonzero(labels == 2)
    p = (int(np.median(ys)), int(np.median(xs)))  # deep inside j
    flipped = merged.copy()
    flipped[p] = CORRECT[2]

    def own_return(form, colors, **changes):
        config = RewardConfig(radii=(4,), split_form=form, interior_shrink=1.0, w_split=2.0,
                              **changes)
        actions = torch.from_numpy(np.stack([(colors >> t) & 1 for t in range(STEPS)])[:, None]
                                   .astype(bool))
        parts = episode_rewards(collate_targets([prepare_targets(labels, config)]), actions)
        return float(sum(q.total for q in parts)[0][p])

    gain = own_return("worst", flipped, worst_share=share) - own_return("worst", merged,
                                                                       worst_share=share)
    loss = own_return("instance", flipped) - own_return("instance", merged)
    assert gain > 0 > loss, (gain, loss)
