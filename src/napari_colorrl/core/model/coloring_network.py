"""The ColorRL network and its T argmax coloring steps as one torch module, for other tools.

This file is the architecture source of the bioimage.io packages ``colorrl export`` writes: it is
copied into the package as it is, and tools such as bioimageio.core import it to rebuild the
network from the package's ``pytorch_state_dict`` weights; its TorchScript compilation is the
package's ``torchscript`` weights. So it imports nothing but torch. napari-colorrl's network
takes ``coordinate_channels`` from it (both add the same channels), and to read a package
napari-colorrl builds its own ``networks.ColorRLNet`` from the package's config.

``ColorRLColoring(ndim, image_channels, steps, features, attention, input_features, passes,
coordinates)`` has the layers of ``networks.ColorRLNet`` under the same names, so the
state_dict of a napari-colorrl checkpoint loads into it unchanged. One forward pass on a
normalised image (B, C, *S) in [0, 1] runs the first k = ``passes`` (0: all T) steps of
``method.coloring.run_coloring``: at step t every pixel takes the action argmax of the policy
logits (1 when logit 1 > logit 0), the step channel becomes +1 / -1 there (the channels of the
steps not taken stay 0, as in training), and after k steps the color is c = sum_t a_t 2^t. It
returns the color map (B, *S) int32 and the step maps (B, k, *S) uint8. k is the model's depth,
the number of steps chosen at training to make its instances (napari-colorrl's docs/method.md,
"Depth"). Like ``ColorRLNet`` it pads each input (replicate) to a multiple of 2^(levels - 1)
(levels = len(features)), at least twice that, and crops the policy back, at every step.
With ``coordinates`` the image branch also sees one channel per spatial axis, the position along
it from -1 to 1 over the input (``coordinate_channels``).
The test ``tests/core/model/test_bioimage.py`` checks that it gives the color map of
napari-colorrl's own inference on the same input.
"""

# typing.List/Tuple: TorchScript and the older Python/torch of other tools read them everywhere.
# ruff: noqa: UP006, UP035
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def coordinate_channels(image: Tensor) -> Tensor:
    """``image`` (B, C, *S) with one more channel per spatial axis: the position along that
    axis, from -1 at the first pixel to 1 at the last (CoordConv; napari-colorrl's
    docs/method.md, "Position channels")."""
    spatial: List[int] = [int(s) for s in image.shape[2:]]
    full: List[int] = [int(image.shape[0]), 1] + spatial
    channels: List[Tensor] = [image]
    for axis, size in enumerate(spatial):
        shape: List[int] = [1] * (len(spatial) + 2)
        shape[axis + 2] = size
        ramp = torch.linspace(-1.0, 1.0, size, dtype=image.dtype, device=image.device)
        channels.append(ramp.reshape(shape).expand(full))
    return torch.cat(channels, dim=1)


class _InstanceNorm(nn.Module):
    """Instance norm with affine parameters (``nn.InstanceNorm{2,3}d(affine=True)``'s keys),
    computed as ``group_norm`` with one group per channel, as napari-colorrl does."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.num_features = channels
        self.eps = 1e-5
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def _conv(ndim: int, i: int, o: int, kernel: int, padding: int = 0, bias: bool = True
          ) -> nn.Module:
    conv = nn.Conv2d if ndim == 2 else nn.Conv3d
    return conv(i, o, kernel, padding=padding, bias=bias)


class ResBlock(nn.Module):
    def __init__(self, ndim: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv(ndim, in_ch, out_ch, 3, 1, bias=False)
        self.norm1 = _InstanceNorm(out_ch)
        self.conv2 = _conv(ndim, out_ch, out_ch, 3, 1, bias=False)
        self.norm2 = _InstanceNorm(out_ch)
        self.shortcut = nn.Identity() if in_ch == out_ch else _conv(ndim, in_ch, out_ch, 1,
                                                                    bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.elu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.elu(out + self.shortcut(x))


class AttentionGate(nn.Module):
    def __init__(self, ndim: int, skip_ch: int, gate_ch: int) -> None:
        super().__init__()
        inter = max(skip_ch // 2, 1)
        self.w_x = nn.Sequential(_conv(ndim, skip_ch, inter, 1, bias=False), _InstanceNorm(inter))
        self.w_g = nn.Sequential(_conv(ndim, gate_ch, inter, 1, bias=False), _InstanceNorm(inter))
        self.psi = _conv(ndim, inter, 1, 1)

    def forward(self, skip: Tensor, gate: Tensor) -> Tensor:
        return skip * torch.sigmoid(self.psi(F.elu(self.w_x(skip) + self.w_g(gate))))


class _UpBlock(nn.Module):
    """Transposed-conv upsampling, (attention on the skip,) concat, residual block."""

    def __init__(self, ndim: int, in_ch: int, out_ch: int, attention: bool) -> None:
        super().__init__()
        conv_t = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.up = conv_t(in_ch, out_ch, 2, stride=2)
        if attention:
            self.gate = AttentionGate(ndim, out_ch, out_ch)
        self.block = ResBlock(ndim, 2 * out_ch, out_ch)


class _GatedUp(_UpBlock):
    def __init__(self, ndim: int, in_ch: int, out_ch: int) -> None:
        super().__init__(ndim, in_ch, out_ch, True)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)
        return self.block(torch.cat([self.gate(skip, up), up], dim=1))


class _PlainUp(_UpBlock):
    def __init__(self, ndim: int, in_ch: int, out_ch: int) -> None:
        super().__init__(ndim, in_ch, out_ch, False)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.block(torch.cat([skip, self.up(x)], dim=1))


class ColorRLColoring(nn.Module):
    """Policy network + its first k argmax coloring steps: ``colors, steps = module(image)``.

    image: (B, C, *S) float32 in [0, 1] (C = image_channels, 2 or 3 spatial axes = ndim).
    Returns colors (B, *S) int32 in 0 .. 2^k - 1 and steps (B, k, *S) uint8 in {0, 1}, with
    k = passes, or T = steps when passes is 0.
    """

    def __init__(self, ndim: int, image_channels: int, steps: int, features: List[int],
                 attention: bool, input_features: int, passes: int = 0,
                 coordinates: bool = False) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}.")
        features = [int(f) for f in features]
        if len(features) < 2:
            raise ValueError(f"features needs at least two levels, got {features}.")
        self.ndim = int(ndim)
        self.image_channels = int(image_channels)
        self.steps = int(steps)
        if not 0 <= int(passes) <= self.steps:
            raise ValueError(f"passes must be 0 (all steps) to steps = {steps}, got {passes}.")
        self.passes = int(passes) or self.steps
        self.multiple = 2 ** (len(features) - 1)
        width = int(input_features)
        self.coordinates = bool(coordinates)
        image_in = self.image_channels + (self.ndim if self.coordinates else 0)
        self.image_input = nn.Sequential(ResBlock(ndim, image_in, width),
                                         ResBlock(ndim, width, width))
        self.step_input = nn.Sequential(ResBlock(ndim, self.steps, width),
                                        ResBlock(ndim, width, width))
        self.pool = nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2)
        self.encoders = nn.ModuleList()
        in_ch = 2 * width
        for f in features:
            self.encoders.append(ResBlock(ndim, in_ch, f))
            in_ch = f
        up = _GatedUp if attention else _PlainUp
        self.decoders = nn.ModuleList(
            up(ndim, features[i + 1], features[i])
            for i in reversed(range(len(features) - 1)))
        self.policy_head = _conv(ndim, features[0], 2, 1)
        self.value_head = _conv(ndim, features[0], 1, 1)  # unused here; kept for the weights

    def _pad(self, x: Tensor) -> Tensor:
        m = self.multiple
        pad: List[int] = []
        for axis in range(x.dim() - 1, 1, -1):  # last axis first, as F.pad wants
            size = x.shape[axis]
            want = max((size + m - 1) // m * m, 2 * m)
            extra = want - size
            pad += [extra // 2, extra - extra // 2]
        if sum(pad) == 0:
            return x
        return F.pad(x, pad, mode="replicate")

    def _crop(self, x: Tensor, spatial: List[int]) -> Tensor:
        for i, size in enumerate(spatial):
            axis = i + 2
            start = (x.shape[axis] - size) // 2
            x = x.narrow(axis, start, size)
        return x

    def _policy(self, features: Tensor, channels: Tensor, spatial: List[int]) -> Tensor:
        x = torch.cat([features, self.step_input(self._pad(channels))], dim=1)
        skips: List[Tensor] = []
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        n = len(skips)
        for i, decoder in enumerate(self.decoders):
            x = decoder(x, skips[n - 2 - i])
        return self._crop(self.policy_head(x), spatial)

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        spatial: List[int] = [int(s) for s in image.shape[2:]]
        batch = image.shape[0]
        channels = torch.zeros([batch, self.steps] + spatial, dtype=image.dtype,
                               device=image.device)
        actions = torch.zeros([batch, self.passes] + spatial, dtype=torch.uint8,
                              device=image.device)
        colors = torch.zeros([batch] + spatial, dtype=torch.int32, device=image.device)
        source = coordinate_channels(image) if self.coordinates else image
        features = self.image_input(self._pad(source))
        bit = 1  # 2^t (an int: TorchScript's int ** int is a float)
        for t in range(self.passes):
            logits = self._policy(features, channels, spatial)
            action = logits[:, 1] > logits[:, 0]
            actions[:, t] = action.to(torch.uint8)
            channels[:, t] = action.to(image.dtype) * 2.0 - 1.0
            colors = colors + action.to(torch.int32) * bit
            bit = bit * 2
        return colors, actions
