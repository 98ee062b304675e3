import dataclasses

import pytest
import torch

from conftest import tiny_config as shared_tiny_config
from napari_colorrl.core.config import ColorRLConfig, NetworkConfig
from napari_colorrl.core.model.networks import (
    ColorRLNet,
    build_network,
    count_flops,
    count_parameters,
)

torch.set_num_threads(2)


def small_config(ndim=2, attention=True, channels=1, steps=3):
    return shared_tiny_config(ndim, steps=steps, input_size=[16] * ndim,
                              normalization={"channels": channels},
                              network={"features": [4, 8, 16], "attention": attention})


def inputs(config, spatial, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((batch, config.normalization.channels, *spatial), generator=g)
    steps = torch.randint(-1, 2, (batch, config.steps, *spatial), generator=g).float()
    return image, steps


@pytest.mark.parametrize(
    "ndim, spatial, attention",
    [
        (2, (16, 16), True),
        (2, (37, 50), True),
        (2, (37, 50), False),
        (2, (5, 3), True),
        (3, (8, 8, 8), False),
        (3, (9, 13, 17), False),
        (3, (9, 13, 17), True),
    ],
)
def test_output_shapes(ndim, spatial, attention):
    config = small_config(ndim, attention)
    net = build_network(config)
    image, steps = inputs(config, spatial)
    logits, value = net(image, steps)
    assert logits.shape == (2, 2, *spatial)
    assert value.shape == (2, 1, *spatial)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()


def test_attention_flag_adds_gates():
    with_gates = build_network(small_config(attention=True))
    without = build_network(small_config(attention=False))
    assert all(d.gate is not None for d in with_gates.decoders)
    assert all(d.gate is None for d in without.decoders)
    assert count_parameters(with_gates) > count_parameters(without)


def test_rgb_and_depth():
    config = small_config(channels=3, steps=6).replace(
        network=NetworkConfig(features=(4, 8), attention=True, input_features=4)
    )
    net = build_network(config)
    assert net.depth == 2 and net.multiple == 2
    logits, _ = net(*inputs(config, (7, 9)))
    assert logits.shape == (2, 2, 7, 9)


def test_initial_probabilities_near_half():
    config = small_config()
    net = build_network(config)
    logits, value = net(*inputs(config, (16, 16)))
    prob = torch.softmax(logits, dim=1)
    assert (prob - 0.5).abs().max() < 0.05
    assert value.abs().max() < 0.1


def test_default_2d_builds():
    config = ColorRLConfig.default_for(2)
    net = build_network(config)
    assert isinstance(net, ColorRLNet)
    assert net.features == (32, 64, 128, 256, 512) and net.attention
    assert len(net.encoders) == 5 and len(net.decoders) == 4
    assert 5_000_000 < count_parameters(net) < 20_000_000
    with torch.no_grad():
        logits, value = net(*inputs(config, (16, 16), batch=1))
    assert logits.shape == (1, 2, 16, 16) and value.shape == (1, 1, 16, 16)


def test_default_3d_builds():
    config = ColorRLConfig.default_for(3)
    net = build_network(config)
    assert net.features == (8, 16, 32, 64, 128) and not net.attention
    assert net.encoders[0].conv1.weight.ndim == 5
    assert 100_000 < count_parameters(net) < 5_000_000


def test_cached_image_features_match_plain_forward():
    config = small_config()
    net = build_network(config).eval()
    image, steps = inputs(config, (21, 30))
    feats = net.encode_image(image)
    with torch.no_grad():
        plain = net(image, steps)
        cached = net(image, steps, image_features=feats)
    for a, b in zip(plain, cached, strict=True):
        torch.testing.assert_close(a, b)


def test_cached_features_of_wrong_size_rejected():
    config = small_config()
    net = build_network(config)
    image, steps = inputs(config, (16, 16))
    feats = net.encode_image(inputs(config, (32, 32))[0])
    with pytest.raises(ValueError, match="encode_image"):
        net(image, steps, image_features=feats)


@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_matches(ndim):
    config = small_config(ndim)
    net = build_network(config)
    spatial = (20, 24) if ndim == 2 else (8, 12, 8)
    image, steps = inputs(config, spatial)
    with torch.no_grad():
        ref = net(image, steps)
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    net = net.to(memory_format=fmt)
    with torch.no_grad():
        out = net(image.to(memory_format=fmt), steps.to(memory_format=fmt))
    for a, b in zip(ref, out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", [True, False])
def test_gradients_reach_every_parameter(attention):
    config = small_config(attention=attention)
    net = build_network(config)
    logits, value = net(*inputs(config, (16, 20)))
    (logits.sum() + value.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_wrong_channels_raise():
    config = small_config(channels=1, steps=3)
    net = build_network(config)
    image, steps = inputs(config, (16, 16))
    with pytest.raises(ValueError, match="expects 1"):
        net(torch.rand(2, 3, 16, 16), steps)
    with pytest.raises(ValueError, match="expects 3"):
        net(image, steps[:, :2])
    with pytest.raises(ValueError, match="2D network"):
        net(image[..., None], steps[..., None])


def test_count_flops():
    config = small_config()
    net = build_network(config)
    flops = count_flops(net, config)
    assert flops > 0
    assert count_flops(net, config, (32, 32)) == pytest.approx(4 * flops, rel=1e-6)
    assert net.training


def test_position_channels_are_the_position_along_each_axis():
    from napari_colorrl.core.model.coloring_network import coordinate_channels

    image = torch.rand(2, 1, 3, 5)
    out = coordinate_channels(image)
    assert out.shape == (2, 3, 3, 5) and torch.equal(out[:, :1], image)
    assert torch.allclose(out[1, 1, :, 4], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(out[0, 2, 2], torch.linspace(-1, 1, 5))
    volume = coordinate_channels(torch.zeros(1, 2, 4, 2, 3))
    assert volume.shape == (1, 5, 4, 2, 3)
    assert torch.allclose(volume[0, 2, :, 1, 1], torch.linspace(-1, 1, 4))
    assert torch.allclose(volume[0, 4, 3, 0], torch.tensor([-1.0, 0.0, 1.0]))


@pytest.mark.parametrize("ndim, spatial", [(2, (19, 23)), (3, (9, 13, 10))])
def test_position_channels_enter_the_image_branch_only(ndim, spatial):
    """``network.coordinates``: the image module takes C + ndim channels; with the weights of
    the position channels zeroed the network is the plain one, with them it is not."""
    config = small_config(ndim)  # input width 6: 1 + ndim != 6, so the shortcut is a 1x1 conv
    config = config.replace(network=dataclasses.replace(config.network, input_features=6))
    placed = config.replace(network=dataclasses.replace(config.network, coordinates=True))
    plain, net = build_network(config), build_network(placed)
    first = net.image_input[0]
    assert first.conv1.weight.shape[1] == 1 + ndim and first.shortcut.weight.shape[1] == 1 + ndim
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.3 if v.is_floating_point() else v
             for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    image, steps = inputs(config, spatial)
    with torch.no_grad():
        placed_logits = net(image, steps)[0]
        for layer in (first.conv1, first.shortcut):
            layer.weight[:, 1:] = 0
        zeroed = net(image, steps)[0]
        plain.load_state_dict({k: (v[:, :1] if k in ("image_input.0.conv1.weight",
                                                      "image_input.0.shortcut.weight") else v)
                               for k, v in net.state_dict().items()})
        assert torch.allclose(zeroed, plain(image, steps)[0], atol=1e-5)
        assert not torch.allclose(zeroed, placed_logits, atol=1e-3)
