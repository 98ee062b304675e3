"""``colorrl demo`` with a display: napari with the 2D sample, both docks, training running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Dock settings of the demo, as in ``napari_colorrl.cli.demo.demo_config`` (a small, fast network).
DEMO_SETTINGS = {"size": 128, "radii": "6, 14", "network": "small", "recipe": "fast",
                 "every": 25}


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


def show_dock(widget: Any) -> None:
    """Bring the (tabbed) dock holding ``widget`` to the front."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    if parent is not None:
        parent.show()
        parent.raise_()


def setup_demo(viewer: Any, minutes: float, out: Path, start: bool = True) -> tuple[Any, Any]:
    """Add the cells sample and both docks to ``viewer``; configure (and start) training."""
    from napari_colorrl.sample_data import cells_2d

    (image, image_kwargs, _), (labels, labels_kwargs, _) = cells_2d()
    image_layer = viewer.add_image(image, **image_kwargs)
    labels_layer = viewer.add_labels(labels, **labels_kwargs)
    training, segmentation = add_docks(viewer)
    training.train_pairs.set_pairs([(image_layer, labels_layer)])
    training.set_model_ndim(2)
    training.input_size.setValue(DEMO_SETTINGS["size"])
    training.radii.setText(DEMO_SETTINGS["radii"])
    training.network.setCurrentIndex(training.network.findText(DEMO_SETTINGS["network"],
                                                                 _starts_with()))
    training.recipe.setCurrentText(DEMO_SETTINGS["recipe"])
    training.every.setValue(DEMO_SETTINGS["every"])
    training.budget_kind.setCurrentText("minutes")
    training.budget.setValue(minutes)
    out = Path(out)
    training.output.setText(str(out / "colorrl-demo.pt"))
    training.refresh()
    if start:
        training.start()
    return training, segmentation


def _starts_with() -> Any:
    from qtpy.QtCore import Qt

    return Qt.MatchFlag.MatchStartsWith


def open_demo_viewer(minutes: float, out: Path) -> int:
    """Open napari with the sample, both docks and ``minutes`` of training; returns 0."""
    import napari

    viewer = napari.Viewer(title="ColorRL demo")
    setup_demo(viewer, minutes, Path(out))
    napari.run()
    return 0
