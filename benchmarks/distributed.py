"""Training throughput (episodes per second) for 1..P processes and 1..N environments each.

Every run is the real command line: ``python -m napari_colorrl train`` for one process and
``torchrun --standalone --nproc-per-node P -m napari_colorrl train`` for several, on a synthetic
2D data set written to a temporary folder, on the CPU (gloo). Throughput is read from the
JSON-lines log (rank 0): episodes (all processes) over training time, after warm-up updates,
so start-up and the first updates are not counted. Prints the table as a Markdown block.

    nice -n 15 python -m benchmarks.distributed --quick
    python -m benchmarks.distributed --processes 1 2 4 --batch-sizes 1 2 4 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from ._report import header, machine, source_env


def write_dataset(folder: Path, count: int, size: int) -> Path:
    """``count`` synthetic cell images with labels in folder/train/{images,masks}."""
    from napari_colorrl.core.data.synthetic import make_cells_2d
    from napari_colorrl.core.data.writing import write_labels, write_tiff

    for sub in ("images", "masks"):
        (folder / "train" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, labels = make_cells_2d(shape=(size, size), n_objects=8, seed=i)
        write_tiff(folder / "train" / "images" / f"cell{i:02d}.tif", image)
        write_labels(folder / "train" / "masks" / f"cell{i:02d}.tif", labels)
    return folder


def train_command(processes: int, data: Path, config: Path, out: Path, log: Path,
                  episodes: int, batch_size: int, threads: int) -> list[str]:
    train = ["-m", "napari_colorrl", "train", "--data", str(data), "--config", str(config),
             "--episodes", str(episodes), "--batch-size", str(batch_size), "--device", "cpu",
             "--threads", str(threads), "--steps", "3", "--out", str(out), "--log-file", str(log)]
    if processes == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", *train]


def throughput(log: Path, warmup: int) -> tuple[float, float, int]:
    """Episodes per second and seconds per update after ``warmup`` updates, updates timed.

    The median of the per-update times (rank 0's clock between two log lines), so a stall of a
    shared CPU during one update does not decide the figure.
    """
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if len(rows) <= max(1, warmup):
        raise RuntimeError(f"{log} has {len(rows)} updates; need more than {max(1, warmup)}.")
    timed = rows[max(1, warmup) - 1:]
    seconds = [b["elapsed"] - a["elapsed"] for a, b in itertools.pairwise(timed)]
    episodes = (timed[-1]["episodes"] - timed[0]["episodes"]) / len(seconds)
    median = statistics.median(seconds)
    return episodes / median, median, len(seconds)


def summary(results: list[tuple]) -> str:
    """Facts from the table: the fastest setting and the gain of P processes over one."""
    best = max(results, key=lambda row: row[4])
    lines = [f"Fastest here: {best[0]} process(es) x {best[2]} environment(s), "
             f"{best[4]:.2f} episodes/s."]
    single = {row[2]: row[4] for row in results if row[0] == 1}
    for processes, _, batch, _, rate, _ in results:
        if processes > 1 and batch in single:
            lines.append(f"{processes} processes x {batch} vs 1 x {batch}: "
                         f"{rate / single[batch]:.2f}x the episodes per second.")
    return "\n".join(f"- {line}" for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small network, few updates, small inputs")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="environments per process (default 1 2 4, quick 1 2 4)")
    parser.add_argument("--updates", type=int, default=None,
                        help="updates per run (default 20, quick 8)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="updates not timed (default 3, quick 2)")
    parser.add_argument("--size", type=int, default=None, help="input size (default 96, quick 48)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="CPU threads shared by the processes of a run (default: all)")
    args = parser.parse_args()

    quick = args.quick
    batch_sizes = args.batch_sizes or [1, 2, 4]
    updates = args.updates or (8 if quick else 20)
    warmup = args.warmup if args.warmup is not None else (2 if quick else 3)
    size = args.size or (48 if quick else 96)
    features = [8, 16, 32] if quick else [16, 32, 64, 128]
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"machine: {machine()}", flush=True)
    env = source_env()

    results = []
    with tempfile.TemporaryDirectory(prefix="colorrl-bench-") as tmp:
        tmp = Path(tmp)
        data = write_dataset(tmp / "data", count=8, size=size)
        config = tmp / "config.json"
        config.write_text(json.dumps({
            "ndim": 2, "input_size": [size, size], "min_size": 5,
            "network": {"features": features, "attention": True, "input_features": 8},
            "reward": {"radii": [3, 6]},
            "train": {"checkpoint_every": 100000, "val_every": 100000, "lr": 1e-4},
        }))
        runs = [(p, b) for p in args.processes for b in batch_sizes]
        for index, (processes, batch) in enumerate(runs, 1):
            threads = max(1, args.cores // processes)
            episodes = updates * batch * processes
            log = tmp / f"p{processes}_b{batch}.jsonl"
            command = train_command(processes, data, config, tmp / "run.pt", log, episodes,
                                    batch, threads)
            print(f"[{index}/{len(runs)}] {processes} process(es) x {threads} thread(s), "
                  f"{batch} environment(s) each, {updates} updates ...", flush=True)
            started = time.perf_counter()
            env["OMP_NUM_THREADS"] = str(threads)
            done = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-4000:], sep="\n")
                raise SystemExit(f"run failed: {' '.join(command)}")
            rate, per_update, timed = throughput(log, warmup)
            wall = time.perf_counter() - started
            results.append((processes, threads, batch, processes * batch, rate, per_update))
            print(f"      {rate:.2f} episodes/s, {per_update:.3f} s/update ({timed} timed), "
                  f"{wall:.0f} s with start-up", flush=True)

    base = results[0][4]
    lines = ["| processes | threads each | environments each | effective batch | episodes/s "
             "| median s/update | vs. first row |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for processes, threads, batch, effective, rate, per_update in results:
        lines.append(f"| {processes} | {threads} | {batch} | {effective} | {rate:.2f} | "
                     f"{per_update:.3f} | {rate / base:.2f}x |")
    table = "\n".join(lines)

    shared = ""
    if load_before is not None and load_before > 0.5:
        shared = textwrap.fill(
            f"The CPU was shared: the load average was {load_before:.1f} when the benchmark "
            f"started (another job ran beside it), so the figures are lower and noisier than on "
            f"an idle machine.", width=100) + "\n"
    body = "\n".join(header("Distributed scaling")) + f"""

Training throughput of `colorrl train` on a synthetic 2D set ({size}x{size} inputs, T = 3,
network features {tuple(features)}), on the CPU: one plain process, or several started by
`torchrun --standalone` (gloo, gradients averaged by DistributedDataParallel). Episodes per
second count the episodes of all processes per update over the median time of an update on
rank 0's clock, after {warmup} warm-up updates; the machine's threads are split between the
processes.

{table}

{summary(results)}

{shared}See docs/cluster.md for multi-GPU machines and SLURM.
"""
    print()
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
