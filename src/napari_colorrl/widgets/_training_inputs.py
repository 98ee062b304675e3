"""The inputs of the "ColorRL Training" dock checked as they change: the layers read into
samples, what keeps Start disabled (named in the status line and once as a notification), what
training will hold out for validation, a hint for anisotropic layers, and the automatic T counted
in a thread. ``_training.TrainingWidget`` adds the run (and the ``start_button`` that ``refresh``
enables) on top.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QWidget

from napari_colorrl.widgets._layers import SampleScan, pair_problem, samples_from_layers
from napari_colorrl.widgets._training_form import TrainingForm
from napari_colorrl.widgets._training_run import auto_steps_run


class TrainingInputs(TrainingForm):
    """The training dock's form with its inputs checked; ``running`` is set by the subclass
    while a run goes (no re-check enables Start then)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.running = False
        self._notified: str | None = None
        self._auto_count = 0  # the latest automatic-T count asked for (see _count_neighbours)
        self._init_configs: dict = {}  # the config of the model to start from, by file version
        self.auto_worker = None
        self.checked_config: Any = None  # the form's config as the last problems() built it

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
        self.checked_config = None
        try:
            self.checked_config = self.form_config()
        except ValueError as err:
            found.append(str(err))
        if (problem := self._init_problem()) is not None:
            found.append(problem)
        return found

    def form_config(self) -> Any:
        """The config the form's settings make (without a recipe); ValueError names a setting
        that is wrong alone or with the others (e.g. an input scale with 'resize')."""
        from napari_colorrl.core.config import ColorRLConfig
        from napari_colorrl.core.config_files import settings_dict

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
        config = self.checked_config  # built by problems(), which found nothing wrong
        if not val.samples:
            text += " " + self._hold_out_text(train.samples, config)
        if note := self._anisotropy_note(config):
            text += " " + note
        self.data_status.setText(text)
        self._count_neighbours(config)

    def _anisotropy_note(self, config: Any) -> str | None:
        """A hint when the first training image layer's pixels are anisotropic (its napari
        scale, e.g. 0.28 x 0.127 x 0.127 um) and the form's input scale is left at 1: the scale
        that shrinks the finer axes to the coarsest one."""
        image = next((image for image, _ in self.train_pairs.pairs() if image is not None), None)
        if image is None or self.init_model() is not None:
            return None
        spacing = [float(v) for v in image.scale[-self.ndim:]]
        if any(f != 1 for f in config.crop_scale) or min(spacing) <= 0:
            return None
        coarse = max(spacing)
        if coarse / min(spacing) < 1.5:
            return None
        scale = ", ".join(f"{v / coarse:.2g}" for v in spacing)
        shown = " x ".join(f"{v:g}" for v in spacing)
        return (f"The layer {image.name!r} has pixels of {shown} (its scale): a scale of "
                f"{scale} makes them near-cubic at the network, with objects as wide on "
                f"every axis and fewer pixels per crop (input_mode 'crop').")

    def _hold_out_text(self, samples: list, config: Any) -> str:
        """What training will hold out for validation, as ``prepare_training`` will do it
        (``config``: the form's)."""
        from napari_colorrl.core.training.setup import crop_extent, held_out_count, slab_split

        share = config.train.val_share
        if len(samples) != 1:
            count = held_out_count(len(samples), share)
            return (f"No validation pair: {count} of them will be held out (seeded) for the "
                    f"validation curve and the best model.")
        shape = np.shape(samples[0].labels)
        model, _ = self._init_config()  # a fine-tune takes the model's input, not the form's
        split = slab_split(shape, share, config.train.seed,
                           keep=crop_extent(config if model is None else model))
        if isinstance(split, str):
            return f"No validation pair: no validation curve or best model ({split})."
        axis, _, held = split
        return (f"No validation pair and a single sample: a slab of {held.stop - held.start} of "
                f"its {shape[axis]} px along axis {axis} will be held out for the validation "
                f"curve and the best model.")

    def _count_neighbours(self, config: Any) -> None:
        """Work out the automatic T of the form's ``config`` in a thread (a neighbour count over
        every label map can take seconds on big layers); the label says so meanwhile, and only
        the answer for the current inputs is shown."""
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

    def _notify_problem(self, problem: str) -> None:
        """A napari notification for a problem in the chosen data, once per distinct problem
        (the status line keeps showing it while it lasts)."""
        routine = ("Add a training pair", "Choose ")
        if problem != self._notified and not problem.startswith(routine):
            self._notified = problem
            show_warning(f"ColorRL training: {problem}")
