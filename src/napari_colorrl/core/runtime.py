"""Where the work runs and whether it fits: torch devices by name, and memory checks before large
allocations.

Memory estimates are rough (within about a factor of two of the peak): they exist to stop a run
that cannot fit long before the machine starts swapping or the GPU runs out, not to budget
precisely.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Sequence

import torch

from .config import ColorRLConfig

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Device names usable on this machine, "auto" first."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an absent device raises ValueError."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if "mps" in available_devices():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise ValueError(
            f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}."
        )
    if base not in available_devices():
        raise ValueError(
            f"Device {name!r} is not available on this machine (available: "
            f"{', '.join(available_devices())}); use --device auto or cpu."
        )
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise ValueError(
                f"Device {name!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    return device


def release_memory(device: torch.device | str | None = None) -> None:
    """Give memory back after training or inference: collect garbage and, on CUDA, return the
    blocks torch's allocator keeps cached to the driver (so other programs can use them)."""
    gc.collect()
    kind = getattr(device, "type", str(device or "cuda").split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()

GIB = 1024**3


class MemoryCheckError(MemoryError):
    """The work asked for needs more memory than the device has free (the message says why)."""


def available_bytes(device: object = "cpu") -> int | None:
    """Free memory on ``device`` (a torch.device or its name) in bytes; None when unknown."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks cached by torch's allocator are free for this process too.
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if kind != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with napari, not with the core
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None


def _network_floats(config: ColorRLConfig, spatial: Sequence[int], backward: bool) -> float:
    """Floats alive at the peak of one network pass per pixel level, times the pixel count."""
    features = config.network.features
    multiple = 2 ** (len(features) - 1)
    padded = math.prod(max(math.ceil(s / multiple) * multiple, 2 * multiple) for s in spatial)
    per_block = 16 if backward else 5  # tensors kept for backward, or alive at once
    levels = sum(per_block * f / 2 ** (config.ndim * level) for level, f in enumerate(features))
    inputs = (8 if backward else 4) * config.network.input_features
    return padded * (levels + inputs + config.steps + config.normalization.channels)


def inference_bytes(
    config: ColorRLConfig, spatial: Sequence[int], channels: int = 1
) -> tuple[int, int]:
    """Peak (host, network) bytes to segment one image of spatial shape ``spatial``.

    Host: full-resolution arrays, i.e. the float32 copies of the image, T step maps, the color
    map and the connected components (int64). Network: one pass at the network's input size
    ('resize') or at the image's own size ('crop').
    """
    pixels = math.prod(int(s) for s in spatial)
    host = pixels * (8 * max(channels, config.normalization.channels) + config.steps + 30)
    net_shape = config.input_size if config.input_mode == "resize" else spatial
    return int(host), int(4 * _network_floats(config, net_shape, backward=False))


def tile_bytes(config: ColorRLConfig, tile: Sequence[int], read: Sequence[int],
               window: Sequence[int], channels: int = 1) -> tuple[int, int]:
    """Peak (host, network) bytes of one tile of tiled inference.

    tile: its network shape; read: the image window read for it; window: the image pixels it
    covers. Host: the window read (float32 copies, the anti-aliasing filter), the tile's input,
    its T step maps and color map at the window's size, its connected components (int64) and
    the output window (uint32). Network: one pass at the tile's shape.
    """
    read_px = math.prod(int(s) for s in read)
    window_px = math.prod(int(s) for s in window)
    tile_px = math.prod(int(s) for s in tile)
    c = max(channels, config.normalization.channels)
    host = read_px * 12 * c + tile_px * 4 * c + window_px * (config.steps + 30)
    return int(host), int(4 * _network_floats(config, tile, backward=False))


def check_tile_memory(config: ColorRLConfig, tile: Sequence[int], read: Sequence[int],
                      window: Sequence[int], channels: int, device: object, *, tiles: int,
                      results: int = 0, image: Sequence[int] = ()) -> None:
    """Raise MemoryCheckError before tiled inference whose tile cannot fit.

    results: bytes of the outputs kept in memory for the whole image (0 when they are written
    to a file); they are checked separately, with their own advice.
    """
    shape = " x ".join(map(str, tile))
    what = (f"Segmenting one {shape} tile (of {tiles}, at the network's scale)" if tiles > 1
            else f"Segmenting this image as one {shape} tile (at the network's scale)")
    advice = ("Segment it in smaller tiles (inference.tile_size: --tile-size, or the dock's "
              "tile field), or give a larger object size to segment at a coarser scale.")
    if results:
        size = " x ".join(map(str, image))
        check_memory(
            results, "cpu", f"Holding the results of this {size} image in memory (labels, "
            f"step maps and colors)",
            "Write the labels to a file instead, in tiles (colorrl predict --output "
            "labels.zarr or labels.tif), or segment a part of the image.")
    host, network = tile_bytes(config, tile, read, window, channels)
    on_cpu = getattr(device, "type", str(device).split(":")[0]) == "cpu"
    check_memory(host + network if on_cpu else host, "cpu", what, advice)
    if not on_cpu:
        check_memory(network, device, what, advice)


def training_bytes(config: ColorRLConfig) -> int:
    """Bytes of one training update: the graph of T steps for a batch of input-size crops."""
    per_episode = _network_floats(config, config.input_size, backward=True) * config.steps
    return int(4 * per_episode * config.train.batch_size)


def _size(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.0f} MiB"


def check_memory(needed: int, device: object, what: str, advice: str) -> None:
    """Raise MemoryCheckError when ``needed`` bytes exceed the free memory of ``device``."""
    free = available_bytes(device)
    if free is None or needed <= free:
        return
    raise MemoryCheckError(
        f"{what} needs about {_size(needed)} of memory on {device}, but only {_size(free)} "
        f"is free. {advice}"
    )


def check_inference_memory(
    config: ColorRLConfig, spatial: Sequence[int], channels: int, device: object
) -> None:
    """Raise MemoryCheckError before segmenting an image in one pass that cannot fit (the
    untiled path of validation; ``Segmenter.segment`` checks its tiles with
    ``check_tile_memory``)."""
    shape = " x ".join(map(str, spatial))
    advice = (
        "Segment it in tiles (Segmenter.segment, colorrl predict), a crop or a downscaled copy"
        + (", or use a model trained with input_mode 'resize'" if config.input_mode == "crop"
           else "")
        + "."
    )
    host, network = inference_bytes(config, spatial, channels)
    on_cpu = getattr(device, "type", str(device).split(":")[0]) == "cpu"
    what = f"Segmenting this {shape} image"
    check_memory(host + network if on_cpu else host, "cpu", what, advice)
    if not on_cpu:
        check_memory(network, device, what, advice)


def setup_bytes(config: ColorRLConfig, shapes: Sequence[Sequence[int]], channels: int) -> int:
    """Host bytes the training setup holds for samples of these spatial ``shapes``.

    Per sample, what the ``Environment`` keeps: the normalised image (float32, ``channels``) and
    int32 labels, at the input size in "resize" mode (plus the reward targets: ids, interiors and
    about one ring entry of 12 bytes per pixel and radius) or at the sample's size times
    ``input_scale`` in "crop" mode; plus the largest temporary of the automatic T and of
    resizing (about 24 bytes a pixel of the biggest map).
    """
    from .data.normalize import scaled_shape

    radii = len(config.reward.radii)
    largest = 0
    total = 0
    for shape in shapes:
        pixels = (math.prod(config.input_size) if config.input_mode == "resize"
                  else math.prod(scaled_shape(tuple(shape), config)))
        per_pixel = 4 * channels + 4 + (8 + 12 * radii if config.input_mode == "resize" else 0)
        total += per_pixel * pixels
        largest = max(largest, math.prod(config.input_size), math.prod(shape))
    return int(total + 24 * largest)


def check_setup_memory(config: ColorRLConfig, shapes: Sequence[Sequence[int]], channels: int,
                       device: object) -> None:
    """Raise MemoryCheckError before the training setup (automatic T, reward targets, resized
    images) or an update with even one coloring step would not fit."""
    size = " x ".join(map(str, config.input_size))
    check_memory(
        setup_bytes(config, shapes, channels), "cpu",
        f"Preparing {len(shapes)} training samples at input size {size} ({config.input_mode})",
        "Lower the input size, use fewer or smaller samples, or use input_mode 'crop'.",
    )
    check_memory(
        training_bytes(config.replace(steps=1)), device,
        f"Training with batch size {config.train.batch_size} on {size} inputs, network "
        f"{list(config.network.features)} (even with T = 1)",
        "Lower the batch size or the input size, or pick a smaller network.",
    )


def check_training_memory(config: ColorRLConfig, device: object) -> None:
    """Raise MemoryCheckError before training updates that cannot fit."""
    size = " x ".join(map(str, config.input_size))
    check_memory(
        training_bytes(config), device,
        f"Training with batch size {config.train.batch_size} on {size} inputs, T = "
        f"{config.steps}, network {list(config.network.features)}",
        "Lower the batch size or the input size, or pick a smaller network.",
    )
