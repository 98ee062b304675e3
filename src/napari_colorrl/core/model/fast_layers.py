"""CPU-fast layers of the ColorRL network and its fast memory layout.

The instance norms are computed by ``group_norm`` with one group per channel (the same
normalisation, the same parameters and state-dict keys; PyTorch's CPU ``instance_norm`` is
slower; docs/results.md, "Speed", has the measurements). On the CPU the 3D
network runs in the ``channels_last_3d`` layout with oneDNN convolutions, and 2D inference in
``channels_last`` (``ColorRLNet.fast_layout``; weights converted by ``use_fast_layout``): in
NC(D)HW oneDNN reorders every activation and weight at every convolution, and for batch-1
volumes PyTorch would pick its slow reference 3D convolution for most layers.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _GroupNormInstanceNorm:
    """The forward of :class:`InstanceNorm2d` and :class:`InstanceNorm3d`."""

    statistics: SharedStatistics | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.statistics is not None:
            return self.statistics.normalize(x, self.weight, self.bias, self.eps)
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


class InstanceNorm2d(_GroupNormInstanceNorm, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(affine=True)`` computed as ``group_norm`` with one group per channel.

    Mean and (biased) variance per sample and channel over the spatial axes, then the per-channel
    affine transform: the same function and parameters, several times faster on the CPU, where
    ``instance_norm`` runs ``batch_norm`` on a (1, B*C, *S) view.

    ``statistics``: None (the instance norm), or a :class:`SharedStatistics` that supplies the
    mean and variance instead (tiled inference: every tile normalised with the image's).
    """


class InstanceNorm3d(_GroupNormInstanceNorm, nn.InstanceNorm3d):
    """3D counterpart of :class:`InstanceNorm2d`."""


class SharedStatistics:
    """The mean and variance of every instance norm of a network, measured once and then used for
    other inputs (docs/method.md, "Scale and tiles").

    A tile normalised with its own statistics sees a different network from the whole image's
    (the coloring of a near tie flips), so tiled inference first runs the coloring on a sample of
    the image, a batch of crops, in ``"record"`` mode: each norm takes the mean and variance per
    channel over the whole batch (all crops, all pixels) and keeps them, in the order the norms
    are called. Then, in ``"replay"`` mode, each tile's coloring (the same sequence of calls:
    image branch, then T steps) uses them in the same order; ``rewind`` before each tile.
    """

    def __init__(self) -> None:
        self.mode = "record"
        self.values: list[tuple[Tensor, Tensor]] = []
        self.index = 0

    def normalize(self, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        if self.mode == "record":
            dims = (0, *range(2, x.ndim))
            var, mean = torch.var_mean(x.detach().float(), dim=dims, unbiased=False)
            self.values.append((mean, var))
        else:
            if self.index >= len(self.values):
                raise RuntimeError("SharedStatistics: more norm calls than were recorded; "
                                   "rewind() before each coloring.")
            mean, var = self.values[self.index]
            self.index += 1
        # The same arithmetic in both modes (a near tie of the coloring must not flip), for
        # inference only: no gradient flows into the statistics.
        out = F.batch_norm(x.float(), mean, var, weight, bias, False, 0.0, eps)
        return out.to(x.dtype)

    def replay(self) -> SharedStatistics:
        """Switch to replaying the recorded statistics, from the first."""
        self.mode, self.index = "replay", 0
        return self

    def rewind(self) -> None:
        self.index = 0

    def attach(self, model: nn.Module) -> None:
        """Make every instance norm of ``model`` use these statistics."""
        for module in model.modules():
            if isinstance(module, _GroupNormInstanceNorm):
                module.statistics = self

    @staticmethod
    def detach(model: nn.Module) -> None:
        """Back to each input's own statistics."""
        for module in model.modules():
            if isinstance(module, _GroupNormInstanceNorm):
                module.statistics = None


@functools.cache
def onednn_bfloat16() -> bool:
    """Whether oneDNN can run bfloat16 convolutions on this CPU (it needs AVX-512 BW/VL/DQ or
    AVX-NE-CONVERT; on others ``mkldnn_convolution`` raises for bfloat16)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def _onednn_ready(x: Tensor, bfloat16: bool) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.ndim == 5
        and x.is_contiguous(memory_format=torch.channels_last_3d)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and (not bfloat16 or onednn_bfloat16())
    )


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that sends ``channels_last_3d`` CPU float32 (or bfloat16) input to oneDNN.

    PyTorch chooses its slow reference convolution (im2col + GEMM) for batch-1
    volumes whose first axes are small (N*C*D*H <= 20480), which are most layers of a 3D U-Net at
    inference; for larger batches it picks oneDNN itself (the same kernel as here, backward
    included). For contiguous (NCDHW) input, on any other device or dtype, or with ``onednn``
    False (``ColorRLNet.fast_layout``), the usual path runs.
    """

    onednn = True

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        autocast = torch.is_autocast_enabled("cpu") and \
            torch.get_autocast_dtype("cpu") == torch.bfloat16
        # bfloat16 goes to oneDNN only on CPUs whose oneDNN runs it; elsewhere ``F.conv3d``
        # (under autocast too) takes its own bfloat16 path.
        if (self.onednn and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and _onednn_ready(x, autocast or x.dtype == torch.bfloat16)):
            # Under bfloat16 autocast (train.precision) the convolution runs in bfloat16, as
            # ``F.conv3d`` would: ``mkldnn_convolution`` itself is not an autocast op.
            if autocast:
                x, weight = x.to(torch.bfloat16), weight.to(torch.bfloat16)
                bias = None if bias is None else bias.to(torch.bfloat16)
            if x.dtype == weight.dtype:
                out = torch.mkldnn_convolution(
                    x, weight, bias, self.padding, self.stride, self.dilation, self.groups
                )
                # A 1-channel input is contiguous in both layouts and oneDNN then answers NCDHW.
                return out.contiguous(memory_format=torch.channels_last_3d)
        return super()._conv_forward(x, weight, bias)


def use_fast_layout(
    model: nn.Module, device: torch.device | str | None = None, *, inference: bool = False
) -> nn.Module:
    """Put the weights of a ``ColorRLNet`` (any module with ``fast_layout`` and ``ndim``) on the
    CPU in the fast layout (in place; returned).

    3D: ``channels_last_3d``, for training and inference (with NCDHW weights oneDNN reorders
    them at every convolution and its backward).
    2D: ``channels_last`` with ``inference=True`` only (faster inference; training gains
    nothing from it, so 2D training keeps its plain NCHW path). The values do not change,
    only their memory order, so checkpoints, optimizers and DDP are unaffected. Anything else
    (other modules, devices, ``fast_layout = False``) is returned untouched.
    """
    if not getattr(model, "fast_layout", False):
        return model
    if model.ndim == 2 and not inference:
        return model
    param = next(model.parameters(), None)
    where = torch.device(device) if device is not None else (
        param.device if param is not None else torch.device("cpu"))
    if where.type == "cpu":
        fmt = torch.channels_last_3d if model.ndim == 3 else torch.channels_last
        for param in model.parameters():
            # 1-channel and 1x1 kernels have the same memory order in both layouts: left as
            # they are, their gradients keep matching them (DDP checks the strides).
            if (param.dim() == model.ndim + 2 and param.shape[1] > 1
                    and math.prod(param.shape[2:]) > 1):
                param.data = param.data.contiguous(memory_format=fmt)
    return model
