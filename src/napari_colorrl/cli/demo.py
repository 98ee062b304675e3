"""``colorrl demo``: the main job on the bundled (generated) sample.

With a display and napari installed (and without ``--headless``), it opens napari with the
sample, both ColorRL docks and a short training started. Without a display it trains briefly,
segments the validation images, prints the metrics and writes a PNG of image, steps and
instances.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train and segment on the bundled synthetic sample",
        description="Generate touching-cell images, train a small ColorRL agent for a few "
        "minutes, segment held-out images, print the metrics and write a PNG figure. With a "
        "display (and no --headless), opens napari with the sample and both docks instead.",
    )
    p.add_argument("--minutes", type=float, default=3.0, help="training time (default 3)")
    p.add_argument("--out", type=Path, default=Path("colorrl-demo"),
                   help="folder for the checkpoint and the figure (default colorrl-demo/)")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.headless and os.environ.get("DISPLAY"):
        from napari_colorrl.widgets.launch import open_demo_viewer

        return open_demo_viewer(minutes=args.minutes, out=args.out)
    return run_headless_demo(args.minutes, args.out, args.device, args.seed)


def run_headless_demo(minutes: float, out: Path, device: str, seed: int) -> int:
    from napari_colorrl.cli.train import drive
    from napari_colorrl.core.demo import demo_request
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.metrics import evaluate, mean_metrics
    from napari_colorrl.core.training.setup import prepare_training
    from napari_colorrl.core.training.trainer import train

    out.mkdir(parents=True, exist_ok=True)
    setup = prepare_training(demo_request(minutes, device, seed))
    print(f"demo: {len(setup.train)} synthetic training images, training for {minutes:g} "
          f"minutes")
    for line in setup.messages:
        print(line)
    checkpoint = out / "demo.pt"
    code = drive(lambda should_stop: train(setup.config, setup.train, setup.val,
                                           out=checkpoint, should_stop=should_stop),
                 checkpoint, None)
    if code:  # stopped by Ctrl-C or SIGTERM: the checkpoint is kept, nothing more is done
        return code
    segmenter = Segmenter.load(checkpoint, device=device)
    results = [segmenter.segment(s.image) for s in setup.val]
    scores = [evaluate(r.instances, s.labels) for r, s in zip(results, setup.val)]
    mean = mean_metrics(scores)
    print("validation: " + ", ".join(
        f"{k} {mean[k]:.3f}" for k in ("sbd", "abs_dic", "ap50", "map", "aji")))
    figure = out / "demo.png"
    save_figure(figure, setup.val[0], results[0])
    print(f"figure written to {figure}")
    return 0


def save_figure(path: Path, sample, result) -> None:
    """Image, each step map, the color map, instances and ground truth in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.color import label2rgb

    steps = result.steps.shape[0]
    panels = [("image", sample.image, "gray")]
    panels += [(f"step {t + 1}", result.steps[t], "gray") for t in range(steps)]
    panels += [("colors", result.colors, "tab20"),
               ("instances", label2rgb(result.instances, bg_label=0), None),
               ("ground truth", label2rgb(sample.labels, bg_label=0), None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, (title, data, cmap) in zip(axes, panels):
        ax.imshow(data, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
