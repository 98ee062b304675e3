"""How inference time scales with the image size and with T, and where the time goes.

The DSB recipe in crop mode (the network runs at the image's own size), on the first DSB
validation image mirror-padded or cropped to each size (synthetic without ``--data``):
``Segmenter.segment`` per image against the image size (T = 5) and against T (256x256), the
coloring loop and the rest of ``segment`` timed apart. Random-init network (seed 0). Prints a
Markdown block and draws docs/images/speed-size.png and speed-steps.png (``--plots DIR``).

    python -m benchmarks.scaling --data DATA
    python -m benchmarks.scaling --quick --plots runs/scaling
"""

from __future__ import annotations

from pathlib import Path

from ._report import ROOT, header
from ._timing import (
    apply_threads,
    case_image,
    dump_json,
    fmt,
    matmul_gflops,
    speed_config,
    speed_parser,
    table,
    time_inference,
)

DATASET = "dsb2018_fluo"
STEPS_FOR_SIZES = 5
SIZE_FOR_STEPS = 256


def measure(data: Path | None, size: int, steps: int, repeats: int, device: str) -> dict:
    config = speed_config("dsb", steps=steps, input_mode="crop")
    image, _ = case_image(config, data, DATASET, size)
    return time_inference(config, image, repeats, 1, device)


def plot(sizes: dict, steps: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    px = [s * s for s in sizes]
    ax.plot(px, [r["ms"] for r in sizes.values()], "o-", label="ColorRL (segment)")
    ax.plot(px, [r["other_ms"] for r in sizes.values()], "^:",
            label="of which outside the network")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(px, [f"{s}\u00b2" for s in sizes])
    ax.set_xlabel("image size (network input = image, pixels)")
    ax.set_ylabel("ms per image")
    ax.set_title(f"Inference time against image size (2D, T = {STEPS_FOR_SIZES})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths = [out_dir / "speed-size.png"]
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ts = list(steps)
    ax.plot(ts, [steps[t]["ms"] for t in ts], "o-", label="ColorRL (segment)")
    ax.plot(ts, [steps[t]["network_ms"] for t in ts], "s--", label="of which the network")
    ax.set_xlabel("coloring steps T")
    ax.set_ylabel("ms per image")
    ax.set_title(f"Inference time against T (2D, {SIZE_FOR_STEPS}x{SIZE_FOR_STEPS})")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "speed-steps.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = speed_parser(__spec__.name, __doc__)
    parser.add_argument("--quick", action="store_true", help="one repeat, sizes up to 512")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per point (default 3, quick 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="image sizes (default 128 256 512 1024, quick 128 256 512)")
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="T values (default 2..8, quick 2 4 6 8)")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs" / "images",
                        help="folder for speed-size.png and speed-steps.png (default docs/images)")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    args = parser.parse_args(argv)
    apply_threads(args)
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = args.sizes or ([128, 256, 512] if args.quick else [128, 256, 512, 1024])
    t_values = args.steps or ([2, 4, 6, 8] if args.quick else [2, 3, 4, 5, 6, 7, 8])
    peak = matmul_gflops(device=args.device)

    by_size, by_steps = {}, {}
    for s in sizes:
        by_size[s] = measure(args.data, s, STEPS_FOR_SIZES, repeats, args.device)
        print(f"size {s}x{s}: {by_size[s]['ms']:.0f} ms", flush=True)
    for t in t_values:
        by_steps[t] = measure(args.data, SIZE_FOR_STEPS, t, repeats, args.device)
        print(f"T = {t}: {by_steps[t]['ms']:.0f} ms", flush=True)
    paths = plot(by_size, by_steps, args.plots)

    rows = [[f"{s}x{s}", fmt(r["ms"], ".0f"), fmt(r["network_ms"], ".0f"),
             fmt(r["other_ms"], ".0f"), fmt(r["gflops"]), fmt(100 * r["gflops"] / peak)]
            for s, r in by_size.items()]
    step_rows = [[str(t), fmt(r["ms"], ".0f"), fmt(r["network_ms"], ".0f"),
                  fmt(r["other_ms"], ".0f")] for t, r in by_steps.items()]
    source = case_image(speed_config("dsb", input_mode="crop"), args.data, DATASET)[1]
    print("\n".join([
        "", *header("Scaling"),
        f"- DSB recipe in crop mode; image: {source.split(', fitted')[0]}, fitted to each size; "
        f"{repeats} timed call(s) per point; fp32 matmul {peak:.1f} GFLOP/s", "",
        table([f"image (= network input), T = {STEPS_FOR_SIZES}", "ms", "network ms",
               "other ms", "GFLOP/s", "% of matmul peak"], rows), "",
        table([f"T ({SIZE_FOR_STEPS}x{SIZE_FOR_STEPS})", "ms", "network ms", "other ms"],
              step_rows), "",
        *(f"![{p.stem}]({p})" for p in paths)]))
    dump_json(args.json, {"peak_gflops": peak, "sizes": by_size, "steps": by_steps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
