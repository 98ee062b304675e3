"""Training speed in float32 against bfloat16 (``train.precision``), same run, interleaved.

Real training updates (``core.rollout.run_update``, environment reset included) of the 2D CVPPP
recipe (176x176, T = 6, batch 4) and the 3D GoNuclear recipe (64^3 crops, T = 5, batch 2), each
precision with its own copy of the same initial weights, optimizer and environment, timed in the
order A B, B A, ... so a change of machine load hits both alike. Reports median seconds per
update and the ratio, and whether the bfloat16 update's loss is finite.

    python benchmarks/bench_precision.py              # about 3 minutes on 2 idle cores
    python benchmarks/bench_precision.py --quick --no-doc
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from napari_colorrl.core.config import PRECISIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command, machine, stamp, write_section  # noqa: E402
from bench_speed import compare_training, load_config, training_samples  # noqa: E402

CASES = (
    ("CVPPP 2D, 176x176, T = 6, batch 4", "cvppp_small", "cvppp_a1", 6),
    ("GoNuclear 3D, 64^3 crops, T = 5, batch 2", "gonuclear3d_low_lr", "gonuclear3d", 5),
)


def compare(config, samples, updates: int, warmup: int) -> dict:
    """bench_speed's interleaved training loop, one variant per precision."""
    configs = {p: config.replace(train=dataclasses.replace(config.train, precision=p))
               for p in PRECISIONS}
    return compare_training(config, samples, updates, warmup, variants=PRECISIONS,
                            configs=configs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=12, help="timed updates per precision")
    parser.add_argument("--quick", action="store_true", help="4 timed updates per precision")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    updates = 4 if args.quick else args.updates
    rows = []
    for name, config_name, dataset, steps in CASES:
        config = load_config(config_name, steps=steps)
        samples, source = training_samples(config, dataset, 4)
        res = compare(config, samples, updates, warmup=2)
        ratio = res["float32"]["seconds"] / res["bfloat16"]["seconds"]
        rows.append((name, source, res, ratio))
        print(f"{name} ({source}): float32 {res['float32']['seconds']:.3f} s, bfloat16 "
              f"{res['bfloat16']['seconds']:.3f} s per update: {ratio:.2f}x; bfloat16 losses "
              f"finite: {res['bfloat16']['finite']}", flush=True)
    if args.no_doc:
        return 0
    lines = [
        "## Training precision: float32 and bfloat16",
        "",
        f"- machine: {machine()}",
        f"- command: `{command()}`",
        f"- date: {stamp()}",
        f"- {updates} timed updates per precision after 2 warm-up updates, interleaved; "
        "median seconds per update, environment reset included",
        "",
        "| case | images | float32 s/update | bfloat16 s/update | float32 / bfloat16 |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {source} | {res['float32']['seconds']:.3f} | "
              f"{res['bfloat16']['seconds']:.3f} | {ratio:.2f}x |"
              for name, source, res, ratio in rows]
    write_section("precision", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
