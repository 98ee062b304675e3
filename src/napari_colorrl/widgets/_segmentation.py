"""The "ColorRL Segmentation" dock: run a model on an image layer, step through the coloring.

A model is a checkpoint (``*.pt``), a bioimage.io package written by ``colorrl export``
(``*.zip``) or a bundled model; ``Segmenter.load`` reads all three.

For an input layer ``X`` it writes the Labels layers ``X step 1`` .. ``X step T`` (binary
actions), ``X colors`` and ``X instances`` (``_result_layers.ResultLayers``); a re-run replaces
their data only while they hold what this dock wrote: a layer the user made or edited is kept and
the result goes to ``X instances [2]``. The step slider shows the colors after the first k steps;
a new minimum size re-runs only the post-processing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QWidget,
)

from napari_colorrl.core.config import SETTINGS_BY_PATH
from napari_colorrl.widgets import (
    Failure,
    relay_warnings,
    show_dock,
    trained_checkpoints,
    training_dock_of,
)
from napari_colorrl.widgets._layers import layer_array, spatial_shape
from napari_colorrl.widgets._result_layers import ResultLayers
from napari_colorrl.widgets._segmentation_form import SegmentationForm
from napari_colorrl.widgets._segmentation_run import (
    LazyResult,
    SegmentationRequest,
    segmentation_run,
)
from napari_colorrl.widgets._settings import read_value

#: The table's default tile size (its length is the 2D one; a single number is repeated).
SETTINGS_DEFAULT_TILE = SETTINGS_BY_PATH["inference.tile_size"].default


def _leave_registry(callback: Any) -> None:
    import contextlib

    with contextlib.suppress(ValueError, RuntimeError):
        trained_checkpoints.events.inserted.disconnect(callback)


def _model_ndim(model: Any) -> int | None:
    """2 or 3 for a bundled model (from its name, e.g. nuclei-2d), None when not known."""
    from napari_colorrl.core.model.bundled import BUNDLED_MODELS

    text = str(model or "")
    if text in BUNDLED_MODELS:
        for ndim in (2, 3):
            if text.lower().endswith(f"-{ndim}d"):
                return ndim
    return None


class SegmentationWidget(SegmentationForm):
    """Segment an image layer with a trained ColorRL checkpoint."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.viewer = napari_viewer
        self.worker = None
        self.running = False
        self.layers = ResultLayers(napari_viewer)  # the last run's result and its layers
        self._browsed: list[str] = []
        self._problem = ""  # the problem message shown in the status line, if any
        self.cancelled = False
        self._started: float | None = None
        self.browse_button.clicked.connect(self._pick_model)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.retrain_button.clicked.connect(self.retrain)

        self._postprocess_timer = QTimer(self, singleShot=True, interval=250)
        self._postprocess_timer.timeout.connect(self.update_instances)
        self.min_size.valueChanged.connect(lambda _: self._postprocess_timer.start())
        self.step_slider.valueChanged.connect(self.show_step)
        self.image.currentTextChanged.connect(self.prefer_fitting_model)
        self.image.currentTextChanged.connect(self.refresh)
        self.model.currentIndexChanged.connect(self.refresh)
        # The registry outlives the dock: leave it when the dock's Qt side is deleted (a dead
        # weak callback made a later registration raise ReferenceError in psygnal's loop).
        on_trained = self._on_trained
        trained_checkpoints.events.inserted.connect(on_trained)
        self.destroyed.connect(lambda *_: _leave_registry(on_trained))
        self.refresh_models()

    # --- inputs ---------------------------------------------------------------------------
    def refresh_models(self, select: str | None = None) -> None:
        """Trained checkpoints (newest first), bundled models, files chosen here."""
        from napari_colorrl.core.model.bundled import available_models

        current = select or self.model.currentData()
        entries = [(f"trained: {Path(p).name}", p) for p in reversed(trained_checkpoints)]
        entries += [(f"bundled: {name}", name) for name in available_models()]
        entries += [(f"file: {Path(p).name}", p) for p in self._browsed
                    if p not in trained_checkpoints]
        self.model.blockSignals(True)
        self.model.clear()
        for text, data in entries:
            self.model.addItem(text, data)
            self.model.setItemData(self.model.count() - 1, data, Qt.ItemDataRole.ToolTipRole)
        index = self.model.findData(current)
        self.model.setCurrentIndex(index if index >= 0 else 0)
        self.model.blockSignals(False)
        if select is None:
            self.prefer_fitting_model()
        self.refresh()

    def prefer_fitting_model(self, *_: Any) -> None:
        """When the chosen model is a bundled one of another dimensionality than the image
        layer (the 2D nuclei model for a volume), choose the first model that may fit instead:
        one of the layer's ndim, or a trained/chosen file (its ndim is known only when loaded)."""
        layer = self.image.layer()
        if layer is None:
            return
        want = len(spatial_shape(layer))
        if _model_ndim(self.model.currentData()) in (None, want):
            return
        for index in range(self.model.count()):
            if _model_ndim(self.model.itemData(index)) in (None, want):
                self.model.setCurrentIndex(index)
                return

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when the layer list changes."""
        self.image.refresh()

    def _on_trained(self, *_: Any) -> None:
        try:
            self.refresh_models(select=trained_checkpoints[-1])
        except RuntimeError:  # this dock was closed and its Qt side deleted
            trained_checkpoints.events.inserted.disconnect(self._on_trained)

    def _pick_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "ColorRL model", "",
            "ColorRL models (*.pt *.zip);;Checkpoints (*.pt);;bioimage.io packages (*.zip)")
        if path:
            self.add_model_file(path)

    def add_model_file(self, path: str | Path) -> None:
        """Offer a model file (checkpoint or bioimage.io package) and select it."""
        path = str(path)
        if path not in self._browsed:
            self._browsed.append(path)
        self.refresh_models(select=path)

    def problems(self) -> list[str]:
        found = []
        if self.image.layer() is None:
            found.append("Choose an image layer.")
        model = self.model.currentData()
        if not model:
            found.append("Choose a checkpoint: train one, or pick a file with '…'.")
        elif self.model.currentText().startswith("bundled:"):
            pass
        elif not Path(model).is_file():
            found.append(f"The checkpoint {model} does not exist (yet).")
        return found

    def refresh(self, *_: Any) -> None:
        """Enable Segment; show the first problem, and clear only a problem shown before (the
        result of the last run stays)."""
        found = self.problems()
        self.run_button.setEnabled(not found and not self.running)
        if self.running:
            return
        if found:
            self._problem = found[0]
            self.status.setText(found[0])
        elif self._problem and self.status.text() == self._problem:
            self._problem = ""
            self.status.setText("")

    # --- running --------------------------------------------------------------------------
    def request(self) -> SegmentationRequest:
        """The run the fields ask for; ValueError naming a field that cannot work."""
        layer = self.image.layer()
        text = self.object_size.text().strip()
        object_size = None
        if text:
            try:
                values = [float(v) for v in text.replace(",", " ").split()]
            except ValueError:
                raise ValueError(f"object size: give one number or one per axis, not "
                                 f"{text!r}.") from None
            object_size = values[0] if len(values) == 1 else tuple(values)
        tile_size = None
        if self.tile_size.text().strip():
            values = self.tile_size.text().replace(",", " ").split()
            if len(values) == 1:
                values = values * len(SETTINGS_DEFAULT_TILE)
            self.tile_size.setText(", ".join(values))
            tile_size = tuple(read_value(self.tile_size, "inference.tile_size"))
        overlap = None if self.tile_overlap.value() < 0 else self.tile_overlap.value()
        return SegmentationRequest(
            model=self.model.currentData(), device=self.device.currentText(),
            data=layer_array(layer), shape=spatial_shape(layer),
            rgb=bool(getattr(layer, "rgb", False)),
            min_size=None if self.min_size.value() < 0 else self.min_size.value(),
            depth=None if self.depth.value() < 0 else self.depth.value(),
            object_size=object_size,
            scale=tuple(float(v) for v in layer.scale) if self.in_layer_units.isChecked()
            else None, tile_size=tile_size, tile_overlap=overlap)

    def run(self) -> None:
        """Segment the chosen layer in a thread worker (``self.worker``)."""
        found = self.problems()
        if found or self.running:
            if found:
                show_error(found[0])
            return
        layer = self.image.layer()
        try:
            request = self.request()
        except ValueError as err:
            show_error(str(err))
            self.status.setText(str(err))
            return
        fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        first = [fields.pop(k) for k in ("model", "device", "data", "shape", "min_size")]
        self.worker = thread_worker(segmentation_run, start_thread=False)(*first, **fields)
        self.worker.yielded.connect(self._on_progress)
        relay_warnings(self.worker, "ColorRL segmentation")
        self.worker.returned.connect(lambda result: self._on_done(result, layer))
        self.worker.finished.connect(self._on_finished)
        self.running, self.cancelled = True, False
        self._started = time.monotonic()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("segmenting…")
        self.status.setText(f"Segmenting {layer.name!r}…")
        self.worker.start()

    def cancel(self) -> None:
        """Stop the run after the tile at hand; the result layers stay as they were."""
        if self.worker is None or not self.running:
            return
        self.cancelled = True
        self.cancel_button.setEnabled(False)
        self.progress.setFormat("cancelling…")
        self.worker.quit()

    def _on_progress(self, update: tuple[int, int, int, int]) -> None:
        frame, frames, done, tiles = update
        self.progress.setRange(0, frames * tiles)
        self.progress.setValue((frame - 1) * tiles + done)
        text = f"tile {done} of {tiles}"
        self.progress.setFormat(f"frame {frame} of {frames}, {text}" if frames > 1 else text)

    def _on_finished(self) -> None:
        self.running = False
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.results and not self.cancelled else 0)
        if self.cancelled:
            self.progress.setFormat("cancelled")
            self.status.setText("Cancelled: no result layer was written or changed.")
        self.refresh()

    def _on_done(self, result: Any, layer: Image) -> None:
        if isinstance(result, Failure):
            show_error(f"ColorRL segmentation failed: {result.message}")
            self.progress.setFormat("failed")
            self.status.setText(result.message)
            return
        if self.cancelled:  # a run stopped after its last tile: drop it too
            if isinstance(result[1], LazyResult):
                result[1].remove()
            return
        self.layers.take(*result, layer)
        self.write_layers()
        self.progress.setFormat("done")

    # --- results (the layers themselves: ``_result_layers.ResultLayers``) -----------------
    @property
    def segmenter(self) -> Any:
        return self.layers.segmenter

    @property
    def results(self) -> Any:
        return self.layers.results

    @property
    def stacked(self) -> bool:
        return self.layers.stacked

    @property
    def input_layer(self) -> Image | None:
        return self.layers.input_layer

    @property
    def layer_names(self) -> list[str]:
        """Names of the result layers for the current input, steps first."""
        return self.layers.names

    def effective_min_size(self) -> int:
        """The minimum size asked for, or the model's for the image's scale."""
        return self.layers.min_size(self.min_size.value())

    def write_layers(self) -> None:
        """Write the result layers of the run; set the step slider and the status line."""
        count = self.layers.write(self.effective_min_size())
        took = None if self._started is None else time.monotonic() - self._started
        self.status.setText(self.layers.summary(count, took))
        in_memory = count is not None
        self.step_slider.setEnabled(in_memory)
        self.retrain_button.setEnabled(in_memory)
        if not in_memory:
            return
        steps = self.segmenter.steps
        self.step_slider.blockSignals(True)
        self.step_slider.setRange(1, steps)
        self.step_slider.setValue(steps)
        self.step_slider.blockSignals(False)
        self.step_label.setText(f"colors after step {steps} of {steps}: {count} objects")

    def show_step(self, k: int) -> None:
        """Show the colors after the first ``k`` steps (``ResultLayers.show_step``); the label
        says how many objects they separate."""
        if not self.layers.in_memory:
            return
        count = self.layers.show_step(k, self.effective_min_size())
        self.step_label.setText(f"colors after step {k} of {self.segmenter.steps}: {count} "
                                f"objects")

    def retrain(self) -> None:
        """Hand (input image, corrected instances) to the training dock for a fine-tune from
        the model that segmented it."""
        from napari.utils.notifications import show_info

        from napari_colorrl.widgets._layers import corrected_frames

        if not self.results or self.input_layer is None:
            return
        if self.layers.lazy:
            show_info("These labels are too large for memory (kept on disk); fine-tune on a "
                      "part of the image instead.")
            return
        instances = self.layers.instances_layer()
        if instances is None:
            show_info("The segmented image or its instances layer is gone; segment again.")
            return
        name = instances.name
        if not corrected_frames(instances):
            show_info(f"Correct {name!r} first (paint, erase, fill, new label): only the frames "
                      f"you corrected are used for training.")
            return
        training = training_dock_of(self.viewer)  # the open one, never a second dock
        if training is None:
            _, training = self.viewer.window.add_plugin_dock_widget("napari-colorrl",
                                                                    "ColorRL Training")
        show_dock(training)  # in front of this dock when they share a tabbed area
        training.fine_tune_on(self.input_layer, instances, str(self.segmenter.source),
                              self.segmenter.config.ndim)

    def update_instances(self) -> None:
        """Re-run only the post-processing with the new minimum size."""
        if not self.layers.in_memory:
            return
        min_size = self.effective_min_size()
        count = self.layers.update_instances(min_size)
        self.status.setText(f"min. size {min_size}: {count} objects.")
