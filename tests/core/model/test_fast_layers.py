"""The fast layers and layout change no result: the fast paths against plain references.

Plain references, written here: the network with PyTorch's own InstanceNorm and Conv3d layers
in the NC(D)HW layout (``plain``), the coloring loop under ``no_grad``, the int64 color sum, the
open-mesh nearest resize, small components dropped and the rest relabelled, and the per-step
``float(masked_mean(...))`` reward bookkeeping.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_samples
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.data.files import Sample
from napari_colorrl.core.data.normalize import resize_nearest
from napari_colorrl.core.data.synthetic import make_cells_2d, make_nuclei_3d
from napari_colorrl.core.inference import Segmenter
from napari_colorrl.core.method.coloring import colors_from_steps, run_coloring, step_value
from napari_colorrl.core.model import fast_layers
from napari_colorrl.core.model.networks import build_network
from napari_colorrl.core.training import rollout
from napari_colorrl.core.training.environment import Environment


def plain(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights) with PyTorch's stock ``InstanceNorm`` and ``Conv3d``
    layers and no fast layout."""
    stock = copy.deepcopy(model)
    swap = {fast_layers.InstanceNorm2d: nn.InstanceNorm2d,
            fast_layers.InstanceNorm3d: nn.InstanceNorm3d, fast_layers.Conv3d: nn.Conv3d}
    for module in stock.modules():
        module.__class__ = swap.get(type(module), type(module))
        if hasattr(module, "fast_layout"):
            module.fast_layout = False
    return stock.to(memory_format=torch.contiguous_format)


def config_for(ndim: int, steps: int = 3) -> ColorRLConfig:
    base = {"ndim": ndim, "steps": steps, "min_size": 3,
            "network": {"features": [4, 8, 16], "attention": ndim == 2, "input_features": 4},
            "train": {"batch_size": 2, "lr": 1e-3, "grad_clip": 1.0, "advantage_norm": True,
                      "gae_lambda": 0.95}}
    if ndim == 2:
        base.update(input_size=[32, 32], reward={"radii": [2, 4]})
    else:
        base.update(input_size=[16, 16, 16], input_mode="crop",
                    reward={"radii": [2, 3], "split_form": "proximity"})
    return ColorRLConfig.from_dict(base)


def decisive(model: nn.Module) -> nn.Module:
    """Policy head with ordinary weights, so logits are far from ties (the fresh head is tiny)."""
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        model.policy_head.weight.copy_(torch.randn(model.policy_head.weight.shape, generator=gen))
    return model


@pytest.mark.parametrize("ndim", [2, 3])
def test_group_norm_is_instance_norm_forward_and_backward(ndim):
    torch.manual_seed(0)
    fast = (fast_layers.InstanceNorm2d if ndim == 2 else fast_layers.InstanceNorm3d)(6, affine=True)
    with torch.no_grad():
        fast.weight.uniform_(0.5, 1.5)
        fast.bias.uniform_(-0.5, 0.5)
    stock = plain(nn.Sequential(fast))[0]
    assert type(stock) in (nn.InstanceNorm2d, nn.InstanceNorm3d)
    x = torch.randn(2, 6, *(9,) * ndim) * 3 + 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa), stock(xb)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ya)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
    assert set(fast.state_dict()) == set(stock.state_dict()) == {"weight", "bias"}


def test_fast_3d_layout_on_the_cpu_and_its_switch():
    torch.manual_seed(0)
    net = fast_layers.use_fast_layout(build_network(config_for(3)))
    assert net.step_input[0].conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    image, steps = torch.rand(1, 1, 16, 16, 16), torch.zeros(1, 3, 16, 16, 16)
    with torch.no_grad():
        fast = net(image, steps)[0]
        reference = plain(net)(image, steps)[0]
    assert net.encode_image(image).is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-4)
    net.fast_layout = False
    assert net.encode_image(image).is_contiguous()
    # 2D: weights in channels_last for inference only; training keeps plain NCHW.
    flat = fast_layers.use_fast_layout(build_network(config_for(2)))
    assert flat.encoders[0].conv1.weight.is_contiguous()
    fast_layers.use_fast_layout(flat, inference=True)
    assert flat.encoders[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    image, steps = torch.rand(1, 1, 32, 32), torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        assert flat.encode_image(image).is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(flat(image, steps)[0], plain(flat)(image, steps)[0],
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("supported", [False, True])
def test_bfloat16_conv3d_goes_to_onednn_only_where_the_cpu_runs_it(supported, monkeypatch):
    """Under bfloat16 autocast (``train.precision``) a channels-last 3D convolution goes to
    oneDNN only where its bfloat16 kernels run on this CPU; elsewhere the stock path. Before the
    check, training in bfloat16 in 3D raised on CPUs without AVX-512 ("mkldnn_convolution: bf16
    path needs the cpu support ..."). Both paths agree with the float32 result to bfloat16's
    precision."""
    if supported and not fast_layers.onednn_bfloat16():
        pytest.skip("this CPU's oneDNN has no bfloat16 convolution")
    monkeypatch.setattr(fast_layers, "onednn_bfloat16", lambda: supported)
    torch.manual_seed(0)
    conv = fast_layers.Conv3d(2, 4, 3, padding=1, bias=False)
    x = torch.rand(1, 2, 6, 8, 10).contiguous(memory_format=torch.channels_last_3d)
    calls = []
    real = torch.mkldnn_convolution
    monkeypatch.setattr(torch, "mkldnn_convolution",
                        lambda *args: calls.append(args[0].dtype) or real(*args))
    reference = nn.functional.conv3d(x, conv.weight, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16
    assert calls == ([torch.bfloat16] if supported else [])
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)


def test_validation_leaves_the_training_layout_alone():
    from napari_colorrl.core.training.selection import validate

    config = config_for(2)
    torch.manual_seed(0)
    model = build_network(config)
    validate(model, config, _samples(2)[:1], torch.device("cpu"))
    assert model.encoders[0].conv1.weight.is_contiguous()
    assert model.training


@pytest.mark.parametrize("shape,target", [((6, 22, 22), (6, 53, 50)), ((6, 40, 33), (6, 7, 9)),
                                          ((5, 8, 9, 10), (5, 17, 9, 31)), ((7, 5), (7, 5))])
def test_resize_nearest_matches_open_mesh_index(shape, target):
    array = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    index = tuple(np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
                  for n, m in zip(target, shape))
    np.testing.assert_array_equal(resize_nearest(array, target), array[np.ix_(*index)])


@pytest.mark.parametrize("steps", [1, 3, 6, 8, 9, 16, 17])
def test_colors_from_steps_matches_int64_sum(steps):
    rng = np.random.default_rng(steps)
    maps = rng.integers(0, 2, (steps, 13, 11)).astype(np.uint8)
    weights = (2 ** np.arange(steps, dtype=np.int64))[:, None, None]
    expected = (maps.astype(np.int64) * weights).sum(0)
    got = colors_from_steps(maps)
    assert got.dtype == np.dtype(np.uint8 if steps <= 8 else np.uint16 if steps <= 16
                                 else np.uint32)
    np.testing.assert_array_equal(got, expected.astype(got.dtype))
    np.testing.assert_array_equal(colors_from_steps(maps.astype(bool)), got)


@torch.no_grad()
def _plain_coloring(model, image: torch.Tensor, steps: int) -> np.ndarray:
    """The coloring loop as it was (no_grad, int64 colors at the end)."""
    batch, spatial = image.shape[0], image.shape[2:]
    channels = torch.zeros((batch, steps, *spatial))
    actions = torch.zeros((batch, steps, *spatial), dtype=torch.uint8)
    cache = model.encode_image(image)
    for t in range(steps):
        logits = model(image, channels, image_features=cache)[0]
        action = logits[:, 1] > logits[:, 0]
        actions[:, t] = action
        channels[:, t] = step_value(action)
    return actions.numpy()


@pytest.mark.parametrize("ndim", [2, 3])
def test_optimized_inference_gives_the_plain_step_maps_and_instances(ndim):
    config = config_for(ndim, steps=4)
    torch.manual_seed(0)
    model = decisive(build_network(config))
    if ndim == 2:
        image, _ = make_cells_2d(shape=(40, 37), n_objects=5, seed=3)
    else:
        image, _ = make_nuclei_3d(shape=(16, 20, 18), n_objects=4, seed=3)
    # The volume is larger than the 16^3 crops the 3D config trains on, so it would take its
    # instance-norm statistics from input-size crops (docs/method.md, "Scale and tiles"); an
    # input as large as the volume keeps the whole-volume statistics the reference uses.
    segmenter = Segmenter(model, config.replace(input_size=(16, 24, 24)) if ndim == 3 else
                          config, device="cpu")
    result = segmenter.segment(image)

    reference = plain(model).eval()
    data, shape = segmenter.network_input(image)
    steps = _plain_coloring(reference, torch.from_numpy(data)[None], config.steps)
    assert steps.any() and not steps.all()
    np.testing.assert_array_equal(run_coloring(model, torch.from_numpy(data)[None], 4).steps,
                                  steps)
    index = tuple(np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
                  for n, m in zip((config.steps, *shape), steps[0].shape))
    full = steps[0][np.ix_(*index)]
    np.testing.assert_array_equal(result.steps, full)
    weights = (2 ** np.arange(config.steps, dtype=np.int64)).reshape((-1,) + (1,) * ndim)
    colors = (full.astype(np.int64) * weights).sum(0)
    np.testing.assert_array_equal(result.colors, colors)
    from skimage.measure import label

    components = label(colors, background=0, connectivity=ndim)
    sizes = np.bincount(components.ravel())
    keep = sizes >= config.min_size
    keep[0] = False
    ids = np.zeros(sizes.shape[0], np.int64)
    ids[keep] = np.arange(1, keep.sum() + 1)
    np.testing.assert_array_equal(result.instances, ids[components])
    assert result.instances.dtype == np.uint16


def _samples(ndim: int) -> list[Sample]:
    return tiny_samples(ndim, 2, (36, 36) if ndim == 2 else (18, 20, 20))


def _one_update(model, config, samples, monkeypatch=None):
    torch.manual_seed(5)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, amsgrad=True)
    env = Environment(samples, config, torch.device("cpu"), np.random.default_rng(0))
    episode = env.reset(config.train.batch_size)
    stats = rollout.run_update(model, optimizer, episode, config, entropy_coef=0.01)
    return stats, episode


@pytest.mark.parametrize("ndim", [2, 3])
def test_training_update_changes_weights_as_the_plain_network(ndim, monkeypatch):
    config = config_for(ndim)
    torch.manual_seed(0)
    start = build_network(config)
    fast, reference = fast_layers.use_fast_layout(copy.deepcopy(start)), plain(start)
    recorded = []
    real = rollout.step_rewards

    def recording(*args, **kwargs):
        parts = real(*args, **kwargs)
        recorded.append(parts)
        return parts

    monkeypatch.setattr(rollout, "step_rewards", recording)
    stats, episode = _one_update(fast, config, _samples(ndim))
    monkeypatch.setattr(rollout, "step_rewards", real)
    ref_stats, _ = _one_update(reference, config, _samples(ndim))

    # The bookkeeping (read once per update) gives exactly the old per-step float sums.
    mask = episode.targets.mask.float()
    old = dict.fromkeys(rollout.PARTS, 0.0)
    for parts in recorded:
        for name in rollout.PARTS:
            old[name] += float(rollout.masked_mean(getattr(parts, name).float(), mask))
    assert stats.reward_parts == old
    assert stats.reward == float(sum(old.values()))
    # The fast network learns what the plain one learns (float rounding aside).
    assert stats.reward_parts == pytest.approx(ref_stats.reward_parts, abs=1e-6)
    assert stats.loss == pytest.approx(ref_stats.loss, rel=1e-4, abs=1e-6)
    moved = 0
    for (name, a), b, s in zip(fast.state_dict().items(), reference.state_dict().values(),
                               start.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4, msg=name)
        moved += int(not torch.equal(a, s))
    assert moved > 0
