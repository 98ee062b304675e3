"""``colorrl demo`` with a display: napari with the 2D sample, both docks, training running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_colorrl.widgets import show_dock


def add_docks(viewer: Any) -> tuple[Any, Any]:
    """Dock "ColorRL Training" and "ColorRL Segmentation" (tabbed) on the right of ``viewer``."""
    from napari_colorrl.widgets._segmentation import SegmentationWidget
    from napari_colorrl.widgets._training import TrainingWidget

    training, segmentation = TrainingWidget(viewer), SegmentationWidget(viewer)
    viewer.window.add_dock_widget(training, name="ColorRL Training", area="right")
    viewer.window.add_dock_widget(segmentation, name="ColorRL Segmentation", area="right",
                                  tabify=True)
    show_dock(training)
    return training, segmentation


def setup_demo(viewer: Any, minutes: float, out: Path, start: bool = True) -> tuple[Any, Any]:
    """Add the demo's training and validation cells (``core.demo``, the same as the headless
    demo's) as stacks of frames and both docks to ``viewer``; configure (and start) training."""
    import numpy as np

    from napari_colorrl.core.demo import DEMO_RECIPE, demo_samples, demo_settings

    train, val = demo_samples()
    layers = []
    for what, samples in (("training", train), ("validation", val)):
        image = viewer.add_image(np.stack([s.image for s in samples]), name=f"cells ({what})",
                                 colormap="gray", visible=what == "training")
        labels = viewer.add_labels(np.stack([s.labels for s in samples]),
                                   name=f"cells {what} ground truth", opacity=0.5,
                                   visible=what == "training")
        layers.append((image, labels))
    training, segmentation = add_docks(viewer)
    training.train_pairs.set_pairs([layers[0]])
    training.val_pairs.set_pairs([layers[1]])
    training.set_model_ndim(2)
    training.recipe.setCurrentText(DEMO_RECIPE)
    training.apply_settings(demo_settings(minutes))
    training.output.setText(str(Path(out) / "colorrl-demo.pt"))
    training.refresh()
    if start:
        training.start()
    return training, segmentation


def open_demo_viewer(minutes: float, out: Path) -> int:
    """Open napari with the sample, both docks and ``minutes`` of training; returns 0."""
    import napari

    viewer = napari.Viewer(title="ColorRL demo")
    setup_demo(viewer, minutes, Path(out))
    napari.run()
    return 0
