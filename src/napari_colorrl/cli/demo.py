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

DEMO_NETWORK = {"features": [16, 32, 64, 128], "attention": True, "input_features": 8}


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


def demo_samples(n_train: int = 12, n_val: int = 3, seed: int = 0, size: int = 128):
    """Synthetic training and validation samples (``core.io.Sample``)."""
    from napari_colorrl.core.data.files import Sample
    from napari_colorrl.core.data.synthetic import make_cells_2d

    def make(i: int) -> Sample:
        image, labels = make_cells_2d(shape=(size, size), n_objects=10, seed=seed + i)
        return Sample(name=f"cells_{i:02d}", image=image, labels=labels)

    return [make(i) for i in range(n_train)], [make(1000 + i) for i in range(n_val)]


def demo_config(minutes: float, device: str, seed: int, size: int = 128):
    from napari_colorrl.core.config import TRAINING_RECIPES, ColorRLConfig

    return ColorRLConfig.from_dict({
        "ndim": 2, "steps": 4, "input_size": [size, size], "min_size": 10,
        "network": DEMO_NETWORK,
        "reward": {"radii": [6, 14], "interior_shrink": 0.8},
        "train": {**TRAINING_RECIPES["fast"], "minutes": minutes, "batch_size": 4,
                  "device": device, "seed": seed, "val_every": 25, "checkpoint_every": 25},
    })


def run(args: argparse.Namespace) -> int:
    if not args.headless and os.environ.get("DISPLAY"):
        from napari_colorrl.widgets.launch import open_demo_viewer

        return open_demo_viewer(minutes=args.minutes, out=args.out)
    return run_headless_demo(args.minutes, args.out, args.device, args.seed)


def run_headless_demo(minutes: float, out: Path, device: str, seed: int) -> int:
    from napari_colorrl.cli.train import drive
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.method.steps import auto_steps
    from napari_colorrl.core.metrics import evaluate, mean_metrics
    from napari_colorrl.core.training.trainer import train

    out.mkdir(parents=True, exist_ok=True)
    train_samples, val_samples = demo_samples(seed=seed)
    config = demo_config(minutes, device, seed)
    steps, n_b = auto_steps([s.labels for s in train_samples], config)
    config = config.replace(steps=steps)
    print(f"demo: {len(train_samples)} synthetic training images, T = {steps} "
          f"(most neighbours of any cell: {n_b}), training for {minutes:g} minutes")
    checkpoint = out / "demo.pt"
    drive(train(config, train_samples, val_samples, out=checkpoint), checkpoint, None)
    segmenter = Segmenter.load(checkpoint, device=device)
    results = [segmenter.segment(s.image) for s in val_samples]
    scores = [evaluate(r.instances, s.labels) for r, s in zip(results, val_samples)]
    mean = mean_metrics(scores)
    print("validation: " + ", ".join(
        f"{k} {mean[k]:.3f}" for k in ("sbd", "abs_dic", "ap50", "map", "aji")))
    figure = out / "demo.png"
    save_figure(figure, val_samples[0], results[0])
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
