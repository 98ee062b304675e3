"""Shared by the speed benchmarks (speed, scaling, profile_ops, precision): configs from the
recipes, the images and samples they run on (the first validation images of a data set when a
data folder is given, else synthetic ones), interleaved timing, conv FLOP counts and the fp32
matmul rate they are set against, Markdown tables.

The networks have random weights (seed 0): the work done does not depend on them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .recipes import load_recipe

DATA_HELP = ("folder holding the data sets by name (cvppp_a1, dsb2018_fluo, gonuclear3d, each "
             "with val/images and val/masks); their first validation images are used. Without "
             "it, or for a set not in it: synthetic images")


def speed_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The parser of a speed benchmark with the options they share: --data, --device, --threads
    (``apply_threads`` sets the last)."""
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help=DATA_HELP)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's default, all cores)")
    return parser


def apply_threads(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


# ------------------------------------------------------------------------------------------------
# configs, images and samples
# ------------------------------------------------------------------------------------------------
def speed_config(recipe: str, steps: int | None = None, size: int | None = None,
                 input_mode: str | None = None):
    """The ``ColorRLConfig`` of a recipe; ``steps`` sets T, ``input_mode`` the mode, ``size`` the
    network input of a 'resize' config (a 'crop' config runs at the image's size)."""
    from napari_colorrl.core.config import ColorRLConfig

    cfg = ColorRLConfig.from_dict(load_recipe(recipe))
    if steps is not None:
        cfg = cfg.replace(steps=int(steps))
    if input_mode is not None:
        cfg = cfg.replace(input_mode=input_mode)
    if size is not None and cfg.input_mode == "resize":
        cfg = cfg.replace(input_size=(int(size),) * cfg.ndim)
    return cfg


def _val_dir(data: Path | None, dataset: str) -> Path | None:
    folder = None if data is None else Path(data) / dataset / "val"
    return folder if folder is not None and (folder / "images").is_dir() else None


def synthetic_samples(ndim: int, shape: Sequence[int], count: int, n_objects: int) -> list:
    from napari_colorrl.core.data.files import Sample
    from napari_colorrl.core.data.synthetic import make_cells_2d, make_nuclei_3d

    make = make_cells_2d if ndim == 2 else make_nuclei_3d
    out = []
    for i in range(count):
        image, labels = make(shape=tuple(shape), n_objects=n_objects, seed=i)
        out.append(Sample(name=f"synthetic{i}", image=image, labels=labels))
    return out


def fit_shape(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Centre-crop or mirror-pad the leading (spatial) axes of ``image`` to ``shape``."""
    out = image
    for axis, want in enumerate(shape):
        have = out.shape[axis]
        if have > want:
            start = (have - want) // 2
            out = np.take(out, np.arange(start, start + want), axis=axis)
        elif have < want:
            widths = [(0, 0)] * out.ndim
            widths[axis] = ((want - have) // 2, want - have - (want - have) // 2)
            out = np.pad(out, widths, mode="symmetric")
    return np.ascontiguousarray(out)


def case_image(config, data: Path | None, dataset: str,
               size: int | None = None) -> tuple[np.ndarray, str]:
    """The image a case runs on and where it came from.

    'resize' configs: the first validation image as it is (the network sees it at its input
    size). 'crop' configs: that image centre-cropped or mirror-padded to ``size`` per axis (the
    network runs at the image's own size). Synthetic when the data set is not given.
    """
    from napari_colorrl.core.data.files import list_images, read_image

    ndim = config.ndim
    target = tuple(int(s) for s in ((size,) * ndim if size else config.input_size))
    folder = _val_dir(data, dataset)
    if folder is not None:
        image = read_image(list_images(folder / "images")[0])
        source = f"{dataset} val/images, first image {image.shape}"
    else:
        shape = target if config.input_mode == "crop" else tuple(config.input_size)
        n = max(4, int(20 * math.prod(shape) / 176**ndim)) if ndim == 2 else 16
        image = synthetic_samples(ndim, shape, 1, n)[0].image
        source = f"synthetic {'x'.join(map(str, shape))} (no {dataset} data given)"
    if config.input_mode == "crop" and tuple(image.shape[:ndim]) != target:
        image = fit_shape(image, target)
        source += f", fitted to {'x'.join(map(str, target))}"
    return image, source


def training_samples(config, data: Path | None, dataset: str, count: int) -> tuple[list, str]:
    """The first ``count`` validation pairs of the data set, else synthetic ones."""
    from napari_colorrl.core.data.files import find_split, list_pairs, load_pairs

    folder = _val_dir(data, dataset)
    if folder is not None:
        samples = load_pairs(list_pairs(*find_split(folder.parent, "val"))[:count])
        return samples, f"{dataset} val/, first {len(samples)} images"
    shape = tuple((3 * s) // 2 if config.input_mode == "crop" else s for s in config.input_size)
    n = 20 if config.ndim == 2 else 16
    return (synthetic_samples(config.ndim, shape, count, n),
            f"synthetic {'x'.join(map(str, shape))} (no {dataset} data given)")


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of each, in the order A B, B A, A B, ... after ``warmup``
    untimed rounds, so a change of machine load hits every call alike."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            start = time.perf_counter()
            calls[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def matmul_gflops(size: int = 2048, repeats: int = 7, device: str | torch.device = "cpu") -> float:
    """Median fp32 ``torch.mm`` GFLOP/s of two size x size matrices, this process's threads."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    times = interleaved({"mm": lambda: torch.mm(a, b)}, repeats, warmup=1, device=device)
    return 2 * size**3 / statistics.median(times["mm"]) / 1e9


def inference_flops(model: torch.nn.Module, config, spatial: Sequence[int]) -> int:
    """Conv FLOPs of one coloring at network size ``spatial``: the image branch once (it is
    cached) plus T passes of the rest (``count_flops`` counts one whole pass)."""
    from torch import nn

    from napari_colorrl.core.model.networks import count_flops

    class ImageBranch(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.image_input = net.image_input
            self._encode = net.encode_image

        def forward(self, image, steps):
            return self._encode(image)

    training = model.training
    whole = count_flops(model, config, spatial)
    image = count_flops(ImageBranch(model).train(training), config, spatial)
    model.train(training)
    return int(image + config.steps * (whole - image))


def random_model(config) -> torch.nn.Module:
    """The network of ``config`` with seed-0 random weights and a policy head of ordinary scale
    (std 1 instead of the training start's 1e-3), so that the coloring is not a near-tie
    everywhere; the work done is the same."""
    from napari_colorrl.core.model.networks import build_network

    torch.manual_seed(0)
    model = build_network(config)
    with torch.no_grad():
        model.policy_head.weight.normal_(0.0, 1.0)
    return model


def segmenter_for(config, device: str | torch.device = "cpu"):
    from napari_colorrl.core.inference import Segmenter

    return Segmenter(random_model(config), config, device=str(device))


def segment_call(segmenter, image: np.ndarray, stages: list | None = None) -> Callable[[], None]:
    """A zero-argument call of ``segmenter.segment(image)``; appends (network s, total s) to
    ``stages`` (network: the T-step coloring loop, ``inference.run_coloring``)."""
    from napari_colorrl.core import inference

    def run():
        network = 0.0
        real = inference.run_coloring

        def timed(*args, **kwargs):
            nonlocal network
            begin = time.perf_counter()
            result = real(*args, **kwargs)
            network += time.perf_counter() - begin
            return result

        start = time.perf_counter()
        inference.run_coloring = timed
        try:
            segmenter.segment(image)
        finally:
            inference.run_coloring = real
        sync(segmenter.device)
        if stages is not None:
            stages.append((network, time.perf_counter() - start))
    return run


def time_inference(config, image: np.ndarray, repeats: int, warmup: int = 1,
                   device: str | torch.device = "cpu") -> dict:
    """``Segmenter.segment`` of one image, ``repeats`` timed calls after ``warmup``: median ``ms``
    (normalisation and post-processing included), ``network_ms`` (the coloring loop),
    ``other_ms`` (the rest), ``gflops`` and ``network_gflops`` (counted conv FLOPs over those
    times), ``flops``, ``steps``, ``network_size`` and ``image_shape``."""
    from napari_colorrl.core.data.normalize import split_channels

    shape = tuple(split_channels(image, config.ndim)[0].shape[1:])
    network = tuple(config.input_size) if config.input_mode == "resize" else shape
    segmenter = segmenter_for(config, device)
    stages: list = []
    times = interleaved({"segment": segment_call(segmenter, image, stages)}, repeats, warmup,
                        device)["segment"]
    stages = stages[warmup:]
    flops = inference_flops(segmenter.model, config, network)
    ms = statistics.median(times) * 1e3
    net_ms = statistics.median(s[0] for s in stages) * 1e3
    return {"ms": ms, "network_ms": net_ms,
            "other_ms": statistics.median(s[1] - s[0] for s in stages) * 1e3,
            "gflops": flops / ms / 1e6, "network_gflops": flops / net_ms / 1e6, "flops": flops,
            "steps": config.steps, "network_size": network, "image_shape": tuple(image.shape)}


def training_update(config, samples: Sequence, device: str | torch.device = "cpu",
                    model: torch.nn.Module | None = None) -> Callable[[], object]:
    """A zero-argument call of one training update (``core.training.rollout.run_update``,
    environment reset included) of a fresh copy of ``model`` (default: seed-0 weights) in the
    fast layout, as the trainer runs it; it returns the update's ``RolloutStats``."""
    from napari_colorrl.core.model.fast_layers import use_fast_layout
    from napari_colorrl.core.model.networks import build_network
    from napari_colorrl.core.training.environment import Environment
    from napari_colorrl.core.training.rollout import run_update

    device = torch.device(device)
    if model is None:
        torch.manual_seed(0)
        model = build_network(config)
    model = use_fast_layout(copy.deepcopy(model).to(device), device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr,
                                 amsgrad=config.train.amsgrad)
    env = Environment(samples, config, device, np.random.default_rng(0))

    def update():
        episode = env.reset(config.train.batch_size)
        return run_update(model, optimizer, episode, config,
                          entropy_coef=config.train.entropy_coef)
    return update


def time_training(configs: dict, samples: Sequence, updates: int, warmup: int = 1,
                  device: str | torch.device = "cpu") -> dict[str, dict]:
    """Training updates of each config (same initial weights, each its own optimizer and
    environment), interleaved. Per config: median ``seconds`` per update, ``updates_per_s``,
    ``episodes_per_s``, the shares of rewards, environment and network over the timed updates
    (the trainer's own timers), ``reward_ms`` and whether every loss was finite."""
    from napari_colorrl.core.model.networks import build_network

    torch.manual_seed(0)
    start = build_network(next(iter(configs.values())))
    stats: dict[str, list] = {name: [] for name in configs}
    calls = {}
    for name, config in configs.items():
        update = training_update(config, samples, device, start)
        calls[name] = lambda update=update, name=name: stats[name].append(update())
    interleaved(calls, updates, warmup, device)
    out = {}
    for name, config in configs.items():
        timed = stats[name][warmup:]
        seconds = statistics.median(s.seconds for s in timed)
        total = sum(s.seconds for s in timed)
        out[name] = {
            "seconds": seconds, "updates_per_s": 1 / seconds,
            "episodes_per_s": config.train.batch_size / seconds,
            "reward_share": sum(s.reward_seconds for s in timed) / total,
            "environment_share": sum(s.environment_seconds for s in timed) / total,
            "network_share": sum(s.network_seconds for s in timed) / total,
            "reward_ms": 1e3 * statistics.median(s.reward_seconds for s in timed),
            "finite": all(math.isfinite(s.loss) for s in stats[name]),
        }
    return out


# ------------------------------------------------------------------------------------------------
# printing
# ------------------------------------------------------------------------------------------------
def fmt(value, spec: str = ".1f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def size_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def dump_json(path: Path | None, data: dict) -> None:
    """Write all numbers to ``path`` (when given)."""
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=1, default=str))
