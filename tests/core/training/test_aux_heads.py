"""Auxiliary supervised heads (issue 17, point 3; docs/method.md "Auxiliary supervision"): a
foreground and a boundary head on the shared decoder, trained from the labels with weight
``train.aux_weight``, saved in the checkpoint and ignored at inference."""

from __future__ import annotations

import numpy as np
import torch

from conftest import tiny_config, tiny_samples
from napari_colorrl.core.config import RewardConfig
from napari_colorrl.core.method.rewards import collate_targets
from napari_colorrl.core.method.targets import prepare_targets
from napari_colorrl.core.model.checkpoint import load_checkpoint
from napari_colorrl.core.model.networks import build_network
from napari_colorrl.core.training.rollout import aux_label_maps, aux_loss
from napari_colorrl.core.training.trainer import train


def test_label_maps_are_the_foreground_and_the_boundaries_between_objects():
    labels = np.zeros((8, 10), np.int32)
    labels[1:5, 1:5] = 1
    labels[1:5, 5:9] = 2  # touching 1 along a column
    maps = aux_label_maps(collate_targets([prepare_targets(labels, RewardConfig(radii=(2,)))]))
    foreground, boundary = (m[0].numpy() for m in maps)
    assert (foreground == (labels > 0)).all()
    inner = np.zeros_like(labels, bool)
    inner[2:4, 2:4] = inner[2:4, 6:8] = True  # not next to another object or the background
    assert (boundary[labels > 0] == ~inner[labels > 0]).all() and boundary[labels == 0].sum() == 0
    assert boundary[1:5, 4].all() and boundary[1:5, 5].all()  # the shared edge, both sides


def test_the_loss_falls_when_the_heads_predict_the_labels():
    labels = np.zeros((12, 12), np.int32)
    labels[2:7, 2:7] = 1
    labels[6:11, 7:11] = 2
    targets = collate_targets([prepare_targets(labels, RewardConfig(radii=(2,)))])
    maps = aux_label_maps(targets)
    mask = targets.mask.float()
    right = torch.stack([maps[0] * 20 - 10, maps[1] * 20 - 10], 1)
    assert float(aux_loss(right, maps, mask)) < 0.01 < float(aux_loss(-right, maps, mask))


def test_a_model_with_aux_heads_trains_saves_them_and_colors_without_them(tmp_path):
    config = tiny_config(2, network={"features": [4, 8], "attention": True, "input_features": 4,
                                     "aux_heads": True}, train={"episodes": 4, "aux_weight": 1.0})
    out = tmp_path / "m.pt"
    reports = list(train(config, tiny_samples(2, 2), out=out))
    assert reports[-1].final and np.isfinite(reports[-1].loss)
    checkpoint = load_checkpoint(out)
    assert checkpoint.config.network.aux_heads
    assert {"aux_head.weight", "aux_head.bias"} <= set(checkpoint.model_state)
    # Inference ignores them: the same weights without the heads color identically.
    from napari_colorrl.core.inference import Segmenter

    with_heads = Segmenter.load(out, device="cpu")
    plain_config = config.replace(network=config.network.__class__(
        features=(4, 8), attention=True, input_features=4, aux_heads=False))
    plain = build_network(plain_config)
    plain.load_state_dict({k: v for k, v in checkpoint.model_state.items()
                           if not k.startswith("aux_head.")})
    without = Segmenter(plain, checkpoint.config.replace(network=plain_config.network),
                        device="cpu")
    image = tiny_samples(2, 1)[0].image
    a, b = with_heads.segment(image), without.segment(image)
    assert np.array_equal(a.steps, b.steps) and np.array_equal(a.instances, b.instances)


def test_aux_heads_change_the_gradient_of_the_shared_decoder():
    """The aux loss reaches the decoder (it is a term of the loss, not a detached head)."""
    config = tiny_config(2, network={"features": [4, 8], "attention": False,
                                     "input_features": 4, "aux_heads": True})
    net = build_network(config)
    image = torch.rand(1, 1, 16, 16)
    steps = torch.zeros(1, config.steps, 16, 16)
    _, _, aux = net(image, steps, aux=True)
    aux.sum().backward()
    assert net.decoders[0].block.conv1.weight.grad.abs().sum() > 0


def test_a_package_leaves_the_aux_heads_out():
    from napari_colorrl.core.model.bioimage_export import coloring_module, without_aux_heads

    config = tiny_config(2, network={"features": [4, 8], "attention": True, "input_features": 4,
                                     "aux_heads": True})
    state = build_network(config).state_dict()
    packaged = without_aux_heads(config)
    assert not packaged.network.aux_heads and packaged.replace(network=config.network) == config
    module = coloring_module(packaged, {k: v for k, v in state.items()
                                        if not k.startswith("aux_head.")})
    assert not any(k.startswith("aux_head.") for k in module.state_dict())
