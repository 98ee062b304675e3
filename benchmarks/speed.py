"""Speed of ColorRL on this machine: inference per image and training throughput.

1. Inference per image including post-processing (``Segmenter.segment``) with the three base
   recipes: CVPPP (176x176 network input, T = 6), DSB (256x256, T = 5), a 3D 96^3 volume
   (T = 5). Median ms, images/s, the time of the coloring loop and of the rest, peak memory
   (CPU: the increase of the peak RSS, ``ru_maxrss``, over the RSS before the call, in a fresh
   process; CUDA: ``torch.cuda.max_memory_allocated``), achieved GFLOP/s (the conv FLOPs that
   run: the image branch once plus T step passes) against the fp32 matmul GFLOP/s measured in the
   same run with the same threads (at the start and at the end, the higher).
2. Training: updates/s and episodes/s (CVPPP recipe, T = 6; GoNuclear 3D recipe, 64^3 crops,
   T = 5) and the shares of an update spent in rewards, environment and network.
3. A check that rewards take less than 15% of an update at 176x176 with 20 objects.

Random-init networks (seed 0). Prints a Markdown block; ``--json`` also writes every number.

    python -m benchmarks.speed --data DATA
    python -m benchmarks.speed --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ._report import header, run_worker
from ._timing import (
    apply_threads,
    case_image,
    dump_json,
    fmt,
    matmul_gflops,
    segment_call,
    segmenter_for,
    size_text,
    speed_config,
    speed_parser,
    synthetic_samples,
    table,
    time_inference,
    time_training,
    training_samples,
)

REWARD_SHARE_BAR = 0.15

#: (name, recipe, data set, network size, T)
INFERENCE_CASES = (
    ("CVPPP 2D", "cvppp", "cvppp_a1", 176, 6),
    ("DSB 2D", "dsb", "dsb2018_fluo", 256, 5),
    ("GoNuclear 3D", "gonuclear3d", "gonuclear3d", 96, 5),
)
#: (name, recipe, data set, T)
TRAINING_CASES = (
    ("2D CVPPP", "cvppp", "cvppp_a1", 6),
    ("3D GoNuclear", "gonuclear3d", "gonuclear3d", 5),
)


def peak_memory_mb(config, image: np.ndarray, device: str | torch.device = "cpu"
                   ) -> tuple[float, str]:
    """Peak memory of one ``segment`` call and how it was measured.

    CPU: in a fresh Python process (this module with ``--memory-worker``), the peak RSS
    (``ru_maxrss``) after the call minus the RSS just before it (model built, image loaded).
    CUDA: ``torch.cuda.max_memory_allocated`` over the call, in this process.
    """
    device = torch.device(device)
    if device.type == "cuda":
        call = segment_call(segmenter_for(config, device), image)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        call()
        peak = torch.cuda.max_memory_allocated(device) - base
        return peak / 2**20, "CUDA max_memory_allocated over the call"
    with tempfile.TemporaryDirectory(prefix="colorrl-speed-") as tmp:
        np.save(Path(tmp) / "image.npy", image)
        result = run_worker("benchmarks.speed", "--memory-worker",
                            {"config": config.to_dict(), "image": str(Path(tmp) / "image.npy"),
                             "threads": torch.get_num_threads()}, Path(tmp))
    return result["peak_mb"], "peak RSS increase over the call (ru_maxrss, fresh process)"


def _current_rss() -> int:
    try:
        import psutil  # napari brings it; not a dependency of the core

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_worker(spec_path: str) -> int:
    from napari_colorrl.core.config import ColorRLConfig

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))
    call = segment_call(segmenter_for(ColorRLConfig.from_dict(spec["config"])),
                        np.load(spec["image"]))
    gc.collect()
    base = _current_rss()
    call()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024
    print(json.dumps({"peak_mb": max(peak - base, 0) / 2**20, "base_mb": base / 2**20}))
    return 0


def reward_share_check(updates: int, device: str = "cpu") -> dict:
    """Rewards' share of an update at 176x176 with 20 objects (CVPPP recipe, T = 6)."""
    config = speed_config("cvppp", steps=6, size=176)
    samples = synthetic_samples(2, (176, 176), config.train.batch_size, 20)
    res = time_training({"cvppp": config}, samples, updates, 1, device)["cvppp"]
    res["objects"] = [int(len(np.unique(s.labels)) - 1) for s in samples]
    res["batch"] = config.train.batch_size
    res["passed"] = res["reward_share"] < REWARD_SHARE_BAR
    return res


def main(argv: list[str] | None = None) -> int:
    parser = speed_parser(__spec__.name, __doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and updates")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per inference case (default 7, quick 2)")
    parser.add_argument("--updates", type=int, default=None,
                        help="timed training updates per case (default 5, quick 2)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["inference", "training", "rewards", "memory"],
                        help="leave parts out")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        return _memory_worker(args.memory_worker)
    apply_threads(args)
    skip, quick = set(args.skip), args.quick
    repeats = args.repeats or (2 if quick else 7)
    updates = args.updates or (2 if quick else 5)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out: dict = {"load_average": load, "peak_gflops": matmul_gflops(device=args.device)}
    print(f"fp32 matmul: {out['peak_gflops']:.1f} GFLOP/s", flush=True)

    inference: dict = {}
    for name, recipe, dataset, size, steps in () if "inference" in skip else INFERENCE_CASES:
        config = speed_config(recipe, steps=steps, size=size)
        image, source = case_image(config, args.data, dataset, size)
        is_3d = config.ndim == 3
        res = time_inference(config, image, 1 if quick and is_3d else repeats,
                             0 if quick and is_3d else 1, args.device)
        res["source"] = source
        res["peak_mb"], res["memory_method"] = (None, "not measured")
        if "memory" not in skip:
            res["peak_mb"], res["memory_method"] = peak_memory_mb(config, image, args.device)
        inference[name] = res
        print(f"{name}: {res['ms']:.0f} ms/image (network {res['network_ms']:.0f}, other "
              f"{res['other_ms']:.0f}), peak {fmt(res['peak_mb'], '.0f')} MB", flush=True)

    training: dict = {}
    for name, recipe, dataset, steps in () if "training" in skip else TRAINING_CASES:
        config = speed_config(recipe, steps=steps)
        samples, source = training_samples(config, args.data, dataset, 4)
        n = 1 if quick and config.ndim == 3 else updates
        res = time_training({name: config}, samples, n, 1, args.device)[name]
        training[name] = {**res, "source": source, "input": size_text(config.input_size),
                          "batch": config.train.batch_size, "steps": config.steps}
        print(f"training {name}: {res['updates_per_s']:.3f} updates/s", flush=True)

    rewards = None if "rewards" in skip else reward_share_check(updates, args.device)
    out["peak_gflops"] = max(out["peak_gflops"], matmul_gflops(device=args.device))
    out.update(inference=inference, training=training, rewards=rewards)
    print()
    print(report(out))
    dump_json(args.json, out)
    return 0


def report(out: dict) -> str:
    peak = out["peak_gflops"]
    lines = [*header("Speed"),
             f"- fp32 matmul rate measured in the run (2048x2048 `torch.mm`, median of 7, at the "
             f"start and at the end, the higher): {peak:.1f} GFLOP/s with "
             f"{torch.get_num_threads()} threads; random-init networks (seed 0)"]
    if out["load_average"] is not None and out["load_average"] > 0.5 * (os.cpu_count() or 1):
        lines.append(f"- the CPU may have been shared: 1-minute load average "
                     f"{out['load_average']:.1f} at the start")
    rewards = out["rewards"]
    if rewards is not None:
        lines.append(f"- rewards' share of an update at 176x176 with {min(rewards['objects'])}-"
                     f"{max(rewards['objects'])} objects (synthetic, CVPPP recipe, batch "
                     f"{rewards['batch']}, T = 6): {100 * rewards['reward_share']:.2f}% "
                     f"({'PASS' if rewards['passed'] else 'FAIL'}, bar < "
                     f"{100 * REWARD_SHARE_BAR:.0f}%)")
    if out["inference"]:
        rows = [[name, size_text(r["network_size"]), size_text(r["image_shape"]), str(r["steps"]),
                 fmt(r["ms"], ".0f"), fmt(1e3 / r["ms"], ".2f"), fmt(r["network_ms"], ".0f"),
                 fmt(r["other_ms"], ".0f"), fmt(r["peak_mb"], ".0f"), fmt(r["flops"] / 1e9),
                 fmt(r["gflops"]), fmt(100 * r["gflops"] / peak),
                 fmt(100 * r["network_gflops"] / peak)]
                for name, r in out["inference"].items()]
        first = next(iter(out["inference"].values()))
        lines += ["", "Inference per image (`Segmenter.segment`, post-processing included):", "",
                  table(["case", "network input", "image", "T", "ms", "images/s", "network ms",
                         "other ms", "peak MB", "GFLOP/image", "GFLOP/s", "% of peak",
                         "network % of peak"], rows), "",
                  "Images: " + "; ".join(f"{n}: {r['source']}"
                                         for n, r in out["inference"].items())
                  + ". Network ms: the T-step coloring loop (`run_coloring`); other ms: the "
                  "rest of `segment` (checks, normalisation, resizes, colors, connected "
                  f"components, small-object removal). Peak MB: {first['memory_method']}."]
    if out["training"]:
        rows = [[name, r["input"], str(r["batch"]), str(r["steps"]), fmt(r["seconds"], ".2f"),
                 fmt(r["updates_per_s"], ".3f"), fmt(r["episodes_per_s"], ".2f"),
                 fmt(100 * r["reward_share"]), fmt(100 * r["environment_share"]),
                 fmt(100 * r["network_share"])] for name, r in out["training"].items()]
        lines += ["", "Training (`run_update`, environment reset included):", "",
                  table(["case", "input", "batch", "T", "s/update", "updates/s", "episodes/s",
                         "rewards %", "environment %", "network %"], rows), "",
                  "Samples: " + "; ".join(f"{n}: {r['source']}"
                                          for n, r in out["training"].items())
                  + ". Shares from the trainer's own timers (RolloutStats)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
