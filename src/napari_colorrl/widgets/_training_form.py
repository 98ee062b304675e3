"""The inputs of the "ColorRL Training" dock: data, method and training settings.

``TrainingForm`` builds the fields (with their tooltips and 2D/3D presets) and turns them into
the nested config dictionary of ``core.config``; ``_training.TrainingWidget`` adds running,
progress and the live plot on top of it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from napari_colorrl.core.config import TRAINING_RECIPES
from napari_colorrl.widgets._layers import LayerPairList, SampleScan

#: Network presets per dimensionality: name -> U-Net widths, top to bottom.
NETWORKS = {
    2: {"small": [16, 32, 64, 128], "medium": [16, 32, 64, 128, 256],
        "paper": [32, 64, 128, 256, 512]},
    3: {"small": [8, 16, 32, 64], "paper": [8, 16, 32, 64, 128],
        "large": [16, 32, 64, 128, 256]},
}
#: Method defaults that differ between 2D and 3D (the rest is in ``core.config``).
DIM_DEFAULTS = {
    2: {"size": 176, "mode": "resize", "radii": "12, 28", "shrink": 0.8, "network": "paper"},
    3: {"size": 64, "mode": "crop", "radii": "6, 12", "shrink": 1.0, "network": "paper"},
}


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.replace(",", " ").split()]
    if not values or min(values) <= 0:
        raise ValueError
    return values


def _path_row(edit: QLineEdit, pick: Any) -> QWidget:
    button = QToolButton()
    button.setText("…")
    button.clicked.connect(pick)
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return box


def _spin(value: float, low: float, high: float, step: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class TrainingForm(QWidget):
    """The dock's input fields; ``refresh`` (re-checking the inputs) is the subclass's."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from napari_colorrl.core.runtime import available_devices

        self.viewer = napari_viewer
        self._ndim_chosen = False
        self.train_scan, self.val_scan = SampleScan(), SampleScan()
        self._scan_timer = QTimer(self, singleShot=True, interval=300)
        self._scan_timer.timeout.connect(self.refresh)

        # --- data ------------------------------------------------------------------------
        self.source = QComboBox()
        self.source.addItems(["layers", "folders"])
        self.source.setToolTip("Train on layers of this viewer, or on folders of image files.")
        self.model_ndim = QComboBox()
        self.model_ndim.addItems(["2D model", "3D model"])
        self.model_ndim.setToolTip(
            "2D: images, or stacks of 2D frames (a 3D layer is split into frames). 3D: volumes.")
        self.train_pairs = LayerPairList(napari_viewer, "+ training pair")
        self.val_pairs = LayerPairList(napari_viewer, "+ validation pair (optional)", rows=0)
        keys = ("images", "labels", "val_images", "val_labels")
        self.folders = {key: QLineEdit() for key in keys}
        folder_box = QWidget()
        folder_form = QFormLayout(folder_box)
        folder_form.setContentsMargins(0, 0, 0, 0)
        for key, edit in self.folders.items():
            edit.setPlaceholderText("optional" if key.startswith("val") else "required")
            edit.setToolTip("Folder of images; labels are matched by file name.")
            edit.textChanged.connect(self.schedule_refresh)
            folder_form.addRow(key.replace("_", " "), _path_row(edit, self._folder_picker(edit)))
        self.folder_box = folder_box
        self.data_status = QLabel()
        self.data_status.setWordWrap(True)
        data = QGroupBox("Data")
        data_layout = QFormLayout(data)
        data_layout.addRow("source", self.source)
        data_layout.addRow("model", self.model_ndim)
        data_layout.addRow(QLabel("training: image / labels"))
        data_layout.addRow(self.train_pairs)
        data_layout.addRow(self.val_pairs)
        data_layout.addRow(folder_box)
        data_layout.addRow(self.data_status)

        # --- method ----------------------------------------------------------------------
        self.steps = QSpinBox()
        self.steps.setRange(0, 16)
        self.steps.setSpecialValueText("auto")
        self.steps.setToolTip(
            "T, the number of binary coloring steps (2^T colors). auto: the smallest T with "
            "2^(T-1)+1 >= the most neighbours of any object within the largest radius.")
        self.auto_steps = QLabel()
        steps_row = QWidget()
        steps_layout = QHBoxLayout(steps_row)
        steps_layout.setContentsMargins(0, 0, 0, 0)
        steps_layout.addWidget(self.steps)
        steps_layout.addWidget(self.auto_steps, 1)
        self.radii = QLineEdit()
        self.radii.setToolTip(
            "Splitting radii in pixels at the network's input size: objects closer than a radius "
            "must get different colors (one ring per radius).")
        self.w_split = _spin(1.5, 0.0, 10.0, 0.1, "w_s: weight of the split reward (keep >= w_m).")
        self.w_merge = _spin(1.0, 0.0, 10.0, 0.1, "w_m: weight of the merge reward.")
        self.shrink = _spin(0.8, 0.1, 1.0, 0.05,
                            "Interior shrink alpha: the interior keeps about alpha^2 of an "
                            "object's area (1 = no erosion).")
        self.beta = _spin(0.3, 0.0, 1.0, 0.05, "beta: weight of background vs foreground reward.")
        self.input_size = QSpinBox()
        self.input_size.setRange(8, 4096)
        self.input_size.setToolTip("Network input size S (pixels per axis).")
        self.input_mode = QComboBox()
        self.input_mode.addItems(["resize", "crop"])
        self.input_mode.setToolTip(
            "resize: images are resized to S (the paper's 2D setting); crop: training on random "
            "S-sized crops, inference on the whole image.")
        size_row = QWidget()
        size_layout = QHBoxLayout(size_row)
        size_layout.setContentsMargins(0, 0, 0, 0)
        size_layout.addWidget(self.input_size, 1)
        size_layout.addWidget(self.input_mode, 1)
        self.network = QComboBox()
        self.network.setEditable(True)
        self.network.setToolTip(
            "U-Net widths from top to bottom; pick a preset or type your own, e.g. 8, 16, 32.")
        method = QGroupBox("Method")
        form = QFormLayout(method)
        form.addRow("steps T", steps_row)
        form.addRow("radii", self.radii)
        form.addRow("w_s / w_m", self._pair(self.w_split, self.w_merge))
        form.addRow("shrink / beta", self._pair(self.shrink, self.beta))
        form.addRow("input", size_row)
        form.addRow("network", self.network)

        # --- training --------------------------------------------------------------------
        self.recipe = QComboBox()
        self.recipe.addItems(list(TRAINING_RECIPES))
        # The dock defaults to "fast": on a laptop CPU it is the difference between minutes and
        # hours before the coloring is useful. The core's own default stays the paper's.
        self.recipe.setCurrentText("fast")
        self.recipe.setToolTip(
            "fast: learns most per CPU-minute (higher learning rate with gradient clipping, "
            "normalised advantages, decaying entropy bonus). paper: the authors' settings "
            "(lr 1e-4, then 1e-5). Same method either way.")
        self.lr = QLineEdit(f"{TRAINING_RECIPES['fast']['lr']:g}")
        self.lr.setToolTip("Learning rate (Adam); lowered for the last part of the budget, as "
                           "the recipe says (paper: a tenth for the last 30%).")
        self.recipe.currentTextChanged.connect(
            lambda name: self.lr.setText(f"{TRAINING_RECIPES[name]['lr']:g}"))
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(4)
        self.batch_size.setToolTip("Episodes (images or crops) per update.")
        self.budget_kind = QComboBox()
        self.budget_kind.addItems(["episodes", "minutes"])
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.1, 1e7)
        self.budget.setDecimals(1)
        self.budget.setValue(2000)
        self.budget.setToolTip("How long to train: a number of episodes, or minutes.")
        self.budget_kind.currentTextChanged.connect(
            lambda kind: self.budget.setValue(10 if kind == "minutes" else 2000))
        self.every = QSpinBox()
        self.every.setRange(1, 100000)
        self.every.setValue(50)
        self.every.setToolTip("Validate and save a checkpoint every this many updates.")
        self.device = QComboBox()
        self.device.addItems(available_devices())
        self.device.setToolTip("auto picks CUDA, then Apple MPS, then the CPU.")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.output = QLineEdit(str(Path.home() / "colorrl-models" / f"colorrl-{stamp}.pt"))
        self.output.setToolTip("Checkpoint to write (also on Stop); the best one by validation "
                               "SBD goes next to it as .best.pt.")
        self.resume = QLineEdit()
        self.resume.setPlaceholderText("optional")
        self.resume.setToolTip("Continue training from this checkpoint (same T and dimensions).")
        training = QGroupBox("Training")
        form = QFormLayout(training)
        form.addRow("recipe", self.recipe)
        form.addRow("learning rate", self.lr)
        form.addRow("batch size", self.batch_size)
        form.addRow("budget", self._pair(self.budget, self.budget_kind))
        form.addRow("val./save every", self.every)
        form.addRow("device", self.device)
        form.addRow("output", _path_row(self.output, self._pick_output))
        form.addRow("resume", _path_row(self.resume, self._pick_resume))
        self.inputs = [data, method, training]

    # --- inputs ---------------------------------------------------------------------------
    @staticmethod
    def _pair(left: QWidget, right: QWidget) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(left, 1)
        row.addWidget(right, 1)
        return box

    def _folder_picker(self, edit: QLineEdit):
        def pick() -> None:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
            if path:
                edit.setText(path)
        return pick

    def _pick_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Checkpoint to write", self.output.text(),
                                              "Checkpoints (*.pt)")
        if path:
            self.output.setText(path)

    def _pick_resume(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to resume", "",
                                              "Checkpoints (*.pt)")
        if path:
            self.resume.setText(path)

    @property
    def ndim(self) -> int:
        return 3 if self.model_ndim.currentIndex() == 1 else 2

    def _ndim_picked(self, *_: Any) -> None:
        self._ndim_chosen = True

    def set_model_ndim(self, ndim: int) -> None:
        """Choose a 2D or 3D model (as the user would; the data no longer decides)."""
        self._ndim_chosen = True
        self.model_ndim.setCurrentIndex(1 if ndim == 3 else 0)

    def apply_dim_defaults(self) -> None:
        """Input size, mode, radii, shrink and network presets of the chosen dimensionality."""
        defaults = DIM_DEFAULTS[self.ndim]
        self.input_size.setValue(defaults["size"])
        self.input_mode.setCurrentText(defaults["mode"])
        self.radii.setText(defaults["radii"])
        self.shrink.setValue(defaults["shrink"])
        self.network.clear()
        for name, features in NETWORKS[self.ndim].items():
            self.network.addItem(f"{name}: {', '.join(map(str, features))}")
        self.network.setCurrentIndex(list(NETWORKS[self.ndim]).index(defaults["network"]))
        self.schedule_refresh()

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when the layer list changes."""
        self.train_pairs.reset_choices()
        self.val_pairs.reset_choices()
        self.schedule_refresh()

    def schedule_refresh(self, *_: Any) -> None:
        self._scan_timer.start()

    def overrides(self) -> dict:
        """The dock's settings as a nested config dictionary; ValueError names a bad one."""
        try:
            radii = _ints(self.radii.text())
        except ValueError:
            raise ValueError("Radii must be positive whole numbers, e.g. 12, 28.") from None
        try:
            features = _ints(self.network.currentText().split(":")[-1])
        except ValueError:
            raise ValueError("Network: give whole-number widths, e.g. 16, 32, 64.") from None
        if len(features) < 2:
            raise ValueError("Network: give at least two widths.")
        try:
            lr = float(self.lr.text())
        except ValueError:
            lr = -1.0
        if not 0 < lr < 1:
            raise ValueError("The learning rate must be a number between 0 and 1, e.g. 1e-4.")
        recipe = TRAINING_RECIPES[self.recipe.currentText()]
        return {
            "input_mode": self.input_mode.currentText(),
            "network": {"features": features},
            "reward": {"radii": radii, "w_split": self.w_split.value(),
                       "w_merge": self.w_merge.value(), "interior_shrink": self.shrink.value(),
                       "beta": self.beta.value()},
            "train": {**recipe, "lr": lr, "lr_final": lr * recipe["lr_final"] / recipe["lr"],
                      "batch_size": self.batch_size.value(),
                      "val_every": self.every.value(), "checkpoint_every": self.every.value()},
        }

    def refresh(self) -> None:
        raise NotImplementedError
