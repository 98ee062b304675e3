"""Speed of ColorRL on this machine: inference and training throughput, share of the machine's
peak, scaling with image size and T, profiles, and the gain over the code before the speed work.

Everything is measured in this one run, variants interleaved (before, after, after, before, ...)
and summarised by medians, so the before/after ratios hold on a busy machine too:

1. Inference per image including post-processing (``Segmenter.segment``): CVPPP (176x176
   network input, T = 6), DSB (256x256, T = 5), a 3D 96^3 volume (T = 5). Median ms, images/s,
   peak memory (CPU: the increase of the peak RSS, ``ru_maxrss``, over the RSS before the call,
   in a fresh process; CUDA: ``torch.cuda.max_memory_allocated``), achieved GFLOP/s (the conv
   FLOPs that run: the image branch once plus T step passes) against the fp32 matmul GFLOP/s
   measured here with the same threads.
2. Training: updates/s and episodes/s (2D CVPPP config, batch 4; 3D gonuclear3d config, 64^3
   crops, batch 2) and the share of an update spent in rewards, environment and network; a check
   that rewards take < 15% of an update at 176x176 with 20 objects.
3. Scaling: inference time against image size (network input = image size) and against T; plots
   to docs/images/speed-size.png and docs/images/speed-steps.png.
4. torch.profiler top operators of one inference and one training update.

"Before" is the code as it was before the speed work, rebuilt here: the network with PyTorch's
``InstanceNorm`` and plain NC(D)HW layout and convolutions (``plain_model``), the coloring loop
under ``no_grad`` with int64 colors, the open-mesh nearest resize and the int64 color sum
(``segment_before``). Random-init weights (seed 0): the work done does not depend on them.

    python benchmarks/bench_speed.py                  # full run: about 5-6 minutes on 2 idle cores
    python benchmarks/bench_speed.py --quick --no-doc # about 2-3 minutes, prints only

``time_inference(config, size, steps, repeats)`` is importable for comparison scripts.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, SHARED_DATA, command, machine, stamp, write_section  # noqa: E402

CONFIGS = ROOT / "benchmarks" / "configs"
IMAGES = ROOT / "docs" / "images"
SECTION = "speed"
REWARD_SHARE_BAR = 0.15

#: The three inference cases of the issue: (name, config, data set, network size, T).
INFERENCE_CASES = (
    ("CVPPP 2D", "cvppp_fast", "cvppp_a1", 176, 6),
    ("DSB 2D", "dsb_fast", "dsb2018_fluo", 256, 5),
    ("GoNuclear 3D", "gonuclear3d", "gonuclear3d", 96, 5),
)


# ------------------------------------------------------------------------------------------------
# configs and data
# ------------------------------------------------------------------------------------------------
def load_config(config, steps: int | None = None, size: int | None = None,
                input_mode: str | None = None):
    """A ``ColorRLConfig`` from a config object, a JSON path or a name in benchmarks/configs,
    built as ``colorrl train`` builds it (defaults for its ndim, then the file). ``steps`` sets T;
    ``size`` sets the network input of a 'resize' config; ``input_mode`` overrides the mode."""
    from napari_colorrl.core.config import ColorRLConfig
    from napari_colorrl.core.training.setup import TrainingRequest, build_config

    if isinstance(config, ColorRLConfig):
        cfg = config
    else:
        path = Path(config)
        if not path.is_file() and (CONFIGS / f"{config}.json").is_file():
            path = CONFIGS / f"{config}.json"
        ndim = int(json.loads(path.read_text()).get("ndim", 2))
        cfg = build_config(TrainingRequest(config_file=path), ndim)
    if steps is not None:
        cfg = cfg.replace(steps=int(steps))
    if input_mode is not None:
        cfg = cfg.replace(input_mode=input_mode)
    if size is not None and cfg.input_mode == "resize":
        cfg = cfg.replace(input_size=(int(size),) * cfg.ndim)
    return cfg


def _data_dir(dataset: str | None, split: str = "val") -> Path | None:
    if not dataset:
        return None
    folder = SHARED_DATA / dataset / split
    return folder if (folder / "images").is_dir() else None


def real_images(dataset: str | None, count: int = 1) -> list[np.ndarray]:
    """The first ``count`` images of ``../shared/data/<dataset>/val/images`` (none if absent)."""
    from napari_colorrl.core.data.files import list_images, read_image

    folder = _data_dir(dataset)
    if folder is None:
        return []
    return [read_image(p) for p in list_images(folder / "images")[:count]]


def real_samples(dataset: str | None, count: int) -> list:
    """The first ``count`` image/label pairs of the data set's val/ split (none if absent)."""
    from napari_colorrl.core.data.files import find_split, list_pairs, load_pairs

    folder = _data_dir(dataset)
    if folder is None:
        return []
    return load_pairs(list_pairs(*find_split(folder.parent, "val"))[:count])


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


def case_image(config, dataset: str | None, size: int | None = None) -> tuple[np.ndarray, str]:
    """The image a case runs on and where it came from.

    'resize' configs: the first real validation image as it is (the network sees it at its
    input size). 'crop' configs: that image centre-cropped or mirror-padded to ``size`` per axis
    (the network runs at the image's own size). Synthetic when the data is absent.
    """
    ndim = config.ndim
    target = tuple(int(s) for s in ((size,) * ndim if size else config.input_size))
    images = real_images(dataset, 1)
    if images:
        image, source = images[0], f"{dataset} val/images, first image {images[0].shape}"
    else:
        make_shape = target if config.input_mode == "crop" else tuple(config.input_size)
        n = max(4, int(20 * math.prod(make_shape) / 176**ndim)) if ndim == 2 else 16
        image = synthetic_samples(ndim, make_shape, 1, n)[0].image
        why = f"no {dataset} data found" if dataset else "no data set given"
        source = f"synthetic {'x'.join(map(str, make_shape))} ({why})"
    if config.input_mode == "crop" and tuple(image.shape[:ndim]) != target:
        image = fit_shape(image, target)
        source += f", fitted to {'x'.join(map(str, target))}"
    return image, source


# ------------------------------------------------------------------------------------------------
# "before": the code as it was before the speed work
# ------------------------------------------------------------------------------------------------
def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with PyTorch's ``InstanceNorm`` (instead of group_norm) and plain
    NCDHW 3D convolutions (no channels_last_3d / oneDNN inference path): the network as it was."""
    from napari_colorrl.core.model.fast_layers import stock_copy

    return stock_copy(model)


def _colors_before(steps: np.ndarray) -> np.ndarray:
    from napari_colorrl.core.method.coloring import color_dtype

    weights = (2 ** np.arange(steps.shape[0], dtype=np.int64)).reshape(
        (-1,) + (1,) * (steps.ndim - 1))
    return (steps.astype(np.int64) * weights).sum(0).astype(color_dtype(steps.shape[0]))


def _resize_nearest_before(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if tuple(array.shape) == tuple(shape):
        return array
    index = tuple(np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
                  for n, m in zip(shape, array.shape))
    return array[np.ix_(*index)]


@torch.no_grad()
def _run_coloring_before(policy, image: torch.Tensor, steps: int) -> np.ndarray:
    from napari_colorrl.core.method.coloring import step_value

    batch, spatial = image.shape[0], image.shape[2:]
    channels = torch.zeros((batch, steps, *spatial), dtype=image.dtype, device=image.device)
    actions = torch.zeros((batch, steps, *spatial), dtype=torch.uint8, device=image.device)
    cache = policy.encode_image(image)
    for t in range(steps):
        logits = policy(image, channels, image_features=cache)[0]
        action = logits[:, 1] > logits[:, 0]
        actions[:, t] = action
        channels[:, t] = step_value(action)
    steps_np = actions.cpu().numpy()
    _colors_before(np.moveaxis(steps_np, 1, 0))  # computed (and unused by segment) as before
    return steps_np


def segment_before(segmenter, image: np.ndarray, timer: dict | None = None):
    """``Segmenter.segment`` as it was: (steps, colors, instances). ``timer["network"]``
    receives the seconds of the coloring loop."""
    from skimage.measure import label as label_regions

    from napari_colorrl.core.method.postprocess import label_dtype

    config = segmenter.config
    data, shape = segmenter.network_input(image)
    tensor = torch.from_numpy(data)[None].to(segmenter.device)
    start = time.perf_counter()
    steps = _run_coloring_before(segmenter.model, tensor, config.steps)[0]
    if timer is not None:
        timer["network"] = time.perf_counter() - start
    steps = _resize_nearest_before(steps, (steps.shape[0], *shape))
    colors = _colors_before(steps)
    components = label_regions(colors, background=0,
                               connectivity=config.connectivity or colors.ndim)
    sizes = np.bincount(components.ravel())
    keep = sizes >= max(int(config.min_size), 1)
    keep[0] = False
    new_ids = np.zeros(sizes.shape[0], dtype=np.int64)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1)
    instances = new_ids[components].astype(label_dtype(int(keep.sum())))
    return steps, colors, instances


# ------------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------------
class Progress:
    """One tqdm bar over all timed runs of the benchmark (a no-op bar when tqdm is missing)."""

    def __init__(self, total: int, disable: bool = False):
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", disable=disable, dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            self.bar = None

    def stage(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_NULL_PROGRESS = Progress(0, disable=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu", progress: Progress = _NULL_PROGRESS
                ) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of each variant, in the order A B, B A, A B, ... after
    ``warmup`` untimed rounds, so a change of machine load hits every variant alike."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in variants.values():
            fn()
            progress.step()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            _sync(device)
            start = time.perf_counter()
            variants[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            progress.step()
    return times


_PEAK: dict[tuple, float] = {}


def matmul_gflops(size: int = 2048, repeats: int = 7, device: str | torch.device = "cpu") -> float:
    """Median fp32 ``torch.mm`` GFLOP/s of two size x size matrices, this process's threads."""
    device = torch.device(device)
    key = (size, str(device), torch.get_num_threads())
    if key not in _PEAK:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        torch.mm(a, b)
        times = interleaved({"mm": lambda: torch.mm(a, b)}, repeats, warmup=1, device=device)
        _PEAK[key] = 2 * size**3 / statistics.median(times["mm"]) / 1e9
    return _PEAK[key]


_FLOPS: dict[tuple, int] = {}


def inference_flops(model: torch.nn.Module, config, spatial: Sequence[int]) -> int:
    """Conv FLOPs of one coloring at network size ``spatial``: the image branch once (it is
    cached) plus T passes of the rest (``core.networks.count_flops`` counts one whole pass)."""
    from torch import nn

    from napari_colorrl.core.model.networks import count_flops

    key = (json.dumps(config.to_dict(), sort_keys=True, default=str), tuple(spatial))
    if key in _FLOPS:
        return _FLOPS[key]

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
    _FLOPS[key] = int(image + config.steps * (whole - image))
    return _FLOPS[key]


def _current_rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def random_model(config) -> torch.nn.Module:
    """The network of ``config`` with seed-0 random weights and a policy head of ordinary scale
    (std 1 instead of the training start's 1e-3), so that argmax decisions are not near-ties and
    "before" and "after" can be compared pixel for pixel; the work done is the same."""
    from napari_colorrl.core.model.networks import build_network

    torch.manual_seed(0)
    model = build_network(config)
    with torch.no_grad():
        model.policy_head.weight.normal_(0.0, 1.0)
    return model


def _build(config, device: torch.device, optimized: bool):
    from napari_colorrl.core.inference import Segmenter

    model = random_model(config)
    return Segmenter(model if optimized else plain_model(model), config, device=str(device))


def _segment_fn(segmenter, image, optimized: bool, stages: list | None = None,
                last: dict | None = None):
    """A zero-argument call of one segmentation returning (steps, colors, instances); appends
    (network s, total s) to ``stages`` (network: the T-step coloring loop, ``run_coloring``)
    and keeps the result in ``last["out"]``."""
    from napari_colorrl.core import inference

    def run():
        timer = {"network": 0.0}
        start = time.perf_counter()
        if optimized:
            real = inference.run_coloring

            def timed(*args, **kwargs):
                begin = time.perf_counter()
                result = real(*args, **kwargs)
                timer["network"] += time.perf_counter() - begin
                return result

            inference.run_coloring = timed
            try:
                seg = segmenter.segment(image)
            finally:
                inference.run_coloring = real
            out = (seg.steps, seg.colors, seg.instances)
        else:
            out = segment_before(segmenter, image, timer)
        _sync(segmenter.device)
        if stages is not None:
            stages.append((timer["network"], time.perf_counter() - start))
        if last is not None:
            last["out"] = out
        return out
    return run


def peak_memory_mb(config, image: np.ndarray, device: str | torch.device = "cpu",
                   optimized: bool = True, threads: int | None = None) -> tuple[float, str]:
    """Peak memory of one ``segment`` call and how it was measured.

    CPU: in a fresh Python process (this script with ``--memory-worker``), the peak RSS
    (``ru_maxrss``) after the call minus the RSS just before it (model built, image loaded).
    CUDA: ``torch.cuda.max_memory_allocated`` over the call, in this process.
    """
    device = torch.device(device)
    if device.type == "cuda":
        segmenter = _build(config, device, optimized)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _segment_fn(segmenter, image, optimized)()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return peak / 2**20, "CUDA max_memory_allocated over the call"
    with tempfile.TemporaryDirectory(prefix="colorrl-speed-") as tmp:
        spec = Path(tmp) / "spec.json"
        np.save(Path(tmp) / "image.npy", image)
        spec.write_text(json.dumps({
            "config": config.to_dict(), "image": str(Path(tmp) / "image.npy"),
            "optimized": optimized, "threads": threads or torch.get_num_threads()}, default=str))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-worker",
                               str(spec)], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"memory worker failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["peak_mb"], "peak RSS increase over the call (ru_maxrss, fresh process)"


def _memory_worker(spec_path: str) -> int:
    from napari_colorrl.core.config import ColorRLConfig

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))
    config = ColorRLConfig.from_dict(spec["config"])
    image = np.load(spec["image"])
    segmenter = _build(config, torch.device("cpu"), spec["optimized"])
    gc.collect()
    base = _current_rss()
    _segment_fn(segmenter, image, spec["optimized"])()
    peak = max(_maxrss_bytes() - base, 0)
    print(json.dumps({"peak_mb": peak / 2**20, "base_mb": base / 2**20}))
    return 0


def _result(config, image, source, times, stages, flops, peak_gflops, peak_mb, memory_how,
            device) -> dict:
    ms = statistics.median(times) * 1e3
    net_ms = statistics.median(s[0] for s in stages) * 1e3 if stages else float("nan")
    other_ms = statistics.median(s[1] - s[0] for s in stages) * 1e3 if stages else float("nan")
    gflops = flops / (ms / 1e3) / 1e9
    return {
        "ms": ms, "images_per_s": 1e3 / ms, "peak_mb": peak_mb, "memory_method": memory_how,
        "gflops": gflops, "percent_of_peak": 100 * gflops / peak_gflops,
        "network_ms": net_ms, "other_ms": other_ms,
        "network_gflops": flops / (net_ms / 1e3) / 1e9,
        "network_percent_of_peak": 100 * flops / (net_ms / 1e3) / 1e9 / peak_gflops,
        "flops_per_image": flops, "peak_gflops": peak_gflops, "times_ms": [t * 1e3 for t in times],
        "steps": config.steps, "network_size": None, "image_shape": tuple(image.shape),
        "source": source, "device": str(device), "threads": torch.get_num_threads(),
    }


def _rescale_peak(res: dict, peak_gflops: float) -> None:
    res["peak_gflops"] = peak_gflops
    res["percent_of_peak"] = 100 * res["gflops"] / peak_gflops
    res["network_percent_of_peak"] = 100 * res["network_gflops"] / peak_gflops


def compare_inference(config, size: int | None = None, steps: int | None = None,
                      repeats: int = 5, *, dataset: str | None = None,
                      image: np.ndarray | None = None, variants: Sequence[str] = ("after",),
                      warmup: int = 1, memory: bool = True, device: str = "cpu",
                      progress: Progress = _NULL_PROGRESS) -> dict[str, dict]:
    """Time ``Segmenter.segment`` ("after") and/or the code before the speed work ("before"),
    interleaved in this process; one dict per variant (see ``time_inference``), and for two
    variants whether their instances are identical."""
    from napari_colorrl.core.data.normalize import split_channels

    device = torch.device(device)
    config = load_config(config, steps=steps, size=size)
    source = "given array"
    if image is None:
        image, source = case_image(config, dataset, size)
    shape = tuple(split_channels(image, config.ndim)[0].shape[1:])
    network = tuple(config.input_size) if config.input_mode == "resize" else shape
    segmenters = {v: _build(config, device, v == "after") for v in variants}
    stages: dict[str, list] = {v: [] for v in variants}
    last: dict[str, dict] = {v: {} for v in variants}
    calls = {v: _segment_fn(segmenters[v], image, v == "after", stages[v], last[v])
             for v in variants}
    times = interleaved(calls, repeats, warmup, device, progress)
    flops = inference_flops(segmenters[variants[0]].model, config, network)
    peak = matmul_gflops(device=device)
    results = {}
    for v in variants:
        peak_mb, how = (None, "not measured")
        if memory:
            peak_mb, how = peak_memory_mb(config, image, device, v == "after")
            progress.step()
        res = _result(config, image, source, times[v], stages[v][warmup:], flops, peak, peak_mb,
                      how, device)
        res["network_size"] = network
        results[v] = res
    if len(variants) == 2:
        a, b = (last[v]["out"] for v in variants)
        results["same_steps"] = bool(np.array_equal(a[0], b[0]))
        results["steps_differing"] = int(np.count_nonzero(a[0] != b[0]))
        results["steps_total"] = int(a[0].size)
        results["same_instances"] = bool(np.array_equal(a[2], b[2]))
    return results


def time_inference(config, size: int | None = None, steps: int | None = None,
                   repeats: int = 5, *, dataset: str | None = None,
                   image: np.ndarray | None = None, warmup: int = 1, memory: bool = True,
                   device: str = "cpu", optimized: bool = True) -> dict:
    """Inference speed of ColorRL on one image, for comparison scripts.

    config: a ``ColorRLConfig``, a JSON path or a name in benchmarks/configs ("cvppp_fast").
    size: network input size of a 'resize' config, or the image size of a 'crop' config (the
    image is then cropped/mirror-padded to it). steps: T (default: the config's). image: the
    image to segment (default: the first image of ``../shared/data/<dataset>/val/images``, else
    synthetic). optimized=False times the code before the speed work.

    Returns a dict: ``ms`` (median per image, ``Segmenter.segment`` including normalisation and
    post-processing), ``images_per_s``, ``peak_mb`` and ``memory_method``, ``gflops`` (counted
    conv FLOPs per image / time) and ``percent_of_peak`` (of ``peak_gflops``, fp32 matmul
    measured here), ``network_ms`` (the T-step coloring loop, ``run_coloring``) and
    ``other_ms`` (the rest: checks, normalisation, resizes, colors, connected components),
    ``network_gflops`` / ``network_percent_of_peak`` (FLOPs over ``network_ms``),
    ``flops_per_image``, ``times_ms``, ``steps``, ``network_size``, ``image_shape``, ``source``,
    ``device``, ``threads``.
    """
    variant = "after" if optimized else "before"
    return compare_inference(config, size, steps, repeats, dataset=dataset, image=image,
                             variants=(variant,), warmup=warmup, memory=memory,
                             device=device)[variant]


def _training_env(config, samples, device, seed: int = 0):
    from napari_colorrl.core.training.environment import Environment

    return Environment(samples, config, device, np.random.default_rng(seed))


def compare_training(config, samples: Sequence, updates: int, warmup: int = 1, *,
                     variants: Sequence[str] = ("before", "after"), device: str = "cpu",
                     configs: dict | None = None, profile: bool = False,
                     progress: Progress = _NULL_PROGRESS) -> dict:
    """Updates of ``core.rollout.run_update`` per variant, interleaved (each with its own copy of
    the same initial weights, optimizer and environment). "before" is the plain network; every
    other variant the current one (fast layout), trained with ``configs[variant]`` when given
    (else ``config``), so the same loop compares code paths or settings such as precision.
    Per variant: median seconds per update (environment reset included), updates/s, episodes/s,
    the shares of rewards, environment and network over the timed updates, and whether every
    loss was finite."""
    from napari_colorrl.core.model.fast_layers import use_fast_layout
    from napari_colorrl.core.model.networks import build_network
    from napari_colorrl.core.training.rollout import run_update

    device = torch.device(device)
    configs = {v: (configs or {}).get(v, config) for v in variants}
    torch.manual_seed(0)
    base = build_network(config).to(device)
    runs = {}
    for v in variants:
        # As the trainer does: the current code converts a 3D network's weights to
        # channels_last_3d on the CPU.
        model = (plain_model(base) if v == "before"
                 else use_fast_layout(copy.deepcopy(base), device))
        optimizer = torch.optim.Adam(model.parameters(), lr=configs[v].train.lr,
                                     amsgrad=configs[v].train.amsgrad)
        runs[v] = (model, optimizer, _training_env(configs[v], samples, device))
    stats: dict[str, list] = {v: [] for v in variants}

    def update(v):
        model, optimizer, env = runs[v]
        cfg = configs[v]
        episode = env.reset(cfg.train.batch_size)
        stats[v].append(run_update(model, optimizer, episode, cfg,
                                   entropy_coef=cfg.train.entropy_coef))

    interleaved({v: (lambda v=v: update(v)) for v in variants}, updates, warmup, device,
                progress)
    out: dict = {}
    for v in variants:
        timed = stats[v][warmup:]
        seconds = statistics.median(s.seconds for s in timed)
        total = sum(s.seconds for s in timed)
        out[v] = {
            "seconds": seconds, "updates_per_s": 1 / seconds,
            "episodes_per_s": config.train.batch_size / seconds,
            "reward_share": sum(s.reward_seconds for s in timed) / total,
            "environment_share": sum(s.environment_seconds for s in timed) / total,
            "network_share": sum(s.network_seconds for s in timed) / total,
            "reward_ms": 1e3 * statistics.median(s.reward_seconds for s in timed),
            "updates": len(timed),
            "finite": all(math.isfinite(s.loss) for s in stats[v]),
        }
    if profile:
        v = "after" if "after" in runs else variants[0]
        out["profile"] = profile_top(lambda: update(v), device=device)
        progress.step()
    return out


def training_samples(config, dataset: str | None, count: int) -> tuple[list, str]:
    samples = real_samples(dataset, count)
    if samples:
        return samples, f"{dataset} val/, first {len(samples)} images"
    shape = tuple((3 * s) // 2 if config.input_mode == "crop" else s for s in config.input_size)
    n = 20 if config.ndim == 2 else 16
    why = f"no {dataset} data found" if dataset else "no data set given"
    return (synthetic_samples(config.ndim, shape, count, n),
            f"synthetic {'x'.join(map(str, shape))} ({why})")


def reward_share_check(updates: int, warmup: int = 1, *, device: str = "cpu",
                       progress: Progress = _NULL_PROGRESS) -> dict:
    """Rewards' share of an update at 176x176 with 20 objects (CVPPP config, T = 6, batch 4)."""
    config = load_config("cvppp_fast", steps=6, size=176)
    samples = synthetic_samples(2, (176, 176), config.train.batch_size, 20)
    objects = [int(len(np.unique(s.labels)) - 1) for s in samples]
    res = compare_training(config, samples, updates, warmup, variants=("after",), device=device,
                           progress=progress)["after"]
    res["objects"] = objects
    res["passed"] = res["reward_share"] < REWARD_SHARE_BAR
    return res


def profile_top(fn: Callable[[], object], rows: int = 8, device: str | torch.device = "cpu"
                ) -> list[tuple[str, float, float, int]]:
    """torch.profiler over one call: the top operators by self CPU time, as
    (name, self ms, % of all self time, calls)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
    events = list(prof.key_averages())
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / total, e.count)
            for e in events[:rows]]


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def _fmt(value, spec=".1f", missing="-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines[1] = "|---|" + "---:|" * (len(header) - 1)
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _differing(res: dict) -> str:
    n, total = res.get("steps_differing", 0), res.get("steps_total", 0) or 1
    return f"{n} of {total} step-map px ({100 * n / total:.3f}%) differ"


def inference_table(results: dict) -> str:
    rows = []
    for name, res in results.items():
        a, b = res["after"], res.get("before")
        size = "x".join(map(str, a["network_size"]))
        image = "x".join(map(str, a["image_shape"]))
        same = "-" if b is None else ("yes" if res.get("same_instances") else
                                      f"no: {_differing(res)}")
        rows.append([
            name, size, image, str(a["steps"]), _fmt(a["ms"], ".0f"),
            _fmt(a["images_per_s"], ".2f"), _fmt(a["network_ms"], ".0f"),
            _fmt(a["other_ms"], ".0f"), _fmt(a["peak_mb"], ".0f"),
            _fmt(a["flops_per_image"] / 1e9, ".1f"), _fmt(a["gflops"], ".1f"),
            _fmt(a["percent_of_peak"], ".1f"), _fmt(a["network_percent_of_peak"], ".1f"),
            "-" if b is None else _fmt(b["ms"], ".0f"),
            "-" if b is None else _fmt(b["other_ms"], ".0f"),
            "-" if b is None else f"{b['ms'] / a['ms']:.2f}x", same])
    return _table(["case", "network input", "image", "T", "ms", "images/s", "network ms",
                   "other ms", "peak MB", "GFLOP/image", "GFLOP/s", "% of peak",
                   "network % of peak", "before ms", "before other ms", "vs before",
                   "same instances"], rows)


def training_table(results: dict) -> str:
    rows = []
    for name, (res, config, _source) in results.items():
        a, b = res["after"], res.get("before")
        rows.append([
            name, "x".join(map(str, config.input_size)), str(config.train.batch_size),
            str(config.steps), _fmt(a["seconds"], ".2f"), _fmt(a["updates_per_s"], ".3f"),
            _fmt(a["episodes_per_s"], ".2f"), _fmt(100 * a["reward_share"], ".1f"),
            _fmt(100 * a["environment_share"], ".1f"), _fmt(100 * a["network_share"], ".1f"),
            "-" if b is None else _fmt(b["updates_per_s"], ".3f"),
            "-" if b is None else f"{a['updates_per_s'] / b['updates_per_s']:.2f}x"])
    return _table(["case", "input", "batch", "T", "s/update", "updates/s", "episodes/s",
                   "rewards %", "environment %", "network %", "before updates/s",
                   "vs before"], rows)


def profile_table(rows: Sequence[tuple[str, float, float, int]]) -> str:
    return _table(["operator", "self ms", "% of self time", "calls"],
                  [[f"`{n}`", _fmt(ms, ".1f"), _fmt(p, ".1f"), str(c)] for n, ms, p, c in rows])


def plot_scaling(sizes: dict, steps: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    px = [s * s for s in sizes]
    for key, label, style in (("after", "ColorRL (segment)", "o-"),
                              ("before", "before the speed work", "s--")):
        ys = [sizes[s][key]["ms"] for s in sizes if key in sizes[s]]
        if len(ys) == len(px):
            ax.plot(px, ys, style, label=label)
    post = [sizes[s]["after"]["other_ms"] for s in sizes]
    ax.plot(px, post, "^:", label="of which outside the network")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(px, [f"{s}\u00b2" for s in sizes])
    ax.set_xlabel("image size (network input = image, pixels)")
    ax.set_ylabel("ms per image")
    ax.set_title("Inference time against image size (2D, T = 5)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "speed-size.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ts = list(steps)
    ax.plot(ts, [steps[t]["ms"] for t in ts], "o-", label="ColorRL (segment)")
    ax.plot(ts, [steps[t]["network_ms"] for t in ts], "s--", label="of which the network")
    ax.set_xlabel("coloring steps T")
    ax.set_ylabel("ms per image")
    ax.set_title("Inference time against T (2D, 256x256)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "speed-steps.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


CHANGES = """\
What the speed work changed (results unchanged; tests/test_speed_equivalence.py):
- Instance norms computed by `group_norm` with one group per channel (the same function and
  parameters): PyTorch's CPU `instance_norm` runs `batch_norm` over a (1, B*C, *S) view and was
  the second largest cost of both inference and training.
- On the CPU the 3D network (training and inference) runs in the `channels_last_3d` layout,
  activations and weights, with oneDNN convolutions, and 2D inference in `channels_last`: in
  NC(D)HW oneDNN reorders every tensor at every convolution, and for batch-1 volumes PyTorch
  picked its reference 3D convolution (im2col + GEMM) for most layers. 2D training stays NCHW
  (no gain measured there).
- Post-processing: nearest resize of the step maps by one `take` per axis instead of an
  open-mesh fancy index (tens of times faster at full size); colors summed in uint8 instead of an
  int64 copy of all T maps; relabelling straight into the output dtype.
- Coloring under `torch.inference_mode`; the image branch is encoded once per image (it was).
- Training: the reward parts' means stay on the device and are read once per update (one sync
  instead of 4 T), rewards are timed with CUDA events on a GPU instead of two syncs per step.

Tried and not used: `channels_last` for 2D training (the same time per update as NCHW on 2
idle cores); `torch.compile` (inductor) of the 2D CVPPP network, about 1.3x faster per forward
pass (measured once during development, one thread, on a CPU shared with a training run) but
700 s to compile there, and again for every new image shape.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and updates, sizes up to 512: about 2-3 minutes")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's default, all cores)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per inference variant (default 7, quick 2)")
    parser.add_argument("--updates", type=int, default=None,
                        help="timed training updates per variant (default 5, quick 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="image sizes of the scaling curve (default 128 256 512 1024, "
                        "quick 128 256 512)")
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="T values of the scaling curve (default 2..8, quick 2 4 6 8)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["inference", "training", "rewards", "scaling", "profile",
                                 "memory"], help="leave parts out")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-doc", action="store_true",
                        help="print only: do not touch docs/benchmarks.md or docs/images")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--note", default="", help="a sentence added to the doc section")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        return _memory_worker(args.memory_worker)

    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    device = torch.device(args.device)
    repeats = args.repeats or (2 if quick else 7)
    updates = args.updates or (2 if quick else 5)
    sizes = args.sizes or ([128, 256, 512] if quick else [128, 256, 512, 1024])
    t_values = args.steps or ([2, 4, 6, 8] if quick else [2, 3, 4, 5, 6, 7, 8])
    repeats_3d = 1 if quick else max(2, repeats // 2)
    warmup_3d = 0 if quick else 1
    scaling_repeats = 1 if quick else 3
    memory = "memory" not in args.skip
    skip = set(args.skip)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    if load is not None:
        print(f"load average at start: {load:.2f}", flush=True)

    total = 0
    if "inference" not in skip:
        total += 2 * (1 + repeats) * 2 + 2 * (warmup_3d + repeats_3d) + (6 if memory else 0)
    if "training" not in skip:
        total += 2 * (1 + updates) + 2 * (1 + (1 if quick else updates)) + 1
    if "rewards" not in skip:
        total += 1 + updates
    if "scaling" not in skip:
        total += len(sizes) * 2 * (1 + scaling_repeats) + len(t_values) * (1 + scaling_repeats)
    if "profile" not in skip:
        total += 2
    progress = Progress(total)
    out: dict = {"machine": machine(), "command": command(), "date": stamp(), "quick": quick,
                 "load_average": load}

    out["peak_gflops"] = peak = matmul_gflops(device=device)
    progress.write(f"fp32 matmul 2048x2048: {peak:.1f} GFLOP/s ({torch.get_num_threads()} "
                   f"threads)")

    inference: dict = {}
    if "inference" not in skip:
        for name, cfg_name, dataset, size, steps in INFERENCE_CASES:
            progress.stage(f"inference {name}")
            ndim3 = cfg_name == "gonuclear3d"
            res = compare_inference(
                cfg_name, size, steps, repeats_3d if ndim3 else repeats, dataset=dataset,
                variants=("before", "after"), warmup=warmup_3d if ndim3 else 1,
                memory=memory, device=args.device, progress=progress)
            inference[name] = res
            a, b = res["after"], res["before"]
            progress.write(
                f"{name}: {a['ms']:.0f} ms/image ({a['images_per_s']:.2f}/s; network "
                f"{a['network_ms']:.0f}, other {a['other_ms']:.0f}), {a['gflops']:.1f} GFLOP/s = "
                f"{a['percent_of_peak']:.1f}% of matmul peak, peak {_fmt(a['peak_mb'], '.0f')} "
                f"MB; before {b['ms']:.0f} ms -> {b['ms'] / a['ms']:.2f}x; same instances: "
                f"{res['same_instances']} ({_differing(res)})")
        out["inference"] = inference

    profiles: dict = {}
    if "profile" not in skip:
        progress.stage("profile inference")
        config = load_config("cvppp_fast", steps=6, size=176)
        image, _ = case_image(config, "cvppp_a1")
        for v in ("before", "after"):
            segmenter = _build(config, device, v == "after")
            call = _segment_fn(segmenter, image, v == "after")
            call()
            profiles[f"inference {v}"] = profile_top(call, device=device)
            progress.step()

    training: dict = {}
    if "training" not in skip:
        for name, cfg_name, dataset, steps in (("2D CVPPP", "cvppp_fast", "cvppp_a1", 6),
                                               ("3D GoNuclear", "gonuclear3d", "gonuclear3d", 5)):
            progress.stage(f"training {name}")
            config = load_config(cfg_name, steps=steps)
            samples, source = training_samples(config, dataset, 4)
            n = 1 if quick and config.ndim == 3 else updates
            res = compare_training(config, samples, n, 1, device=args.device,
                                   profile=name.startswith("2D") and "profile" not in skip,
                                   progress=progress)
            if "profile" in res:
                profiles["training update after"] = res.pop("profile")
            training[name] = (res, config, source)
            a, b = res["after"], res["before"]
            progress.write(
                f"training {name}: {a['updates_per_s']:.3f} updates/s, {a['episodes_per_s']:.2f} "
                f"episodes/s (rewards {100 * a['reward_share']:.1f}%, environment "
                f"{100 * a['environment_share']:.1f}%, network {100 * a['network_share']:.1f}%); "
                f"before {b['updates_per_s']:.3f} -> "
                f"{a['updates_per_s'] / b['updates_per_s']:.2f}x")
        out["training"] = {k: v[0] for k, v in training.items()}

    rewards = None
    if "rewards" not in skip:
        progress.stage("rewards check")
        rewards = reward_share_check(updates, 1, device=args.device, progress=progress)
        verdict = "PASS" if rewards["passed"] else "FAIL"
        progress.write(
            f"rewards at 176x176, {min(rewards['objects'])}-{max(rewards['objects'])} objects: "
            f"{100 * rewards['reward_share']:.2f}% of an update ({rewards['reward_ms']:.0f} ms of "
            f"{1e3 * rewards['seconds']:.0f} ms): {verdict} (bar < {100 * REWARD_SHARE_BAR:.0f}%)")
        out["rewards"] = rewards

    size_results: dict = {}
    step_results: dict = {}
    if "scaling" not in skip:
        for s in sizes:
            progress.stage(f"scaling {s}x{s}")
            res = compare_inference(load_config("dsb_fast", steps=5, input_mode="crop"), s,
                                    None, scaling_repeats, dataset="dsb2018_fluo",
                                    variants=("before", "after"), memory=False,
                                    device=args.device, progress=progress)
            size_results[s] = res
            progress.write(f"size {s}x{s}: {res['after']['ms']:.0f} ms (other "
                           f"{res['after']['other_ms']:.0f}), before {res['before']['ms']:.0f} ms")
        for t in t_values:
            progress.stage(f"scaling T={t}")
            res = compare_inference(load_config("dsb_fast", steps=t, input_mode="crop"), 256,
                                    None, scaling_repeats, dataset="dsb2018_fluo",
                                    memory=False, device=args.device, progress=progress)
            step_results[t] = res["after"]
            progress.write(f"T = {t}: {res['after']['ms']:.0f} ms")
        out["scaling_size"] = size_results
        out["scaling_steps"] = step_results
    # The peak again at the end (a fresh measurement): the higher median of the two is used.
    _PEAK.clear()
    end_peak = matmul_gflops(device=device)
    if end_peak > peak:
        out["peak_gflops"] = end_peak
        for res in [*inference.values(), *size_results.values()]:
            for v in ("before", "after"):
                if v in res:
                    _rescale_peak(res[v], end_peak)
        for res in step_results.values():
            _rescale_peak(res, end_peak)
    progress.write(f"fp32 matmul at the end: {end_peak:.1f} GFLOP/s; peak used "
                   f"{out['peak_gflops']:.1f}")
    progress.close()
    minutes = (time.perf_counter() - started) / 60
    out["minutes"] = minutes

    body = report(args, out, inference, training, rewards, size_results, step_results,
                  profiles, minutes)
    print()
    print(body)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    if not args.no_doc:
        if size_results and step_results:
            for path in plot_scaling(size_results, step_results, IMAGES):
                print(f"wrote {path}")
        write_section(SECTION, body, doc=args.doc)
    return 0


def report(args, out, inference, training, rewards, size_results, step_results, profiles,
           minutes) -> str:
    lines = ["## Speed", ""]
    lines.append(textwrap.fill(
        "Inference and training throughput of ColorRL on this machine, measured by "
        "`benchmarks/bench_speed.py` with random-init networks (the work done does not depend on "
        "the weights). \"Before\" is the code before the speed work, rebuilt in the script and "
        "timed in the same run, interleaved with the current code (medians).", width=100))
    lines += ["", f"- Machine: {out['machine']}", f"- Command: `{out['command']}`",
              f"- Date: {out['date']}, {minutes:.1f} minutes"
              + (" (--quick: few repeats)" if out["quick"] else ""),
              f"- fp32 matmul peak measured in the run (2048x2048 `torch.mm`, median of 7, at "
              f"the start and at the end, the higher): {out['peak_gflops']:.1f} GFLOP/s with "
              f"{torch.get_num_threads()} threads"]
    if out["load_average"] is not None and out["load_average"] > 0.5 * (os.cpu_count() or 1):
        lines.append(f"- The CPU may have been shared: 1-minute load average "
                     f"{out['load_average']:.1f} at the start, so absolute figures may be low; "
                     f"the ratios were measured interleaved.")
    if args.note:
        lines.append(f"- Note: {args.note}")
    lines += ["", "Ratios (current code vs before, same run):", ""]
    for name, res in inference.items():
        lines.append(f"- ColorRL inference vs before, {name}: "
                     f"{res['before']['ms'] / res['after']['ms']:.2f}x")
    for name, (res, _, _) in training.items():
        lines.append(f"- Training updates/s vs before, {name}: "
                     f"{res['after']['updates_per_s'] / res['before']['updates_per_s']:.2f}x")
    if rewards is not None:
        verdict = "PASS" if rewards["passed"] else "FAIL"
        lines.append(f"- Rewards share of an update at 176x176 with {min(rewards['objects'])}-"
                     f"{max(rewards['objects'])} objects (synthetic, batch 4, T = 6): "
                     f"{100 * rewards['reward_share']:.2f}% ({verdict}, bar < "
                     f"{100 * REWARD_SHARE_BAR:.0f}%)")
    if inference:
        lines += ["", "### Inference per image (`Segmenter.segment`, post-processing included)",
                  ""]
        lines.append(inference_table(inference))
        first = next(iter(inference.values()))["after"]
        lines += ["", textwrap.fill(
            "Images: " + "; ".join(f"{n}: {r['after']['source']}" for n, r in inference.items())
            + f". Network ms: the T-step coloring loop (`run_coloring`); other ms: the rest of "
            "`segment` (checks, normalisation, resizes, colors, connected components, small-"
            f"object removal). Peak MB: {first['memory_method']}. GFLOP/image counts the "
            "convolutions that run (image branch once, then T passes of the step branch, U-Net "
            "and heads); GFLOP/s divides it by the whole time, % of peak by the fp32 matmul rate "
            "above; network % of peak uses the network ms alone. Same instances: before and "
            "after give identical instance maps (random weights with a policy head of std 1, so "
            "few decisions are near-ties); otherwise the step-map pixels that differ: float "
            "rounding (another summation order in the convolutions and norms) flips a few "
            "near-tie decisions, and with random weights later steps inherit and spread them "
            "(in development, 3D: 16 voxels at step 0, all with logit margins below 5e-4).",
            width=100)]
    if training:
        lines += ["", "### Training (`core.rollout.run_update`, environment reset included)", ""]
        lines.append(training_table(training))
        lines += ["", textwrap.fill(
            "Samples: " + "; ".join(f"{n}: {s}" for n, (_, _, s) in training.items())
            + ". Shares from the trainer's own timers (RolloutStats); episodes/s = batch / "
            "median s per update.", width=100)]
    if size_results:
        lines += ["", "### Scaling", "",
                  "![inference time against image size](images/speed-size.png)",
                  "![inference time against T](images/speed-steps.png)", ""]
        rows = [[f"{s}x{s}", _fmt(r["after"]["ms"], ".0f"), _fmt(r["after"]["network_ms"], ".0f"),
                 _fmt(r["after"]["other_ms"], ".0f"), _fmt(r["after"]["gflops"], ".1f"),
                 _fmt(r["after"]["percent_of_peak"], ".1f"), _fmt(r["before"]["ms"], ".0f"),
                 f"{r['before']['ms'] / r['after']['ms']:.2f}x"]
                for s, r in size_results.items()]
        lines.append(_table(["image (= network input)", "ms", "network ms", "other ms",
                             "GFLOP/s", "% of peak", "before ms", "vs before"], rows))
        lines.append("")
        rows = [[str(t), _fmt(r["ms"], ".0f"), _fmt(r["network_ms"], ".0f"),
                 _fmt(r["other_ms"], ".0f")] for t, r in step_results.items()]
        lines.append(_table(["T (256x256)", "ms", "network ms", "other ms"], rows))
        lines += ["", "DSB config in crop mode (the network runs at the image's size), first DSB "
                  "validation image mirror-padded or cropped to each size."]
    if profiles:
        lines += ["", "### Profiles (torch.profiler, top operators by self CPU time)", ""]
        for name, rows in profiles.items():
            what = ("one CVPPP inference" if name.startswith("inference") else
                    "one 2D CVPPP training update (batch 4, T = 6)")
            lines += [f"{what}, {name.split()[-1]}:", "", profile_table(rows), ""]
    lines += ["", CHANGES]
    cases = []
    if inference:
        cases.append("inference: " + ", ".join(inference))
    if training:
        cases.append("training: " + ", ".join(training))
    if rewards is not None:
        cases.append("rewards check")
    if size_results:
        cases.append(f"scaling: sizes {list(size_results)}, T {list(step_results)}")
    lines.append("Cases measured in this run: " + "; ".join(cases) + ".")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
