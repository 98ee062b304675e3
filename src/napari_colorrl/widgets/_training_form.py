"""The inputs of the "ColorRL Training" dock: data, method and training settings.

``TrainingForm`` builds the fields (with their tooltips and 2D/3D presets) and turns them into
the nested config dictionary of ``core.config``; ``_training_inputs.TrainingInputs`` checks
them as they change, and ``_training.TrainingWidget`` adds running, progress and the live plot
on top.
"""

from __future__ import annotations

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

from napari_colorrl.core.config import SETTINGS_BY_PATH, ColorRLConfig
from napari_colorrl.core.model.checkpoint_paths import fresh_output_path
from napari_colorrl.core.recipes import (
    DEFAULT_RECIPE,
    FINETUNE_RECIPE,
    NETWORK_PRESETS,
    TRAINING_RECIPES,
    budget_expectation,
    machine_defaults,
)
from napari_colorrl.widgets._layers import LayerPairList, SampleScan
from napari_colorrl.widgets._settings import read_value, set_value, setting_editor

NEW_MODEL = "new model"


def _path_row(edit: QWidget, pick: Any) -> QWidget:
    button = QToolButton()
    button.setText("…")
    button.clicked.connect(pick)
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return box


class TrainingForm(QWidget):
    """The dock's input fields; ``refresh`` (re-checking the inputs) is the subclass's."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from napari_colorrl.core.runtime import available_devices

        self.viewer = napari_viewer
        self._ndim_chosen = False
        self.extra_settings: dict[str, Any] = {}
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
        self.auto_steps.setWordWrap(True)
        self.radii = setting_editor("reward.radii")
        self.w_split = setting_editor("reward.w_split")
        self.w_merge = setting_editor("reward.w_merge")
        self.shrink = setting_editor("reward.interior_shrink")
        self.beta = setting_editor("reward.beta")
        size = SETTINGS_BY_PATH["input_size"]
        self.input_size = QSpinBox()
        self.input_size.setRange(int(size.low), int(size.high))
        self.input_size.setToolTip(f"input_size: {size.help}; the same on every axis.")
        self.input_mode = setting_editor("input_mode")
        self.input_scale = setting_editor("input_scale")
        size_row = QWidget()
        size_layout = QHBoxLayout(size_row)
        size_layout.setContentsMargins(0, 0, 0, 0)
        size_layout.addWidget(self.input_size, 1)
        size_layout.addWidget(self.input_mode, 1)
        self.network = QComboBox()
        self.network.setEditable(True)
        self.network.setToolTip(
            f"network.features: {SETTINGS_BY_PATH['network.features'].help}; pick a preset or "
            f"type your own, e.g. 8, 16, 32.")
        method = QGroupBox("Method")
        form = QFormLayout(method)
        form.addRow("steps T", self.steps)
        form.addRow(self.auto_steps)
        form.addRow("radii", self.radii)
        form.addRow("w_split", self.w_split)
        form.addRow("w_merge", self.w_merge)
        form.addRow("shrink", self.shrink)
        form.addRow("beta", self.beta)
        form.addRow("input", size_row)
        form.addRow("scale", self.input_scale)
        form.addRow("network", self.network)

        # --- training --------------------------------------------------------------------
        self.recipe = QComboBox()
        self.recipe.addItems(list(TRAINING_RECIPES))
        self.recipe.setCurrentText(DEFAULT_RECIPE)  # the same as colorrl train's
        self.recipe.setToolTip(
            "fast: learns most per CPU-minute (higher learning rate with gradient clipping, "
            "normalised advantages, decaying entropy bonus). paper: the authors' settings "
            "(lr 1e-4, then 1e-5). Same method either way.")
        self.lr = setting_editor("train.lr")
        set_value(self.lr, "train.lr", TRAINING_RECIPES[DEFAULT_RECIPE]["lr"])
        self.recipe.currentTextChanged.connect(
            lambda name: set_value(self.lr, "train.lr", TRAINING_RECIPES[name]["lr"]))
        self.batch_size = setting_editor("train.batch_size")
        self.budget_kind = QComboBox()
        self.budget_kind.addItems(["minutes", "episodes"])
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.1, 1e7)
        self.budget.setDecimals(1)
        self.budget.setToolTip("How long to train: minutes, or a number of episodes.")
        self.budget_kind.currentTextChanged.connect(self._budget_kind_changed)
        self.expectation = QLabel()  # how long, and what such a budget tends to give
        self.expectation.setWordWrap(True)
        self.budget.valueChanged.connect(lambda _: self._show_expectation())
        self.every = setting_editor("train.val_every")
        self.every.setToolTip("Validate and save a checkpoint every this many updates "
                              "(train.val_every and train.checkpoint_every).")
        self.device = QComboBox()
        self.device.addItems(available_devices())
        self.device.setToolTip("auto picks CUDA, then Apple MPS, then the CPU. The network and "
                               "budget a new run starts from depend on it.")
        self.device.currentTextChanged.connect(self._device_changed)
        self.output = QLineEdit(str(fresh_output_path(Path.home() / "colorrl-models")))
        self.auto_output = True  # the dock's own proposal: a fresh one at every Start
        self.output.textEdited.connect(lambda _: setattr(self, "auto_output", False))
        self.output.setToolTip("Checkpoint to write (also on Stop); the best one by validation "
                               "SBD goes next to it as .best.pt.")
        self.resume = QLineEdit()
        self.resume.setPlaceholderText("optional")
        self.resume.setToolTip("Continue training from this checkpoint (same T and dimensions).")
        from napari_colorrl.core.model.bundled import available_models

        self.start_from = QComboBox()
        self.start_from.setEditable(True)
        self.start_from.addItems([NEW_MODEL, *available_models()])
        self.start_from.setToolTip(
            "Fine-tune: start from the weights and method settings (T, network, input, rewards) "
            "of a bundled model, a checkpoint or a bioimage.io package (.zip) written by "
            "colorrl export, with a fresh schedule on these data. "
            f"'{NEW_MODEL}': random weights and the settings above.")
        self.start_from.currentTextChanged.connect(self._start_from_changed)
        training = QGroupBox("Training")
        form = QFormLayout(training)
        form.addRow("recipe", self.recipe)
        form.addRow("learning rate", self.lr)
        form.addRow("batch size", self.batch_size)
        form.addRow("budget", self.budget)
        form.addRow("budget in", self.budget_kind)
        form.addRow(self.expectation)
        form.addRow("save every", self.every)
        form.addRow("device", self.device)
        form.addRow("output", _path_row(self.output, self._pick_output))
        form.addRow("start from", _path_row(self.start_from, self._pick_start))
        form.addRow("resume", _path_row(self.resume, self._pick_resume))
        self.method_box = method
        self.inputs = [data, method, training]
        for box in self.inputs:  # combos as narrow as the dock: their text is in the tooltip
            for combo in box.findChildren(QComboBox):
                combo.setSizeAdjustPolicy(
                    QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                combo.setMinimumContentsLength(min(combo.minimumContentsLength() or 8, 8))

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

    def _pick_start(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Model to start from", "",
            "ColorRL models (*.pt *.zip);;Checkpoints (*.pt);;bioimage.io packages (*.zip)")
        if path:
            self.start_from.setEditText(path)

    def init_model(self) -> str | None:
        """The model to fine-tune (a bundled name or a checkpoint path), or None."""
        text = self.start_from.currentText().strip()
        return None if text in ("", NEW_MODEL) else text

    def _start_from_changed(self, *_: Any) -> None:
        # A fine-tune takes T, network and input from its model: those fields do not apply;
        # its recipe is the gentle one, as colorrl train --init's.
        self.method_box.setEnabled(self.init_model() is None)
        self.recipe.setCurrentText(DEFAULT_RECIPE if self.init_model() is None
                                   else FINETUNE_RECIPE)
        self.schedule_refresh()

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

    def device_type(self) -> str:
        """"cpu", "cuda" or "mps": the kind of device the chosen one resolves to."""
        from napari_colorrl.core.runtime import resolve_device

        try:
            return resolve_device(self.device.currentText()).type
        except ValueError:
            return "cpu"

    def _budget_kind_changed(self, kind: str) -> None:
        machine = machine_defaults(self.ndim, self.device_type())
        self.budget.setValue(machine["train.minutes"] if kind == "minutes"
                             else SETTINGS_BY_PATH["train.episodes"].default)
        self._show_expectation()

    def _show_expectation(self) -> None:
        minutes = self.budget.value() if self.budget_kind.currentText() == "minutes" else None
        self.expectation.setText(budget_expectation(self.ndim, minutes, self.device_type()))

    def apply_dim_defaults(self) -> None:
        """Input size, mode, radii, shrink, network and budget of the chosen dimensionality and
        device, from the core's defaults, presets and machine defaults (as colorrl train)."""
        defaults = ColorRLConfig.default_for(self.ndim)
        self.input_size.setValue(defaults.input_size[0])
        set_value(self.input_mode, "input_mode", defaults.input_mode)
        set_value(self.input_scale, "input_scale", defaults.input_scale)
        set_value(self.radii, "reward.radii", defaults.reward.radii)
        set_value(self.shrink, "reward.interior_shrink", defaults.reward.interior_shrink)
        presets = NETWORK_PRESETS[self.ndim]
        self.network.clear()
        for name, features in presets.items():
            self.network.addItem(f"{name}: {', '.join(map(str, features))}")
        self.apply_machine_defaults()

    def _device_changed(self, *_: Any) -> None:
        # Another kind of device (a GPU instead of the CPU): its network and budget. The same
        # kind ("auto" that is the CPU, then "cpu"): the fields stay as the user set them.
        if self.device_type() != getattr(self, "_machine_type", None):
            self.apply_machine_defaults()

    def apply_machine_defaults(self) -> None:
        """The network preset and the budget in minutes for the chosen device."""
        self._machine_type = self.device_type()
        machine = machine_defaults(self.ndim, self._machine_type)
        presets = NETWORK_PRESETS[self.ndim]
        default = next(name for name, f in presets.items()
                       if list(f) == machine["network.features"])
        self.network.setCurrentIndex(list(presets).index(default))
        self.budget_kind.setCurrentText("minutes")
        self.budget.setValue(machine["train.minutes"])
        self._show_expectation()
        self.schedule_refresh()

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when the layer list changes."""
        self.train_pairs.reset_choices()
        self.val_pairs.reset_choices()
        self.schedule_refresh()

    def schedule_refresh(self, *_: Any) -> None:
        self._scan_timer.start()

    def editors(self) -> dict[str, Any]:
        """The fields made from the settings table, by setting."""
        return {"input_mode": self.input_mode, "input_scale": self.input_scale,
                "reward.radii": self.radii,
                "reward.w_split": self.w_split, "reward.w_merge": self.w_merge,
                "reward.interior_shrink": self.shrink, "reward.beta": self.beta,
                "train.lr": self.lr, "train.batch_size": self.batch_size,
                "train.val_every": self.every}

    def settings(self) -> dict[str, Any]:
        """The dock's settings as dotted paths of the settings table (the recipe comes on top
        of the defaults, these on top of the recipe); ValueError names a bad one."""
        values = {path: read_value(editor, path) for path, editor in self.editors().items()}
        text = self.network.currentText().split(":")[-1]
        try:
            features = [int(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError("Network: give whole-number widths, e.g. 16, 32, 64.") from None
        SETTINGS_BY_PATH["network.features"].check(features)
        if len(features) < 2:
            raise ValueError("Network: give at least two widths, e.g. 16, 32, 64.")
        values["network.features"] = features
        values["train.checkpoint_every"] = values["train.val_every"]
        values["input_size"] = self.input_size.value()
        return {**self.extra_settings, **values}

    def apply_settings(self, settings: dict[str, Any]) -> None:
        """Show ``settings`` (dotted paths) in the form; those it has no field for (e.g. the
        demo's network.input_features) are kept and sent with the form's own."""
        editors = self.editors()
        for path, value in settings.items():
            if path in editors:
                set_value(editors[path], path, value)
            elif path == "input_size":
                self.input_size.setValue(int(value))
            elif path == "network.features":
                presets = NETWORK_PRESETS[self.ndim]
                named = [name for name, f in presets.items() if list(f) == list(value)]
                if named:
                    self.network.setCurrentIndex(list(presets).index(named[0]))
                else:
                    self.network.setEditText(", ".join(map(str, value)))
            elif path == "steps":
                self.steps.setValue(0 if value == "auto" else int(value))
            elif path in ("train.minutes", "train.episodes"):
                self.budget_kind.setCurrentText(path.split(".")[1])
                self.budget.setValue(value)
            elif path == "train.device":
                self.device.setCurrentText(value)
            elif path != "train.checkpoint_every":
                self.extra_settings[path] = value

    def refresh(self) -> None:
        raise NotImplementedError
