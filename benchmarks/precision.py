"""Training speed in float32 against bfloat16 (``train.precision``), same run, interleaved.

Real training updates (``core.training.rollout.run_update``, environment reset included) of the
CVPPP recipe (176x176, T = 6) and the GoNuclear 3D recipe (64^3 crops, T = 5), each precision
with its own copy of the same initial weights, optimizer and environment, timed in the order
A B, B A, ... so a change of machine load hits both alike. Prints median seconds per update,
their ratio, and whether every bfloat16 loss was finite, as a Markdown block.

    python -m benchmarks.precision --data DATA
    python -m benchmarks.precision --quick
"""

from __future__ import annotations

import dataclasses

from napari_colorrl.core.config import SETTINGS_BY_PATH

from ._report import header
from ._timing import (
    apply_threads,
    size_text,
    speed_config,
    speed_parser,
    time_training,
    training_samples,
)

PRECISIONS = SETTINGS_BY_PATH["train.precision"].choices

#: (name, recipe, data set, T)
CASES = (
    ("CVPPP 2D", "cvppp", "cvppp_a1", 6),
    ("GoNuclear 3D", "gonuclear3d", "gonuclear3d", 5),
)


def main() -> int:
    parser = speed_parser(__spec__.name, __doc__)
    parser.add_argument("--updates", type=int, default=12, help="timed updates per precision")
    parser.add_argument("--quick", action="store_true", help="4 timed updates per precision")
    args = parser.parse_args()
    apply_threads(args)
    updates = 4 if args.quick else args.updates
    rows = []
    for name, recipe, dataset, steps in CASES:
        config = speed_config(recipe, steps=steps)
        samples, source = training_samples(config, args.data, dataset, 4)
        configs = {p: config.replace(train=dataclasses.replace(config.train, precision=p))
                   for p in PRECISIONS}
        res = time_training(configs, samples, updates, 2, args.device)
        ratio = res["float32"]["seconds"] / res["bfloat16"]["seconds"]
        case = (f"{name}, {size_text(config.input_size)}, T = {config.steps}, batch "
                f"{config.train.batch_size}")
        rows.append(f"| {case} | {source} | {res['float32']['seconds']:.3f} | "
                    f"{res['bfloat16']['seconds']:.3f} | {ratio:.2f}x | "
                    f"{'yes' if res['bfloat16']['finite'] else 'no'} |")
        print(f"{case}: {ratio:.2f}x", flush=True)
    print("\n".join([
        "", *header("Training precision: float32 and bfloat16"),
        f"- {updates} timed updates per precision after 2 warm-up updates, interleaved; median "
        "seconds per update, environment reset included", "",
        "| case | images | float32 s/update | bfloat16 s/update | float32 / bfloat16 "
        "| bfloat16 losses finite |",
        "|---|---|---|---|---|---|", *rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
