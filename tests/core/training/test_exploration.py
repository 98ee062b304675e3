"""Coherent exploration (``train.exploration_scale``): each pixel's draw stays exactly uniform,
so every pixel still takes a_t = 1 with its own probability, while neighbours' draws are
correlated over about the scale."""

import dataclasses

import numpy as np
import pytest
import torch

from napari_colorrl.core.training.exploration import (
    exploration_uniforms,
    object_noise,
    smooth_noise,
)


def neighbour_correlation(u: torch.Tensor, shift: int, axis: int) -> float:
    a = u.narrow(axis, 0, u.shape[axis] - shift).flatten().double()
    b = u.narrow(axis, shift, u.shape[axis] - shift).flatten().double()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


@pytest.mark.parametrize("shape", [(256, 64, 48), (32, 24, 40, 32)], ids=["2d", "3d"])
def test_draws_are_uniform_and_correlated_over_the_scale(shape):
    torch.manual_seed(0)
    u = exploration_uniforms(shape, scale=4.0, correlation=0.75, device=torch.device("cpu"))
    assert u.shape == shape and float(u.min()) >= 0 and float(u.max()) < 1
    # Exactly uniform marginals: every tenth of [0, 1) holds a tenth of the draws, and the
    # rate of a_t = 1 is the policy's probability (0.1 here).
    counts = np.histogram(u.numpy(), bins=10, range=(0, 1))[0] / u.numel()
    assert np.abs(counts - 0.1).max() < 0.02, counts
    assert abs(float((u < 0.1).float().mean()) - 0.1) < 0.02
    for axis in range(1, len(shape)):  # near neighbours correlated, far ones not
        assert neighbour_correlation(u, 1, axis) > 0.6
        assert abs(neighbour_correlation(u, 20, axis)) < 0.1


def test_without_a_scale_the_draws_are_independent():
    torch.manual_seed(0)
    u = exploration_uniforms((4, 96, 80), scale=0.0, correlation=0.75,
                             device=torch.device("cpu"))
    assert abs(neighbour_correlation(u, 1, 1)) < 0.03
    torch.manual_seed(0)
    assert torch.equal(u, torch.rand((4, 96, 80)))  # the paper's sampling, the same numbers


def test_smooth_noise_has_unit_variance_up_to_the_borders():
    torch.manual_seed(0)
    z = smooth_noise((1024, 40, 40), 5.0, torch.device("cpu"))
    assert abs(float(z.var()) - 1) < 0.05
    for row in (0, 20, 39):  # the border rows like the inside: no padding effect
        assert abs(float(z[:, row].var()) - 1) < 0.1
        assert abs(float(z[:, :, row].var()) - 1) < 0.1


def test_over_objects_every_object_shares_its_draw_and_no_other():
    """``train.exploration_objects``: each draw stays exactly uniform; two pixels of one object
    are correlated by the shared share (0.75), pixels of two objects (or of an object and the
    background) not at all, however near they are."""
    torch.manual_seed(0)
    shape = (4096, 6, 8)
    labels = torch.zeros((6, 8), dtype=torch.int64)
    labels[:, 0:3] = 1
    labels[:, 3:6] = 2  # touches object 1; columns 6-7 background
    slots = (labels.view(1, -1) + 3 * torch.arange(shape[0]).view(-1, 1)).reshape(-1)
    u = exploration_uniforms(shape, scale=0.0, correlation=0.75, device=torch.device("cpu"),
                             objects=(slots, 3 * shape[0]))
    counts = np.histogram(u.numpy(), bins=10, range=(0, 1))[0] / u.numel()
    assert np.abs(counts - 0.1).max() < 0.02, counts

    def corr(a, b):
        return float(torch.corrcoef(torch.stack([u[:, a[0], a[1]], u[:, b[0], b[1]]]).double()
                                    )[0, 1])

    assert corr((0, 0), (5, 2)) > 0.65  # far apart, one object
    assert corr((0, 6), (5, 7)) > 0.65  # the background shares one draw too
    assert abs(corr((2, 2), (2, 3))) < 0.1  # neighbours of two touching objects
    assert abs(corr((2, 5), (2, 6))) < 0.1  # an object and the background
    z = object_noise((2, 3), torch.tensor([0, 0, 1, 1, 1, 2]), 3, torch.device("cpu"))
    assert z[0, 0] == z[0, 1] and z[0, 2] == z[1, 0] == z[1, 1] and z[1, 2] != z[1, 1]


def test_the_shared_share_falls_over_the_budget_to_independent_pixels():
    """``train.exploration_correlation_final``: the share goes linearly from
    ``exploration_correlation`` to the final value over the budget (constant without one), and
    a rollout at share 0 samples exactly like the paper's independent pixels, objects or not."""
    from conftest import tiny_config, tiny_samples
    from napari_colorrl.core.config import TrainConfig
    from napari_colorrl.core.model.networks import build_network
    from napari_colorrl.core.training.environment import Environment
    from napari_colorrl.core.training.rollout import play_episodes
    from napari_colorrl.core.training.trainer import exploration_correlation

    train = TrainConfig(exploration_objects=True, exploration_correlation=0.9,
                        exploration_correlation_final=0.0)
    assert [exploration_correlation(train, p) for p in (0, 0.5, 1)] == pytest.approx(
        [0.9, 0.45, 0.0])
    constant = TrainConfig(exploration_objects=True, exploration_correlation=0.9)
    assert exploration_correlation(constant, 0.7) == 0.9

    config = tiny_config(2, train={"exploration_objects": True,
                                   "exploration_correlation": 0.9,
                                   "exploration_correlation_final": 0.0})
    paper = config.replace(train=dataclasses.replace(config.train, exploration_objects=False))
    torch.manual_seed(0)
    model = build_network(config).eval()
    env = Environment(tiny_samples(2, 2), config, torch.device("cpu"), np.random.default_rng(0))
    episode = env.reset(2)
    with torch.no_grad():
        torch.manual_seed(1)
        end = play_episodes(model, episode, config, correlation=0.0)
        torch.manual_seed(1)
        independent = play_episodes(model, episode, paper)
        torch.manual_seed(1)
        start = play_episodes(model, episode, config)
    assert torch.equal(end.log_prob, independent.log_prob)
    assert not torch.equal(start.log_prob, independent.log_prob)


def test_the_trainer_plays_each_update_at_the_scheduled_share(tmp_path, monkeypatch):
    """The trainer passes the share of its progress to every update (0.9 at the start, half
    way to 0 after half an episode budget), not the configured constant."""
    from conftest import tiny_config, tiny_samples
    from napari_colorrl.core.training import trainer

    seen, real = [], trainer.run_update

    def spy(*args, correlation=None, **kwargs):
        seen.append(correlation)
        return real(*args, correlation=correlation, **kwargs)

    monkeypatch.setattr(trainer, "run_update", spy)
    config = tiny_config(2, train={"episodes": 4, "batch_size": 2, "val_every": 1000,
                                   "checkpoint_every": 1000, "exploration_objects": True,
                                   "exploration_correlation": 0.9,
                                   "exploration_correlation_final": 0.0})
    list(trainer.train(config, tiny_samples(2, 2), out=tmp_path / "m.pt"))
    assert seen == pytest.approx([0.9, 0.45])
