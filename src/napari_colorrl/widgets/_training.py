"""The "ColorRL Training" dock: layers or folders in, core trainer in a thread worker, live curves.

All of the method lives in ``core``: this dock turns its inputs into a
``core.training_setup.TrainingRequest``, drives ``core.trainer.train`` (a generator of reports)
in a napari thread worker and shows the reports.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
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
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.config import TRAINING_RECIPES
from . import Failure, register_checkpoint, relay_warnings
from ._closing import stop_and_wait, watch_main_window
from ._layers import LayerPairList, SampleScan, pair_problem, samples_from_layers
from ._plot import TrainingPlot

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


def _training_run(request: Any, out: Path, stop: threading.Event):
    """Worker body (runs in the worker thread): yields the ``TrainingSetup``, then one
    ``TrainingReport`` per update. ``stop`` closes the core generator here, in this thread, which
    writes the checkpoint (superqt's ``quit()`` would leave it to the garbage collector). Errors
    come back as a ``Failure`` value, since superqt drops RuntimeErrors."""
    from ..core.trainer import train
    from ..core.training_setup import prepare_training

    try:
        setup = prepare_training(request)
        yield setup
        if stop.is_set():
            return None
        run = train(setup.config, setup.train, setup.val, out=out, resume=request.resume)
        for report in run:
            yield report
            if stop.is_set():
                run.close()
                break
    except Exception as err:  # noqa: BLE001 - every failure goes to the user
        return Failure(err)
    return None


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


class TrainingWidget(QWidget):
    """Train a ColorRL agent on image/Labels layers (or folders) of the viewer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        from ..core.device import available_devices

        self.viewer = napari_viewer
        self.setMinimumWidth(340)
        self.worker = None
        self.running = False
        self.last_checkpoint: Path | None = None
        self.history: list = []  # the reports of the current run
        self._stop = threading.Event()
        self._ndim_chosen = False
        self._notified: str | None = None
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

        # --- run -------------------------------------------------------------------------
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self.toggle)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.plot = TrainingPlot(*_theme_colors(napari_viewer))
        self.inputs = [data, method, training]

        content = QWidget()
        layout = QVBoxLayout(content)
        for widget in (data, method, training, self.start_button, self.progress, self.status,
                       self.plot):
            layout.addWidget(widget)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        for signal in (self.source.currentTextChanged, self.train_pairs.changed,
                       self.val_pairs.changed, self.radii.textChanged,
                       self.input_size.valueChanged, self.input_mode.currentTextChanged,
                       self.network.currentTextChanged, self.lr.textChanged):
            signal.connect(self.schedule_refresh)
        self.model_ndim.activated.connect(self._ndim_picked)
        self.model_ndim.currentIndexChanged.connect(lambda _: self.apply_dim_defaults())
        self.apply_dim_defaults()
        self.refresh()

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

    def scan_layers(self) -> str | None:
        """Read the chosen layers into samples; return what is wrong, if anything."""
        scans = []
        for pairs in (self.train_pairs.pairs(), self.val_pairs.pairs()):
            scan = SampleScan()
            for image, labels in pairs:
                problem = pair_problem(image, labels, self.ndim)
                if problem:
                    return problem
                try:
                    scan.extend(samples_from_layers(image, labels, self.ndim))
                except ValueError as err:  # e.g. negative label ids
                    return str(err)
            scans.append(scan)
        self.train_scan, self.val_scan = scans
        if not self.train_scan.samples:
            return "No labelled frame or volume found in the training layers."
        return None

    def problems(self) -> list[str]:
        """What keeps training from starting (empty when Start is possible)."""
        found = []
        if self.source.currentText() == "layers":
            pairs = self.train_pairs.pairs()
            first = next((labels for _, labels in pairs if labels is not None), None)
            if first is not None and not self._ndim_chosen:
                self.model_ndim.setCurrentIndex(1 if first.ndim >= 3 else 0)
            if not pairs:
                found.append("Add a training pair (image and labels layers).")
            elif problem := self.scan_layers():
                found.append(problem)
        elif not (self.folders["images"].text() and self.folders["labels"].text()):
            found.append("Choose the training image and label folders.")
        try:
            self.overrides()
        except ValueError as err:
            found.append(str(err))
        return found

    def refresh(self) -> None:
        """Re-check the inputs: sample count, automatic T, Start button."""
        use_layers = self.source.currentText() == "layers"
        for widget in (self.train_pairs, self.val_pairs):
            widget.setVisible(use_layers)
        self.folder_box.setVisible(not use_layers)
        found = self.problems()
        if not self.running:
            self.start_button.setEnabled(not found)
        if found:
            self.data_status.setText(f"<span style='color:#e8743b'>{found[0]}</span>")
            self.auto_steps.setText("")
            self._notify_problem(found[0])
            return
        self._notified = None
        if not use_layers:
            self.data_status.setText("Samples are read from the folders when training starts.")
            self.auto_steps.setText("(from the labels at start)")
            return
        train, val = self.train_scan, self.val_scan
        skipped = train.skipped + val.skipped
        text = f"Found {len(train.samples)} training and {len(val.samples)} validation samples"
        self.data_status.setText(
            text + (f" ({skipped} without labels skipped)." if skipped else "."))
        try:
            self.auto_steps.setText(self._auto_steps_text())
        except ValueError as err:  # labels the neighbour count cannot read: say why
            self.auto_steps.setText("")
            self.data_status.setText(f"<span style='color:#e8743b'>{err}</span>")

    def _auto_steps_text(self) -> str:
        from ..core.config import ColorRLConfig
        from ..core.environment import auto_steps

        overrides = self.overrides()
        config = ColorRLConfig.from_dict({
            "ndim": self.ndim, "input_size": [self.input_size.value()] * self.ndim,
            "input_mode": overrides["input_mode"], "reward": overrides["reward"]})
        steps, neighbours = auto_steps([s.labels for s in self.train_scan.samples], config)
        return f"auto: T = {steps} (up to {neighbours} neighbours)"

    def request(self) -> Any:
        """The ``TrainingRequest`` for the current inputs (reads the layers again)."""
        from ..core.training_setup import TrainingRequest

        kind = self.budget_kind.currentText()
        resume = Path(self.resume.text()).expanduser() if self.resume.text().strip() else None
        steps = self.steps.value() or ("auto" if resume is None else None)
        common = {
            "ndim": self.ndim, "overrides": self.overrides(), "size": self.input_size.value(),
            "steps": steps, "device": self.device.currentText(), "resume": resume,
            "minutes": self.budget.value() if kind == "minutes" else None,
            "episodes": int(self.budget.value()) if kind == "episodes" else None,
        }
        if self.source.currentText() == "folders":
            paths = {k: Path(e.text()).expanduser() if e.text().strip() else None
                     for k, e in self.folders.items()}
            return TrainingRequest(**paths, **common)
        problem = self.scan_layers()
        if problem:
            raise ValueError(problem)
        return TrainingRequest(samples=self.train_scan.samples,
                               val_samples=self.val_scan.samples, **common)

    # --- running --------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> None:
        """Start training in a thread worker (``self.worker``)."""
        if self.running:
            return
        try:
            request = self.request()
        except ValueError as err:
            show_error(str(err))
            return
        from ..core.checks import ensure_writable

        out = Path(self.output.text()).expanduser()
        try:
            ensure_writable(out.parent, what="checkpoint")
        except PermissionError as err:
            show_error(str(err))
            return
        self._stop = threading.Event()
        self.history = []
        self.plot.clear()
        self.plot.show_validation(bool(request.val_samples) or request.val_images is not None)
        self.worker = thread_worker(_training_run, start_thread=False)(request, out, self._stop)
        self.worker.yielded.connect(self._on_yield)
        relay_warnings(self.worker, "ColorRL training")
        self.worker.returned.connect(lambda result: self._on_returned(result, out))
        self.worker.finished.connect(lambda: self._on_finished(out))
        self.running = True
        watch_main_window(self)  # closing napari now asks first
        for box in self.inputs:
            box.setEnabled(False)
        self.start_button.setText("Stop (saves a checkpoint)")
        self.progress.setRange(0, 0)
        self.status.setText("Preparing the training data…")
        self.worker.start()

    def stop(self) -> None:
        """Stop after the current update; the core writes the checkpoint on its way out."""
        if self.running and not self._stop.is_set():
            self._stop.set()
            self.start_button.setEnabled(False)
            self.start_button.setText("Stopping…")

    def _on_yield(self, item: Any) -> None:
        if hasattr(item, "messages"):  # the TrainingSetup
            self.status.setText("\n".join(item.messages))
            self.auto_steps.setText(f"this run: T = {item.config.steps}")
            return
        self.history.append(item)
        self.plot.add_report(item)
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * item.progress))
        left = "" if item.eta_seconds is None else f" · {_clock(item.eta_seconds)} left"
        self.progress.setFormat(f"{100 * item.progress:.0f}%{left}")
        line = f"update {item.update} · reward {item.reward:+.3f} · loss {item.loss:.3g}"
        scores = next((r.validation for r in reversed(self.history) if r.validation), None)
        if scores:
            line += f" · val. SBD {scores['sbd']:.3f}"
        self.status.setText(line)
        if item.checkpoint:
            self.last_checkpoint = Path(item.checkpoint)
            register_checkpoint(item.checkpoint)

    def _on_returned(self, result: Any, out: Path) -> None:
        if isinstance(result, Failure):
            kept = f" The last checkpoint is kept: {out}." if out.exists() else ""
            show_error(f"ColorRL training stopped: {result.message}{kept}")
            self.status.setText(f"Failed: {result.message}")
        elif out.exists():
            show_info(f"ColorRL checkpoint saved: {out}")

    def _on_finished(self, out: Path) -> None:
        self.running = False
        self.worker = None  # the thread is done; drop the generator and what it holds
        if out.exists():
            self.last_checkpoint = out
            register_checkpoint(out)
        for box in self.inputs:
            box.setEnabled(True)
        self.start_button.setText("Start training")
        self.progress.setRange(0, 1000)
        self.progress.setFormat("done" if self.history else "idle")
        self.refresh()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.stop()
        super().closeEvent(event)

    def stop_and_wait(self, timeout_s: float = 600.0) -> bool:
        """Stop training and wait until the worker has saved and ended (see ``_closing``)."""
        return stop_and_wait(self, timeout_s)

    def _notify_problem(self, problem: str) -> None:
        """A napari notification for a problem in the chosen data, once per distinct problem
        (the status line keeps showing it while it lasts)."""
        routine = ("Add a training pair", "Choose ")
        if problem != self._notified and not problem.startswith(routine):
            self._notified = problem
            show_warning(f"ColorRL training: {problem}")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _theme_colors(viewer: Any) -> tuple[str, str]:
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - a plot in default colours is fine
        return "#262930", "#f0f1f2"
