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

STEPS = 3


def plus(side: int) -> np.ndarray:
    """A square i (1) with four touching squares: j (2) on its right, 3 left, 4 up, 5 down."""
    labels = np.zeros((3 * side, 3 * side), np.int32)
    a, b = side, 2 * side
    labels[a:b, a:b] = 1
    labels[a:b, b:] = 2
    labels[a:b, :a] = 3
    labels[:a, a:b] = 4
    labels[b:, a:b] = 5
    return labels


# i and j merged (both color 1); every other pair of neighbours differs (j and the left square
# are a side apart, as are up and down: not neighbours, so they may share a color; the corner
# squares touch diagonally). c = a_0 + 2 a_1 + 4 a_2, a_0 = 1 on the foreground.
MERGED = {1: 1, 2: 1, 3: 3, 4: 5, 5: 7}
CORRECT = {**MERGED, 2: 3}


def total_return(labels: np.ndarray, colors: np.ndarray, config: RewardConfig) -> float:
    """Sum of the rewards of every pixel over the T steps, per foreground pixel."""
    actions = torch.from_numpy(np.stack([(colors >> t) & 1 for t in range(STEPS)])[:, None]
                               .astype(bool))
    parts = episode_rewards(collate_targets([prepare_targets(labels, config)]), actions)
    return float(sum(p.total.sum() for p in parts)) / float((labels > 0).sum())


def coloring(labels: np.ndarray, colors: dict[int, int]) -> np.ndarray:
    out = np.zeros(labels.shape, np.int64)
    for label, color in colors.items():
        out[labels == label] = color
    return out


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
