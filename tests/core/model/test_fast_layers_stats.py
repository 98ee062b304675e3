"""Shared instance-norm statistics (tiled inference, docs/method.md "Scale and tiles")."""

from __future__ import annotations

import pytest
import torch

from napari_colorrl.core.model.fast_layers import InstanceNorm2d, InstanceNorm3d, SharedStatistics


@pytest.mark.parametrize("ndim", [2, 3])
def test_recorded_statistics_pool_the_batch_and_replay_in_order(ndim):
    torch.manual_seed(0)
    norm_class = InstanceNorm2d if ndim == 2 else InstanceNorm3d
    net = torch.nn.Sequential(norm_class(3, affine=True), torch.nn.ELU(),
                              norm_class(3, affine=True))
    with torch.no_grad():
        for m in net:
            if isinstance(m, norm_class):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    shape = (4, 3) + (8,) * ndim
    batch = torch.randn(shape) * 3 + 1
    own = net(batch)
    stats = SharedStatistics()
    stats.attach(net)
    pooled = net(batch)
    assert len(stats.values) == 2
    # The first norm: mean and variance per channel over the whole batch.
    dims = (0, *range(2, batch.ndim))
    mean, var = stats.values[0]
    assert torch.allclose(mean, batch.mean(dims), atol=1e-5)
    assert torch.allclose(var, batch.var(dims, unbiased=False), atol=1e-4)
    assert not torch.allclose(pooled, own, atol=1e-3)  # not each sample's own
    stats.replay()
    for i in range(2):  # each input normalised with the batch's statistics, not its own
        stats.rewind()
        assert torch.allclose(net(batch[i:i + 1]), pooled[i:i + 1], atol=1e-5)
    with pytest.raises(RuntimeError, match="rewind"):
        net(batch[:1])
    SharedStatistics.detach(net)
    assert torch.allclose(net(batch), own, atol=1e-6)
