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

import numpy as np
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
from napari_colorrl.widgets._layers import SampleScan, pair_problem, samples_from_layers
from napari_colorrl.widgets._plot import TrainingPlot
from napari_colorrl.widgets._training_form import TrainingForm
from napari_colorrl.widgets._training_run import auto_steps_run, clock, finished_text, training_run


class TrainingWidget(TrainingForm):
    """Train a ColorRL agent on image/Labels layers (or folders) of the viewer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.setMinimumWidth(360)  # every tab fits without sideways scrolling
        self.worker = None
        self.running = False
        self.last_checkpoint: Path | None = None
        self.history: list = []  # the reports of the current run
        self._stop = threading.Event()
        self._notified: str | None = None
        self._auto_count = 0  # the latest automatic-T count asked for (see _count_neighbours)
        self._init_configs: dict = {}  # the config of the model to start from, by file version
        training_docks.add(self)  # the segmentation dock's "Retrain" finds this dock
        self.auto_worker = None

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
            if self.train_scan.untouched:
                return ("The training labels are a segmentation result nobody corrected yet: "
                        "edit it (paint, erase, fill) and its corrected frames will train.")
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
            self.form_config()
        except ValueError as err:
            found.append(str(err))
        if (problem := self._init_problem()) is not None:
            found.append(problem)
        return found

    def form_config(self) -> Any:
        """The config the form's settings make (without a recipe); ValueError names a setting
        that is wrong alone or with the others (e.g. an input scale with 'resize')."""
        from napari_colorrl.core.config import ColorRLConfig, settings_dict

        settings = self.settings()
        settings["input_size"] = [settings["input_size"]] * self.ndim
        return ColorRLConfig.from_dict({"ndim": self.ndim, **settings_dict(settings)})

    def _init_config(self) -> tuple[Any, str | None]:
        """(config, None) of the model to start from, (None, why it cannot be read), or
        (None, None) when training does not start from a model."""
        init = self.init_model()
        if init is None or self.resume.text().strip():
            return None, None
        from napari_colorrl.core.model.bioimage import load_model_file
        from napari_colorrl.core.model.bundled import resolve_model_path

        try:
            path = resolve_model_path(init)
            key = (str(path), path.stat().st_mtime)
            if key not in self._init_configs:  # read once per file version, not per refresh
                self._init_configs = {key: load_model_file(path).config}
            return self._init_configs[key], None
        except (OSError, ValueError) as err:
            return None, str(err)

    def _init_problem(self) -> str | None:
        """Why the model to start from cannot be fine-tuned here, or None."""
        config, problem = self._init_config()
        if config is None:
            return problem
        init = self.init_model()
        if config.ndim != self.ndim:
            return (f"The model to start from ({init}) is a {config.ndim}D model, but a "
                    f"{self.ndim}D model is chosen; pick a {self.ndim}D model to start from, or "
                    f"'new model'.")
        return None

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
        untouched = train.untouched + val.untouched
        text = f"Found {len(train.samples)} training and {len(val.samples)} validation samples"
        notes = []
        if skipped:
            notes.append(f"{skipped} without labels")
        if untouched:
            notes.append(f"{untouched} uncorrected result frames")
        text += f" ({' and '.join(notes)} skipped)." if notes else "."
        if not val.samples:
            text += " " + self._hold_out_text(train.samples)
        if note := self._anisotropy_note():
            text += " " + note
        self.data_status.setText(text)
        self._count_neighbours()

    def _anisotropy_note(self) -> str | None:
        """A hint when the first training image layer's pixels are anisotropic (its napari
        scale, e.g. 0.28 x 0.127 x 0.127 um) and the input scale is left at 1: the scale that
        shrinks the finer axes to the coarsest one."""
        image = next((image for image, _ in self.train_pairs.pairs() if image is not None), None)
        if image is None or self.init_model() is not None:
            return None
        try:
            factors = tuple(float(v) for v in self.settings().get("input_scale", (1.0,)))
        except ValueError:
            return None
        spacing = [float(v) for v in image.scale[-self.ndim:]]
        if any(f != 1 for f in factors) or min(spacing) <= 0:
            return None
        coarse = max(spacing)
        if coarse / min(spacing) < 1.5:
            return None
        scale = ", ".join(f"{v / coarse:.2g}" for v in spacing)
        shown = " x ".join(f"{v:g}" for v in spacing)
        return (f"The layer {image.name!r} has pixels of {shown} (its scale): a scale of "
                f"{scale} makes them near-cubic at the network, with objects as wide on "
                f"every axis and fewer pixels per crop (input_mode 'crop').")

    def _hold_out_text(self, samples: list) -> str:
        """What training will hold out for validation, as ``prepare_training`` will do it."""
        from napari_colorrl.core.config import SETTINGS_BY_PATH
        from napari_colorrl.core.training.setup import crop_extent, held_out_count, slab_split

        try:
            settings = self.settings()
        except ValueError:  # a field the problems line already names
            settings = dict(self.extra_settings, input_size=self.input_size.value())
        share = settings.get("train.val_share", SETTINGS_BY_PATH["train.val_share"].default)
        if len(samples) != 1:
            count = held_out_count(len(samples), share)
            return (f"No validation pair: {count} of them will be held out (seeded) for the "
                    f"validation curve and the best model.")
        shape = np.shape(samples[0].labels)
        model, _ = self._init_config()
        if model is None:  # a fine-tune takes the model's input, not the form's
            try:
                model = self.form_config()
            except ValueError:  # a field the problems line already names
                return ""
        split = slab_split(shape, share, int(settings.get("train.seed", 0)),
                           keep=crop_extent(model))
        if isinstance(split, str):
            return f"No validation pair: no validation curve or best model ({split})."
        axis, _, held = split
        return (f"No validation pair and a single sample: a slab of {held.stop - held.start} of "
                f"its {shape[axis]} px along axis {axis} will be held out for the validation "
                f"curve and the best model.")

    def _count_neighbours(self) -> None:
        """Work out the automatic T in a thread (a neighbour count over every label map can
        take seconds on big layers); the label says so meanwhile, and only the answer for the
        current inputs is shown."""
        config = self.form_config()
        self._auto_count += 1
        count = self._auto_count
        if self.init_model() is not None and not self.resume.text().strip():
            self.auto_steps.setText("T from the model to start from")
            return
        self.auto_steps.setText("auto: T = … (counting neighbours)")
        worker = thread_worker(auto_steps_run, start_thread=False)(
            count, [s.labels for s in self.train_scan.samples], config)
        # A bound method, not a lambda: Qt drops the connection if the dock is gone first.
        worker.returned.connect(self._neighbours_counted)
        self.auto_worker = worker
        worker.start()

    def _neighbours_counted(self, answer: tuple[int, str, str | None]) -> None:
        count, text, problem = answer
        if count != self._auto_count or self.running:
            return  # the inputs changed since (or training started and says T itself)
        self.auto_steps.setText(text)
        if problem:  # labels the neighbour count cannot read, or too big to count: say why
            self.data_status.setText(f"<span style='color:#e8743b'>{problem}</span>")

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

    def _notify_problem(self, problem: str) -> None:
        """A napari notification for a problem in the chosen data, once per distinct problem
        (the status line keeps showing it while it lasts)."""
        routine = ("Add a training pair", "Choose ")
        if problem != self._notified and not problem.startswith(routine):
            self._notified = problem
            show_warning(f"ColorRL training: {problem}")


def _theme_colors(viewer: Any) -> tuple[str, str]:
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - a plot in default colours is fine
        return "#262930", "#f0f1f2"
