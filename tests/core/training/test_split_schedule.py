"""The split weight's schedule (``train.split_weight_start``, beyond the paper): training starts
at a larger w_s and falls to ``reward.w_split``. Why it can work, from the rewards alone: a leaf
cut in pieces rejoins pixel by pixel (every pixel that takes the larger piece's color raises the
return), while two leaves of one color part only by a coherent flip (the return first dips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_colorrl.core.config import RewardConfig
from reward_cases import CORRECT, MERGED, coloring, plus, total_return

FRACTIONS = np.linspace(0.0, 1.0, 11)


def curve(labels, start: np.ndarray, pixels: np.ndarray, color: int, config) -> list[float]:
    """Total return as a random fraction f of ``pixels`` takes ``color``, f = 0 ... 1."""
    order = np.random.default_rng(0).permutation(pixels)
    out = []
    for f in FRACTIONS:
        colors = start.copy()
        colors.ravel()[order[: int(round(f * len(order)))]] = color
        out.append(total_return(labels, colors, config))
    return out


@pytest.mark.parametrize("w_split", [1.5, 2.0])
@pytest.mark.parametrize("piece", [0.3, 0.5])
def test_a_leaf_cut_in_pieces_rejoins_pixel_by_pixel(w_split, piece):
    """j (of the plus, four neighbours around i) cut in two: its right ``piece`` in color 5.
    Moving that piece back to j's color raises the return from its first pixels on; the merged
    state (i and j one color) is left only through a dip."""
    config = RewardConfig(radii=(4,), split_form="instance", w_split=w_split,
                          interior_shrink=1.0)
    labels = plus(20)
    j = np.flatnonzero(labels.ravel() == 2)
    right = j[np.argsort(-np.unravel_index(j, labels.shape)[1], kind="stable")]
    cut_piece = right[: int(round(piece * len(j)))]
    pieces = coloring(labels, CORRECT)
    pieces.ravel()[cut_piece] = 5
    rejoin = curve(labels, pieces, cut_piece, CORRECT[2], config)
    assert all(b > a for a, b in zip(rejoin, rejoin[1:])), rejoin
    part = curve(labels, coloring(labels, MERGED), j, CORRECT[2], config)
    assert min(part[1:4]) < part[0], part


def test_the_weight_falls_from_its_start_to_w_split_over_the_anneal():
    from conftest import tiny_config
    from napari_colorrl.core.training.trainer import split_weight

    config = tiny_config(2, reward={"w_split": 2.0},
                         train={"split_weight_start": 3.0, "split_anneal": 0.5})
    assert [split_weight(config, p) for p in (0, 0.25, 0.5, 0.9)] == pytest.approx(
        [3.0, 2.5, 2.0, 2.0])
    assert split_weight(tiny_config(2, reward={"w_split": 2.0}), 0.0) == 2.0


def test_an_update_rewards_the_split_at_the_weight_it_is_given():
    """``run_update(w_split=...)`` scales the split part of the same rollout and nothing else."""
    from conftest import tiny_config, tiny_samples
    from napari_colorrl.core.model.networks import build_network
    from napari_colorrl.core.training.environment import Environment
    from napari_colorrl.core.training.rollout import run_update

    config = tiny_config(2, reward={"w_split": 1.0})
    env = Environment(tiny_samples(2, 2), config, torch.device("cpu"), np.random.default_rng(0))
    episode = env.reset(2)
    parts = []
    for w in (None, 3.0):
        torch.manual_seed(0)
        model = build_network(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        torch.manual_seed(1)
        parts.append(run_update(model, optimizer, episode, config, entropy_coef=0.0,
                                w_split=w).reward_parts)
    base, tripled = parts
    assert base["split"] != 0
    assert tripled["split"] == pytest.approx(3.0 * base["split"], rel=1e-5)
    for name in ("foreground", "background", "merge"):
        assert tripled[name] == pytest.approx(base[name], rel=1e-6, abs=1e-9)
    assert episode.targets.config.w_split == 1.0  # the episode's own targets are untouched


def test_the_trainer_plays_each_update_at_the_scheduled_weight(tmp_path, monkeypatch):
    from conftest import tiny_config, tiny_samples
    from napari_colorrl.core.training import trainer

    seen, real = [], trainer.run_update

    def spy(*args, w_split=None, **kwargs):
        seen.append(w_split)
        return real(*args, w_split=w_split, **kwargs)

    monkeypatch.setattr(trainer, "run_update", spy)
    config = tiny_config(2, reward={"w_split": 2.0},
                         train={"episodes": 4, "batch_size": 2, "val_every": 1000,
                                "checkpoint_every": 1000, "split_weight_start": 3.0,
                                "split_anneal": 1.0})
    list(trainer.train(config, tiny_samples(2, 2), out=tmp_path / "m.pt"))
    assert seen == pytest.approx([3.0, 2.5])
