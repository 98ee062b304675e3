"""Choosing a torch device by name, with a clear message when it is not there."""

from __future__ import annotations

import torch

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
    import gc

    gc.collect()
    kind = getattr(device, "type", str(device or "cuda").split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
