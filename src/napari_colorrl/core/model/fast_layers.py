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

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(affine=True)`` computed as ``group_norm`` with one group per channel.

    Mean and (biased) variance per sample and channel over the spatial axes, then the per-channel
    affine transform: the same function and parameters, several times faster on the CPU, where
    ``instance_norm`` runs ``batch_norm`` on a (1, B*C, *S) view.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


class InstanceNorm3d(nn.InstanceNorm3d):
    """3D counterpart of :class:`InstanceNorm2d`."""

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def _onednn_ready(x: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.ndim == 5
        and x.is_contiguous(memory_format=torch.channels_last_3d)
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
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
        if (self.onednn and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and _onednn_ready(x)):
            # Under bfloat16 autocast (train.precision) the convolution runs in bfloat16, as
            # ``F.conv3d`` would: ``mkldnn_convolution`` itself is not an autocast op.
            if torch.is_autocast_enabled("cpu") and \
                    torch.get_autocast_dtype("cpu") == torch.bfloat16:
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
