"""benchmarks/diagnose.py: the oracle coloring earns the reward's maximum, and the object error
counts match hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import load_benchmark
from napari_colorrl.core.config import RewardConfig
from napari_colorrl.core.method.targets import prepare_targets


@pytest.fixture(scope="module")
def diagnose():
    return load_benchmark("diagnose")


def touching_squares(n: int = 3) -> np.ndarray:
    """An n x n grid of 4 x 4 squares that touch their neighbours, in a background margin."""
    lab = np.zeros((4 * n + 4, 4 * n + 4), int)
    for k, (i, j) in enumerate(itertools.product(range(n), repeat=2)):
        lab[2 + 4 * i: 6 + 4 * i, 2 + 4 * j: 6 + 4 * j] = k + 1
    return lab


def test_oracle_coloring_is_valid_and_beats_other_colorings(diagnose):
    steps = 4
    targets = prepare_targets(touching_squares(), RewardConfig(radii=(2.0, 5.0), w_split=1.5))
    oracle = diagnose.oracle_steps(targets, steps)
    assert oracle.shape == (steps, *targets.shape) and oracle.dtype == np.uint8
    colors = sum(oracle[k].astype(int) << k for k in range(steps)).ravel()
    labels = targets.instance
    assert np.all(colors[labels == 0] == 0)
    for i in range(1, targets.n_instances + 1):
        assert len(np.unique(colors[labels == i])) == 1
        assert colors[labels == i][0] % 2 == 1  # a_0 = 1: foreground
    for pairs in targets.neighbours:
        for i, j in pairs:
            assert colors[labels == i][0] != colors[labels == j][0]
    best = diagnose.reward_sums(targets, oracle)
    # every object one color but no neighbour told apart: the same merge, less split
    same = np.zeros_like(oracle)
    same[0] = labels.reshape(targets.shape) > 0
    one_color = diagnose.reward_sums(targets, same)
    assert best["merge"] == pytest.approx(one_color["merge"])
    assert best["split"] > one_color["split"] + 0.1
    rng = np.random.default_rng(0)
    for _ in range(20):
        noisy = oracle.copy()
        flip = rng.random(oracle.shape) < 0.1
        noisy[flip] ^= 1
        assert diagnose.reward_sums(targets, noisy)["total"] < best["total"]


def test_oracle_coloring_says_when_colors_are_too_few(diagnose):
    targets = prepare_targets(touching_squares(), RewardConfig(radii=(5.0,)))
    with pytest.raises(ValueError, match="too few"):
        diagnose.oracle_steps(targets, 2)  # 2 colors for a grid whose neighbours reach 8


def test_object_errors_counts(diagnose):
    gt = np.zeros((10, 20), int)
    gt[1:9, 1:9], gt[1:9, 11:19], gt[0, 0] = 1, 2, 3  # object 3: one pixel, missed below
    merged = np.where(gt > 0, 1, 0)
    merged[0, 0] = 0
    assert diagnose.object_errors(merged, gt) == {"objects": 3, "merged": 2, "missed": 1,
                                                  "split": 0}
    split = gt.copy()
    split[1:9, 5:9] = 4  # object 1 cut in halves
    assert diagnose.object_errors(split, gt) == {"objects": 3, "merged": 0, "missed": 0,
                                                 "split": 1}
