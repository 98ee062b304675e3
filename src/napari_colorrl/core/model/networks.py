"""Policy/value network of ColorRL: a (2D or 3D) residual U-Net with two input modules.

Layout::

    image (B, C, *S) --> image input module --.
                                               concat --> U-Net core --> 1x1 policy head (2 logits)
    steps (B, T, *S) --> step input module  --'                     \\-> 1x1 value head (1 value)

* Input modules: residual modules of four 3x3 conv layers (two residual blocks of two convs),
  one for the image channels and one for the T step channels (+1 / -1 / 0 per step).
* Core: residual conv blocks (InstanceNorm with affine parameters, ELU), max-pool downsampling,
  transposed-conv upsampling, optional additive attention gates on the skip connections
  (Oktay et al., Attention U-Net; the paper's 2D network).
* Position channels (``coordinates``, off by default; beyond the paper): the image branch also
  sees the position along each spatial axis, -1 to 1 over the input (``coordinate_channels``).
* Heads: 1x1 convs; the policy head starts with tiny weights so the first action probabilities
  are about 0.5, the value head starts near 0.

Inputs of any spatial size are accepted: they are padded (replicate) to a multiple of
``2 ** (depth - 1)`` (and to at least twice that, so the coarsest level keeps more than one pixel
for its InstanceNorm) and the outputs are cropped back.

Caching the image branch: during the T coloring steps only the step channels change, so
``feats = net.encode_image(image)`` can be computed once and passed as
``net(image, steps, image_features=feats)`` at every step; the result equals ``net(image, steps)``.
With autograd enabled the cached features are shared by the graphs of all steps: sum the losses of
the steps and call ``backward`` once (or use ``retain_graph=True``).

Speed: the instance norms and 3D convolutions come from ``fast_layers`` (the same functions and
parameters, faster on the CPU); ``fast_layers.use_fast_layout`` puts the weights in the fast layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ColorRLConfig
from .coloring_network import coordinate_channels
from .fast_layers import Conv3d, InstanceNorm2d, InstanceNorm3d

_CONV = {2: nn.Conv2d, 3: Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: InstanceNorm2d, 3: InstanceNorm3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _norm(ndim: int, channels: int) -> nn.Module:
    return _NORM[ndim](channels, affine=True)


class ResBlock(nn.Module):
    """Two 3x3 convs with InstanceNorm and ELU plus a (1x1-projected if needed) shortcut."""

    def __init__(self, ndim: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        conv = _CONV[ndim]
        self.conv1 = conv(in_ch, out_ch, 3, padding=1, bias=False)
        self.norm1 = _norm(ndim, out_ch)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = _norm(ndim, out_ch)
        self.shortcut: nn.Module = (
            nn.Identity() if in_ch == out_ch else conv(in_ch, out_ch, 1, bias=False)
        )
        self.act = nn.ELU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class InputModule(nn.Sequential):
    """Residual module of four 3x3 conv layers: two residual blocks, ``in_ch -> width``."""

    def __init__(self, ndim: int, in_ch: int, width: int) -> None:
        super().__init__(ResBlock(ndim, in_ch, width), ResBlock(ndim, width, width))


class AttentionGate(nn.Module):
    """Additive attention gate: ``skip * sigmoid(psi(ELU(W_x skip + W_g gate)))``.

    The gating signal is the upsampled decoder feature map, at the skip's resolution.
    """

    def __init__(self, ndim: int, skip_ch: int, gate_ch: int) -> None:
        super().__init__()
        conv = _CONV[ndim]
        inter = max(skip_ch // 2, 1)
        self.w_x = nn.Sequential(conv(skip_ch, inter, 1, bias=False), _norm(ndim, inter))
        self.w_g = nn.Sequential(conv(gate_ch, inter, 1, bias=False), _norm(ndim, inter))
        self.psi = conv(inter, 1, 1)
        self.act = nn.ELU(inplace=True)

    def forward(self, skip: Tensor, gate: Tensor) -> Tensor:
        attn = torch.sigmoid(self.psi(self.act(self.w_x(skip) + self.w_g(gate))))
        return skip * attn


class UpBlock(nn.Module):
    """Transposed-conv upsampling, optional attention on the skip, concat, residual block."""

    def __init__(self, ndim: int, in_ch: int, out_ch: int, attention: bool) -> None:
        super().__init__()
        self.up = _CONV_T[ndim](in_ch, out_ch, 2, stride=2)
        self.gate = AttentionGate(ndim, out_ch, out_ch) if attention else None
        self.block = ResBlock(ndim, 2 * out_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)
        if self.gate is not None:
            skip = self.gate(skip, up)
        return self.block(torch.cat([skip, up], dim=1))


class ColorRLNet(nn.Module):
    """Policy/value U-Net of ColorRL; see the module docstring for the layout.

    ndim: 2 or 3 spatial axes. image_channels: C. steps: T. features: widths of the U-Net levels
    from top to bottom (depth = len(features) >= 2). attention: gates on the skip connections.
    input_features: width of each input module. coordinates: position channels added to the
    image (``coordinate_channels``; docs/method.md, "Position channels").

    ``fast_layout`` (not saved; default True): on the CPU a 3D network runs in the
    ``channels_last_3d`` layout with oneDNN convolutions (inputs converted in ``forward``), a 2D
    network in ``channels_last`` when its weights are (``use_fast_layout(..., inference=True)``,
    as ``Segmenter`` does). Other devices, and ``fast_layout = False``, use the plain NC(D)HW
    path.
    """

    def __init__(
        self,
        ndim: int,
        image_channels: int,
        steps: int,
        features: Sequence[int],
        attention: bool,
        input_features: int,
        aux_heads: bool = False,
        coordinates: bool = False,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}.")
        features = tuple(int(f) for f in features)
        if len(features) < 2:
            raise ValueError(f"features needs at least two levels, got {features}.")
        self.ndim = ndim
        self.image_channels = int(image_channels)
        self.steps = int(steps)
        self.features = features
        self.attention = bool(attention)
        self.input_features = int(input_features)
        self.coordinates = bool(coordinates)

        image_in = self.image_channels + (ndim if self.coordinates else 0)
        self.image_input = InputModule(ndim, image_in, self.input_features)
        self.step_input = InputModule(ndim, self.steps, self.input_features)
        self.pool = _POOL[ndim](2)
        self.encoders = nn.ModuleList()
        in_ch = 2 * self.input_features
        for width in features:
            self.encoders.append(ResBlock(ndim, in_ch, width))
            in_ch = width
        self.decoders = nn.ModuleList(
            UpBlock(ndim, features[i + 1], features[i], self.attention)
            for i in reversed(range(len(features) - 1))
        )
        conv = _CONV[ndim]
        self.policy_head = conv(features[0], 2, 1)
        self.value_head = conv(features[0], 1, 1)
        for head in (self.policy_head, self.value_head):
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)
        # Auxiliary supervised heads (network.aux_heads, docs/method.md "Auxiliary supervision"):
        # logits of the foreground and of the boundaries of the labels, from the same decoder
        # features; trained alongside the policy, never used to color.
        self.aux_heads = bool(aux_heads)
        self.aux_head = conv(features[0], 2, 1) if self.aux_heads else None

    @property
    def fast_layout(self) -> bool:
        """channels_last_3d + oneDNN for 3D CPU inference (see the class docstring)."""
        return self.__dict__.get("_fast_layout", True)

    @fast_layout.setter
    def fast_layout(self, value: bool) -> None:
        self.__dict__["_fast_layout"] = bool(value)
        for module in self.modules():
            if isinstance(module, Conv3d):
                module.onednn = bool(value)

    # --- shapes ----------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of U-Net levels."""
        return len(self.features)

    @property
    def multiple(self) -> int:
        """Spatial sizes are padded to a multiple of this (``2 ** (depth - 1)``)."""
        return 2 ** (self.depth - 1)

    def padded_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """The size an input of spatial size ``spatial`` is padded to inside the network."""
        m = self.multiple
        return tuple(max(math.ceil(int(s) / m) * m, 2 * m) for s in spatial)

    def _layout(self, x: Tensor) -> Tensor:
        """``x`` in the layout this pass runs in (see ``fast_layout``)."""
        if not self.fast_layout or x.device.type != "cpu":
            return x
        if self.ndim == 3:
            return x.contiguous(memory_format=torch.channels_last_3d)
        # 2D: channels_last only pays with channels_last weights (``use_fast_layout``).
        weight = self.encoders[0].conv1.weight
        if not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _pad(self, x: Tensor) -> Tensor:
        spatial = x.shape[2:]
        target = self.padded_size(spatial)
        if tuple(spatial) == target:
            return self._layout(x)
        pad: list[int] = []
        for size, want in zip(reversed(spatial), reversed(target), strict=True):
            extra = want - size
            pad += [extra // 2, extra - extra // 2]
        return self._layout(F.pad(x, pad, mode="replicate"))

    def _crop(self, x: Tensor, spatial: Sequence[int]) -> Tensor:
        padded = x.shape[2:]
        if tuple(padded) == tuple(spatial):
            return x
        index: list[slice] = [slice(None), slice(None)]
        for size, have in zip(spatial, padded, strict=True):
            start = (have - size) // 2
            index.append(slice(start, start + size))
        return x[tuple(index)]

    def _check(self, x: Tensor, name: str, channels: int, what: str) -> None:
        if x.ndim != self.ndim + 2:
            raise ValueError(
                f"{name} must have shape (B, {channels}, {', '.join('S' * self.ndim)}) for this "
                f"{self.ndim}D network, got {tuple(x.shape)}."
            )
        if x.shape[1] != channels:
            raise ValueError(
                f"{name} has {x.shape[1]} channels but this network expects {channels} ({what}), "
                f"got shape {tuple(x.shape)}."
            )

    # --- forward ---------------------------------------------------------------------------
    def encode_image(self, image: Tensor) -> Tensor:
        """Image-branch features (padded), reusable across the T steps of one episode."""
        self._check(image, "image", self.image_channels, "normalization.channels")
        if self.coordinates:
            image = coordinate_channels(image)
        return self.image_input(self._pad(image))

    def forward(
        self, image: Tensor, steps: Tensor, image_features: Tensor | None = None,
        aux: bool = False,
    ):
        """Policy logits (B, 2, *S) and values (B, 1, *S); with ``aux`` (a network with
        ``aux_heads``) also the auxiliary logits (B, 2, *S): foreground, boundary.

        image: (B, C, *S) float in [0, 1]. steps: (B, T, *S) float in {-1, 0, +1}.
        image_features: optional output of ``encode_image(image)``; skips the image branch.
        """
        self._check(steps, "steps", self.steps, "one channel per coloring step T")
        spatial = tuple(steps.shape[2:])
        if image_features is None:
            if tuple(image.shape[2:]) != spatial or image.shape[0] != steps.shape[0]:
                raise ValueError(
                    f"image {tuple(image.shape)} and steps {tuple(steps.shape)} must share the "
                    f"batch size and the spatial size."
                )
            image_features = self.encode_image(image)
        expected = (steps.shape[0], self.input_features, *self.padded_size(spatial))
        if tuple(image_features.shape) != expected:
            raise ValueError(
                f"image_features has shape {tuple(image_features.shape)}, expected {expected}: "
                f"pass encode_image() of the same image."
            )
        x = torch.cat([image_features, self.step_input(self._pad(steps))], dim=1)
        skips: list[Tensor] = []
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = decoder(x, skip)
        # The 1x1 heads run in float32 even under bfloat16 autocast (train.precision): the
        # values enter the advantages, and their cost is negligible.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            logits = self._crop(self.policy_head(x), spatial)
            value = self._crop(self.value_head(x), spatial)
            if aux and self.aux_head is not None:
                return logits, value, self._crop(self.aux_head(x), spatial)
        return logits, value


def build_network(config: ColorRLConfig) -> ColorRLNet:
    """The network described by ``config`` (ndim, channels, steps T, ``config.network``)."""
    net = config.network
    return ColorRLNet(
        ndim=config.ndim,
        image_channels=config.normalization.channels,
        steps=config.steps,
        features=net.features,
        attention=net.attention,
        input_features=net.input_features,
        aux_heads=net.aux_heads,
        coordinates=net.coordinates,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(
    model: nn.Module, config: ColorRLConfig, input_size: Sequence[int] | None = None
) -> int:
    """FLOPs (2 x multiply-adds) of the conv and transposed-conv layers for one input (batch 1).

    input_size: spatial size, default ``config.input_size``. Counted with forward hooks on one
    dummy forward pass (image branch included); other layers (norms, activations) are ignored.
    """
    size = tuple(int(s) for s in (input_size or config.input_size))
    if len(size) != config.ndim:
        raise ValueError(f"input_size {size} must have {config.ndim} axes.")
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        kernel = math.prod(module.kernel_size)
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            macs = inputs[0].numel() * (module.out_channels // module.groups) * kernel
        else:
            macs = output.numel() * (module.in_channels // module.groups) * kernel
        total += 2 * macs

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.modules.conv._ConvNd))
    ]
    param = next(model.parameters())
    image = torch.zeros((1, config.normalization.channels, *size), device=param.device)
    steps = torch.zeros((1, config.steps, *size), device=param.device)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(image.to(param.dtype), steps.to(param.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)


def parameter_count(config: ColorRLConfig) -> int:
    """``count_parameters(build_network(config))``, computed from the config alone.

    Nothing is allocated, so a config asking for an absurd network (features [100000, 100000])
    can be refused before it is built. Mirrors the layer layout of ``ColorRLNet`` exactly.
    """
    ndim = int(config.ndim)
    k3, k2 = 3**ndim, 2**ndim
    net = config.network
    features = [int(f) for f in net.features]

    def conv(i: int, o: int, kernel: int, bias: bool) -> int:
        return i * o * kernel + (o if bias else 0)

    def block(i: int, o: int) -> int:
        shortcut = 0 if i == o else conv(i, o, 1, False)
        return conv(i, o, k3, False) + conv(o, o, k3, False) + 4 * o + shortcut

    def gate(skip: int, g: int) -> int:
        inter = max(skip // 2, 1)
        return conv(skip, inter, 1, False) + conv(g, inter, 1, False) + 4 * inter + conv(
            inter, 1, 1, True)

    width = int(net.input_features)
    total = sum(block(c, width) + block(width, width)
                for c in (int(config.normalization.channels), int(config.steps)))
    in_ch = 2 * width
    for f in features:
        total += block(in_ch, f)
        in_ch = f
    for i in range(len(features) - 1):
        big, small = features[i + 1], features[i]
        total += conv(big, small, k2, True) + block(2 * small, small)
        if net.attention:
            total += gate(small, small)
    return total + conv(features[0], 2, 1, True) + conv(features[0], 1, 1, True)
