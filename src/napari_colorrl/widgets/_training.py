"""The "ColorRL Training" dock: layers or folders in, core trainer in a thread worker, live curves.

All of the method lives in ``core``: this dock turns its inputs into a
``core.training.setup.TrainingRequest``, drives ``core.training.trainer.train`` (a generator of
reports) in a napari thread worker (its body: ``_training_run.training_run``) and shows the
reports.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFrame,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_colorrl.widgets import (
    Failure,
    register_checkpoint,
    relay_warnings,
    training_docks,
)
from napari_colorrl.widgets._closing import stop_and_wait, watch_main_window
from napari_colorrl.widgets._plot import TrainingPlot
from napari_colorrl.widgets._training_inputs import TrainingInputs
from napari_colorrl.widgets._training_run import clock, finished_text, training_run


class TrainingWidget(TrainingInputs):
    """Train a ColorRL agent on image/Labels layers (or folders) of the viewer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.setMinimumWidth(360)  # every tab fits without sideways scrolling
        self.worker = None
        self.last_checkpoint: Path | None = None
        self.history: list = []  # the reports of the current run
        self._stop = threading.Event()
        training_docks.add(self)  # the segmentation dock's "Retrain" finds this dock

        # --- run -------------------------------------------------------------------------
        self.start_button = QPushButton("Start training")
        self.start_button.clicked.connect(self.toggle)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.plot = TrainingPlot(*_theme_colors(napari_viewer))

        # Settings in tabs (each scrolls vertically, never sideways); the plot in a tab of its
        # own that Start brings up; Start, progress and status always in view below the tabs.
        self.tabs = QTabWidget()
        for box, title in zip(self.inputs, ("Data", "Method", "Training")):
            box.setTitle("")
            box.setFlat(True)
            page = QScrollArea()
            page.setWidgetResizable(True)
            page.setFrameShape(QFrame.Shape.NoFrame)
            page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            page.setWidget(box)
            self.tabs.addTab(page, title)
        self.tabs.addTab(self.plot, "Plot")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.tabs, 1)
        for widget in (self.start_button, self.progress, self.status):
            outer.addWidget(widget)

        for signal in (self.source.currentTextChanged, self.train_pairs.changed,
                       self.val_pairs.changed, self.radii.textChanged,
                       self.input_size.valueChanged, self.input_mode.currentTextChanged,
                       self.input_scale.textChanged,
                       self.network.currentTextChanged, self.lr.textChanged):
            signal.connect(self.schedule_refresh)
        self.model_ndim.activated.connect(self._ndim_picked)
        self.model_ndim.currentIndexChanged.connect(lambda _: self.apply_dim_defaults())
        self.apply_dim_defaults()
        self.refresh()

    def request(self) -> Any:
        """The ``TrainingRequest`` for the current inputs (reads the layers again)."""
        from napari_colorrl.core.training.setup import TrainingRequest

        resume = Path(self.resume.text()).expanduser() if self.resume.text().strip() else None
        settings = self.settings()
        settings["steps"] = self.steps.value() or ("auto" if resume is None else None)
        if settings["steps"] is None:
            del settings["steps"]
        settings["train.device"] = self.device.currentText()
        if self.budget_kind.currentText() == "minutes":
            settings["train.minutes"] = self.budget.value()
        else:
            settings["train.episodes"] = int(self.budget.value())
        init = None if resume is not None else self.init_model()
        if init is not None:  # the model's own T, network, input and rewards; the rest from here
            settings = {k: v for k, v in settings.items() if k.startswith("train.")}
        common = {"ndim": self.ndim, "recipe": self.recipe.currentText(), "resume": resume,
                  "settings": settings, "init": init}
        if self.source.currentText() == "folders":
            paths = {k: Path(e.text()).expanduser() if e.text().strip() else None
                     for k, e in self.folders.items()}
            return TrainingRequest(**paths, **common)
        problem = self.scan_layers()
        if problem:
            raise ValueError(problem)
        return TrainingRequest(samples=self.train_scan.samples,
                               val_samples=self.val_scan.samples, **common)

    def fine_tune_on(self, image: Any, labels: Any, model: str, ndim: int) -> None:
        """Correct, then retrain: train on (image, corrected labels), starting from ``model``
        (the one that made the labels). The pair is added unless it is there; training starts."""
        if self.running:
            show_warning("ColorRL training is already running; stop it first.")
            return
        self.source.setCurrentText("layers")
        self.set_model_ndim(ndim)
        pairs = [(i, lab) for i, lab in self.train_pairs.pairs() if i is not None
                 and lab is not None]
        if (image, labels) not in pairs:
            if pairs:
                self.train_pairs.add_row(image, labels)
            else:
                self.train_pairs.set_pairs([(image, labels)])
        self.resume.clear()
        self.start_from.setEditText(str(model))
        self.refresh()
        if not self.start_button.isEnabled():
            show_warning(f"ColorRL: cannot fine-tune yet: {self.problems()[0]}")
            return
        self.start()

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
        from napari_colorrl.core.data.checks import ensure_writable
        from napari_colorrl.core.model.checkpoint_paths import (
            best_path,
            check_checkpoint_output,
            fresh_output_path,
        )

        out = Path(self.output.text()).expanduser()
        if self.auto_output and (out.exists() or best_path(out).exists()):
            out = fresh_output_path(out.parent)  # never over an earlier run's checkpoint
            self.output.setText(str(out))
        try:
            check_checkpoint_output(out, resume=request.resume)
            ensure_writable(out.parent, what="checkpoint")
        except (ValueError, OSError) as err:
            show_error(str(err))
            return
        self._stop = threading.Event()
        self.history = []
        self.plot.clear()
        self.tabs.setCurrentWidget(self.plot)
        self.worker = thread_worker(training_run, start_thread=False)(request, out, self._stop)
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
            self.plot.show_validation(bool(item.val))  # given, or held out of the training set
            self.status.setText("\n".join(item.messages))
            self.auto_steps.setText(f"this run: T = {item.config.steps}")
            return
        self.history.append(item)
        self.plot.add_report(item)
        self.progress.setRange(0, 1000)
        self.progress.setValue(int(1000 * item.progress))
        left = "" if item.eta_seconds is None else f" · {clock(item.eta_seconds)} left"
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
            # The file's name first: a toast shows one short line (the folder came first and
            # the name was cut off).
            show_info(f"Checkpoint saved: {out.name}, in {out.parent}")

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
        self.progress.setFormat(finished_text(self.history))
        self.refresh()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.stop()
        super().closeEvent(event)

    def stop_and_wait(self, timeout_s: float = 600.0) -> bool:
        """Stop training and wait until the worker has saved and ended (see ``_closing``)."""
        return stop_and_wait(self, timeout_s)


def _theme_colors(viewer: Any) -> tuple[str, str]:
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - a plot in default colours is fine
        return "#262930", "#f0f1f2"
