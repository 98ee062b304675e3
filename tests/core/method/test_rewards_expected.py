"""The expected rewards of a step (issue 17, point 4, ``train.expected_reward``): for each pixel
and each of its two actions, the mean reward over the other pixels' sampled actions. Checked
against the sampled rewards themselves, by Monte Carlo and where the policy is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_colorrl.core.config import RewardConfig
from napari_colorrl.core.data.synthetic import make_cells_2d
from napari_colorrl.core.method.rewards import (
    collate_targets,
    expected_step_rewards,
    step_rewards,
)
from napari_colorrl.core.method.targets import prepare_targets

STEPS, T = 4, 2  # the step checked: t = 2 of a T = 4 episode (colors c_1 in 0..3)


def _batch(form: str):
    config = RewardConfig(radii=(3, 6), split_form=form)
    labels = [make_cells_2d((40, 40), n_objects=6, seed=s)[1] for s in (0, 1)]
    batch = collate_targets([prepare_targets(lab, config) for lab in labels])
    rng = np.random.default_rng(0)
    # A coloring so far that mostly follows the objects (as a trained policy's), with noise.
    prev = np.stack([(lab * 3 + (rng.random(lab.shape) < 0.2)) % (1 << T) for lab in labels])
    prev[np.stack(labels) == 0] = 0
    prob = torch.from_numpy(rng.uniform(0.05, 0.95, prev.shape)).float()
    return batch, torch.from_numpy(prev).long(), prob


@pytest.mark.parametrize("form", ["instance", "proximity"])
def test_expected_rewards_are_the_mean_of_the_sampled_ones(form):
    """Monte Carlo: 2000 episodes of step t with every pixel sampling from the policy; per pixel
    and own action, the mean sampled reward matches the expected one within 5 standard errors
    (and the two differ: the own action matters)."""
    batch, prev, prob = _batch(form)
    expected = [parts.total for parts in expected_step_rewards(batch, prev, prob, T, STEPS)]
    torch.manual_seed(0)
    sums = [torch.zeros_like(prob) for _ in range(2)]
    squares = [torch.zeros_like(prob) for _ in range(2)]
    counts = [torch.zeros_like(prob) for _ in range(2)]
    for _ in range(2000):
        action = torch.rand_like(prob) < prob
        reward = step_rewards(batch, prev, prev + action.long() * (1 << T), action, T,
                              STEPS).total
        for a, took in ((0, ~action), (1, action)):
            sums[a] += torch.where(took, reward, 0.0)
            squares[a] += torch.where(took, reward ** 2, 0.0)
            counts[a] += took
    for a in (0, 1):
        n = counts[a].clamp_min(2)
        mean = sums[a] / n
        spread = (squares[a] / n - mean ** 2).clamp_min(0).sqrt()
        error = (mean - expected[a]).abs()
        assert bool((error <= 5 * spread / n.sqrt() + 1e-4).all()), float(error.max())
    assert float((expected[1] - expected[0]).abs().max()) > 0.1


@pytest.mark.parametrize("form", ["instance", "proximity", "worst"])
@pytest.mark.parametrize("t", [0, 1, 3])
def test_a_deterministic_policy_expects_exactly_its_sampled_rewards(form, t):
    """With probabilities 0 or 1 there is nothing to average: the expected reward of the action
    the policy takes is the reward step_rewards gives it, for every form and step."""
    batch, prev, _ = _batch(form)
    prev = prev % (1 << t)
    action = torch.from_numpy(np.random.default_rng(t).random(prev.shape) < 0.5)
    expected = expected_step_rewards(batch, prev, action.float(), t, STEPS)
    sampled = step_rewards(batch, prev, prev + action.long() * (1 << t), action, t, STEPS)
    chosen = torch.where(action, expected[1].total, expected[0].total)
    torch.testing.assert_close(chosen, sampled.total, atol=1e-5, rtol=0)
    for name in ("background", "split", "merge"):
        part = torch.where(action, getattr(expected[1], name), getattr(expected[0], name))
        torch.testing.assert_close(part, getattr(sampled, name), atol=1e-5, rtol=0)
