"""Where the time of one inference and of one training update goes: torch.profiler's top
operators by self CPU time.

One CVPPP inference (``Segmenter.segment``, CVPPP recipe at 176x176, T = 6, after one warm-up
call) and one 2D CVPPP training update (``run_update``, environment reset included, after one
warm-up update), random-init network (seed 0), on the first CVPPP validation images (synthetic
without ``--data``). Prints a Markdown block with one table each.

    python -m benchmarks.profile_ops --data DATA
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._report import header
from ._timing import (
    apply_threads,
    case_image,
    fmt,
    segment_call,
    segmenter_for,
    speed_config,
    speed_parser,
    table,
    training_samples,
    training_update,
)


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


def main(argv: list[str] | None = None) -> int:
    parser = speed_parser(__spec__.name, __doc__)
    parser.add_argument("--rows", type=int, default=8, help="operators per table")
    args = parser.parse_args(argv)
    apply_threads(args)

    config = speed_config("cvppp", steps=6, size=176)
    image, image_source = case_image(config, args.data, "cvppp_a1")
    samples, samples_source = training_samples(config, args.data, "cvppp_a1", 4)
    calls = {
        f"one CVPPP inference ({image_source})":
            segment_call(segmenter_for(config, args.device), image),
        f"one 2D CVPPP training update (batch {config.train.batch_size}, T = {config.steps}; "
        f"{samples_source})": training_update(config, samples, args.device),
    }
    lines = [*header("Profiles (torch.profiler, top operators by self CPU time)")]
    for what, call in calls.items():
        call()  # warm-up
        top = profile_top(call, args.rows, args.device)
        lines += ["", f"{what}:", "",
                  table(["operator", "self ms", "% of self time", "calls"],
                        [[f"`{n}`", fmt(ms), fmt(p), str(c)] for n, ms, p, c in top])]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
