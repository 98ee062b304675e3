"""The napari docks, with a real viewer and real background threads (tiny networks).

Run with a display: xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest tests/test_widgets.py
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_colorrl.core.data.synthetic import make_cells_2d, make_nuclei_3d  # noqa: E402

pytestmark = pytest.mark.gui

WAIT_MS = 90_000


def configure_tiny(training, image, labels, ndim: int, size: int, out) -> None:
    """Settings for a run of a few seconds: features 4-8-16, crops of ``size``, batch 1."""
    training.train_pairs.set_pairs([(image, labels)])
    training.set_model_ndim(ndim)
    training.input_size.setValue(size)
    training.input_mode.setCurrentText("crop")
    training.radii.setText("4, 8")
    training.network.setEditText("4, 8, 16")
    training.batch_size.setValue(1)
    training.every.setValue(2)
    training.lr.setText("1e-3")
    training.budget_kind.setCurrentText("episodes")
    training.budget.setValue(100_000)  # far more than we let it run: we stop it
    training.device.setCurrentText("cpu")
    training.output.setText(str(out))
    training.refresh()


def train_then_stop(qtbot, training, updates: int) -> float:
    """Start, wait for ``updates`` reports, stop; return the longest event-loop stall (s)."""
    from qtpy.QtCore import QTimer

    ticks = [time.perf_counter()]
    stall = [0.0]

    def tick() -> None:
        now = time.perf_counter()
        stall[0] = max(stall[0], now - ticks[0])
        ticks[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    assert training.start_button.isEnabled(), training.data_status.text()
    qtbot.mouseClick(training.start_button, _left())
    assert training.running and training.worker is not None
    assert training.start_button.text().startswith("Stop")
    qtbot.waitUntil(lambda: len(training.history) >= updates, timeout=WAIT_MS)
    qtbot.mouseClick(training.start_button, _left())  # Stop
    qtbot.waitUntil(lambda: not training.running, timeout=WAIT_MS)
    timer.stop()
    assert training.start_button.text() == "Start training"
    return stall[0]


def _left():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


def segment(qtbot, segmentation, layer_name: str) -> None:
    segmentation.image.select(layer_name)
    assert segmentation.run_button.isEnabled(), segmentation.status.text()
    qtbot.mouseClick(segmentation.run_button, _left())
    qtbot.waitUntil(lambda: not segmentation.running, timeout=WAIT_MS)
    assert segmentation.results, segmentation.status.text()


def check_result_layers(viewer, segmentation, name: str, shape: tuple, steps: int) -> None:
    names = [f"{name} step {k}" for k in range(1, steps + 1)] + [f"{name} colors",
                                                                 f"{name} instances"]
    assert segmentation.layer_names == names
    source = viewer.layers[name]
    for layer_name in names:
        layer = viewer.layers[layer_name]
        assert layer._type_string == "labels"
        assert layer.data.shape == shape
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)
        assert layer.metadata["colorrl"]["steps_used"] == steps
    for k in range(1, steps + 1):
        data = viewer.layers[f"{name} step {k}"].data
        assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}
    assert viewer.layers[f"{name} colors"].data.max() < 2**steps
    assert np.issubdtype(viewer.layers[f"{name} instances"].data.dtype, np.unsignedinteger)
    assert f"{name} step {steps + 1}" not in viewer.layers


def use_slider_and_min_size(qtbot, viewer, segmentation, name: str) -> None:
    steps = segmentation.segmenter.steps
    colors = viewer.layers[f"{name} colors"]
    segmentation.step_slider.setValue(1)
    assert colors.data.max() <= 1
    np.testing.assert_array_equal(colors.data, segmentation.layers.stack(
        [r.steps[0] for r in segmentation.results]))
    segmentation.step_slider.setValue(steps)
    np.testing.assert_array_equal(colors.data, segmentation.layers.stack(
        [r.colors for r in segmentation.results]))
    instances = viewer.layers[f"{name} instances"]
    before = int(np.count_nonzero(instances.data))
    segmentation.min_size.setValue(10**6)  # removes everything, after a short debounce
    qtbot.waitUntil(lambda: not instances.data.any(), timeout=5000)
    segmentation.min_size.setValue(0)
    qtbot.waitUntil(lambda: np.count_nonzero(instances.data) >= before, timeout=5000)
    assert instances.metadata["colorrl"]["min_size"] == 0


def test_docks_open_and_validate(docks, qtbot):
    viewer, training, segmentation = docks
    assert not training.start_button.isEnabled()
    assert not segmentation.run_button.isEnabled()
    image, labels = make_cells_2d(shape=(64, 64), n_objects=6, seed=0)
    image_layer = viewer.add_image(image, name="cells")
    bad = viewer.add_labels(labels[:32], name="wrong shape")
    training.train_pairs.set_pairs([(image_layer, bad)])
    training.refresh()
    assert not training.start_button.isEnabled()
    assert "same shape" in training.data_status.text()
    good = viewer.add_labels(labels, name="cells gt")
    training.train_pairs.rows[0].labels.select(good)
    training.refresh()
    assert training.start_button.isEnabled()
    assert "Found 1 training and 0 validation samples" in training.data_status.text()
    qtbot.waitUntil(lambda: training.auto_steps.text().startswith("auto: T = "), timeout=20000)
    assert training.recipe.currentText() == "fast"
    from napari_colorrl.core.training.setup import build_config

    fast, _ = build_config(training.request(), 2)  # the same recipe function as the CLI's
    assert fast.train.advantage_norm is True
    training.recipe.setCurrentText("paper")
    assert training.lr.text() == "0.0001"
    paper, _ = build_config(training.request(), 2)
    assert paper.train.lr_final == pytest.approx(1e-5) and paper.train.grad_clip is None
    training.lr.setText("fast")
    training.refresh()
    assert not training.start_button.isEnabled()
    assert "train.lr must be" in training.data_status.text()


def test_stack_of_frames_as_2d_samples(docks):
    viewer, training, _ = docks
    frames = [make_cells_2d(shape=(48, 48), n_objects=4, seed=s) for s in range(3)]
    image = np.stack([f[0] for f in frames])
    labels = np.stack([f[1] for f in frames])
    labels[1] = 0  # a frame nobody labelled yet
    viewer.add_image(image, name="movie")
    viewer.add_labels(labels, name="movie gt")
    training.train_pairs.set_pairs([("movie", "movie gt")])
    training.set_model_ndim(2)
    training.refresh()
    assert "Found 2 training" in training.data_status.text()
    assert "1 without labels skipped" in training.data_status.text()
    assert [s.labels.shape for s in training.train_scan.samples] == [(48, 48)] * 2
    training.set_model_ndim(3)
    training.refresh()
    assert "Found 1 training" in training.data_status.text()


def test_train_stop_and_segment_2d(docks, qtbot, tmp_path, capsys):
    viewer, training, segmentation = docks
    image, labels = make_cells_2d(shape=(64, 64), n_objects=6, seed=0)
    image_layer = viewer.add_image(image, name="cells", scale=(0.5, 0.5), translate=(3, 4))
    labels_layer = viewer.add_labels(labels, name="cells gt", scale=(0.5, 0.5))
    val_image, val_labels = make_cells_2d(shape=(64, 64), n_objects=6, seed=1)
    viewer.add_image(val_image, name="val")
    viewer.add_labels(val_labels, name="val gt")
    out = tmp_path / "models" / "cells.pt"
    configure_tiny(training, image_layer, labels_layer, ndim=2, size=64, out=out)
    training.val_pairs.add_row("val", "val gt")
    training.refresh()
    assert "1 validation" in training.data_status.text()

    stall = train_then_stop(qtbot, training, updates=4)
    with capsys.disabled():
        print(f"\nlongest event-loop stall during 2D training: {stall * 1000:.0f} ms")
    assert stall < 2.0
    assert training.last_checkpoint == out and out.is_file()
    assert any(r.validation for r in training.history)
    assert training.plot.sbd_values and len(training.plot.updates) == len(training.history)

    # The checkpoint just trained is offered first.
    assert segmentation.model.currentData() == str(out)
    segment(qtbot, segmentation, "cells")
    steps = segmentation.segmenter.steps
    check_result_layers(viewer, segmentation, "cells", (64, 64), steps)
    assert viewer.layers["cells colors"].metadata["colorrl"]["model"] == str(out)
    use_slider_and_min_size(qtbot, viewer, segmentation, "cells")

    count = len(viewer.layers)
    segment(qtbot, segmentation, "cells")  # a re-run replaces the layers' data
    assert len(viewer.layers) == count

    # Fewer steps than the model's: one step layer, the others (unedited) go.
    total = segmentation.segmenter.config.steps
    segmentation.depth.setValue(1)
    segment(qtbot, segmentation, "cells")
    check_result_layers(viewer, segmentation, "cells", (64, 64), 1)
    assert viewer.layers["cells colors"].data.max() <= 1
    assert f"1 of T = {total} steps" in segmentation.status.text()
    segmentation.depth.setValue(-1)  # the model's own depth again
    segment(qtbot, segmentation, "cells")
    check_result_layers(viewer, segmentation, "cells", (64, 64), steps)

    # A stack of 2D frames with the 2D model: one segmentation per frame.
    viewer.add_image(np.stack([image, val_image, image]), name="stack")
    segment(qtbot, segmentation, "stack")
    assert segmentation.stacked and len(segmentation.results) == 3
    check_result_layers(viewer, segmentation, "stack", (3, 64, 64), steps)
    assert segmentation.progress.format() == "done"


def test_train_stop_and_segment_3d(docks, qtbot, tmp_path):
    viewer, training, segmentation = docks
    image, labels = make_nuclei_3d(shape=(24, 32, 32), n_objects=6, seed=0)
    image_layer = viewer.add_image(image, name="nuclei")
    labels_layer = viewer.add_labels(labels, name="nuclei gt")
    out = tmp_path / "nuclei.pt"
    configure_tiny(training, image_layer, labels_layer, ndim=3, size=16, out=out)
    train_then_stop(qtbot, training, updates=2)
    assert out.is_file() and training.last_checkpoint == out

    segment(qtbot, segmentation, "nuclei")
    assert not segmentation.stacked
    steps = segmentation.segmenter.steps
    check_result_layers(viewer, segmentation, "nuclei", (24, 32, 32), steps)
    use_slider_and_min_size(qtbot, viewer, segmentation, "nuclei")


def test_training_errors_are_shown(docks, qtbot, tmp_path, monkeypatch):
    """A TrainingError (a RuntimeError, which superqt would swallow) ends as show_error."""
    from napari_colorrl.core.training import trainer
    from napari_colorrl.widgets import _training

    viewer, training, _ = docks
    image, labels = make_cells_2d(shape=(64, 64), n_objects=6, seed=0)
    configure_tiny(training, viewer.add_image(image), viewer.add_labels(labels), 2, 64,
                   tmp_path / "nan.pt")

    def exploding(*args, **kwargs):
        raise trainer.TrainingError("The loss became nan at update 3; lower the learning rate.")
        yield

    errors: list[str] = []
    monkeypatch.setattr(trainer, "train", exploding)
    monkeypatch.setattr(_training, "show_error", errors.append)
    training.start()
    qtbot.waitUntil(lambda: not training.running, timeout=WAIT_MS)
    assert errors and "loss became nan" in errors[0]
    assert training.start_button.isEnabled()

    errors.clear()
    training.resume.setText(str(tmp_path / "missing.pt"))
    training.start()
    qtbot.waitUntil(lambda: not training.running, timeout=WAIT_MS)
    assert errors and "missing.pt" in errors[0]


def test_demo_setup(make_napari_viewer, tmp_path):
    from napari_colorrl.widgets.launch import setup_demo

    viewer = make_napari_viewer()
    training, segmentation = setup_demo(viewer, minutes=0.1, out=tmp_path, start=False)
    assert [p[0].name for p in training.train_pairs.pairs()] == ["cells (training)"]
    assert [p[0].name for p in training.val_pairs.pairs()] == ["cells (validation)"]
    assert training.network.currentText().startswith("small")
    # The napari demo asks for exactly what the headless demo asks for.
    from napari_colorrl.core.demo import demo_request
    from napari_colorrl.core.training.setup import build_config, load_samples

    gui, headless = training.request(), demo_request(minutes=0.1)
    assert build_config(gui, 2) == build_config(headless, 2)
    for ours, theirs in zip(load_samples(gui), load_samples(headless)):
        assert len(ours) == len(theirs)
        assert all((a.image == b.image).all() and (a.labels == b.labels).all()
                   for a, b in zip(ours, theirs))
    assert training.start_button.isEnabled(), training.data_status.text()
    assert training.budget_kind.currentText() == "minutes"


def test_dock_defaults_are_the_cli_defaults_for_this_machine(docks, qtbot):
    """The dock showed the paper's network and 2000 episodes (37 minutes promised on a CPU)."""
    from napari_colorrl.core.recipes import DEFAULT_RECIPE, NETWORK_PRESETS, machine_defaults
    from napari_colorrl.core.training.setup import build_config

    viewer, training, _ = docks
    training.device.setCurrentText("cpu")
    machine = machine_defaults(2, "cpu")
    assert training.recipe.currentText() == DEFAULT_RECIPE
    assert training.budget_kind.currentText() == "minutes"
    assert training.budget.value() == machine["train.minutes"]
    assert training.network.currentText().startswith("small:")
    assert "About 10 min of training" in training.expectation.text()
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    frames = viewer.add_image(np.stack([image] * 5), name="stack")
    truth = viewer.add_labels(np.stack([labels] * 5), name="stack gt")
    training.set_model_ndim(2)  # a stack of 2D frames
    training.train_pairs.set_pairs([(frames, truth)])
    training.refresh()
    assert "Found 5 training" in training.data_status.text()
    assert "1 of them will be held out" in training.data_status.text()
    dock, _ = build_config(training.request(), 2)
    cli, _ = build_config(type(training.request())(settings={"train.device": "cpu"}), 2)
    for section in ("train", "network"):  # what the dock sends is what the CLI would use
        for key in ("lr", "grad_clip", "minutes", "features"):
            if hasattr(getattr(cli, section), key):
                assert getattr(getattr(dock, section), key) == getattr(getattr(cli, section), key)
    single = viewer.add_image(image, name="one image")  # one pair: a slab of it is held out,
    training.train_pairs.set_pairs([(single, viewer.add_labels(labels, name="one gt"))])
    training.refresh()  # but not when the model resizes its inputs (the 2D default)
    assert "resizes its inputs" in training.data_status.text()
    training.input_mode.setCurrentText("crop")
    training.refresh()
    assert "a slab of 10 of its 48 px along axis 0 will be held out" in (
        training.data_status.text())
    training.input_size.setValue(20)
    training.input_scale.setText("0.5")  # crops of 20 network px take 40 of the image's 48
    training.refresh()
    assert "keep 40 for training" in training.data_status.text()
    assert training.request().settings["input_scale"] == (0.5,)
    training.input_mode.setCurrentText("resize")  # a scale other than 1 is for crops only
    training.refresh()
    assert "applies to input_mode 'crop'" in training.data_status.text()
    training.input_scale.setText("1")
    training.set_model_ndim(3)  # 3D: its own small network
    assert training.network.currentText() == "small: " + ", ".join(
        map(str, NETWORK_PRESETS[3]["small"]))
    volume, nuclei = make_nuclei_3d(shape=(16, 32, 32), n_objects=4, seed=0)
    spacing = (0.28, 0.127, 0.127)
    training.train_pairs.set_pairs([(viewer.add_image(volume, scale=spacing),
                                     viewer.add_labels(nuclei, scale=spacing))])
    training.refresh()  # anisotropic voxels: the dock says which input scale evens them
    assert "a scale of 1, 0.45, 0.45 makes them near-cubic" in training.data_status.text()
    training.input_scale.setText("1, 0.45, 0.45")
    training.refresh()
    assert "near-cubic" not in training.data_status.text()
    qtbot.wait(10)


def test_single_sample_text_follows_the_model_a_fine_tune_starts_from(docks, tmp_path):
    """A fine-tune takes the model's input mode and size, not the form's: the dock's text on a
    single training sample said what the form's 'resize' would do (no held-out slab) while
    training, starting from a 'crop' model, cut a slab; and the other way round."""
    from conftest import trained_model
    from napari_colorrl.core.training.setup import prepare_training

    viewer, training, _ = docks
    training.set_model_ndim(2)
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    training.train_pairs.set_pairs([(viewer.add_image(image, name="one image"),
                                     viewer.add_labels(labels, name="one gt"))])
    crop_model = trained_model(tmp_path / "crop.pt", input_mode="crop")
    resize_model = trained_model(tmp_path / "resize.pt", input_mode="resize")
    for form_mode, model, says in (("resize", crop_model, "a slab of 10 of its 48 px"),
                                   ("crop", resize_model, "resizes its inputs")):
        training.input_mode.setCurrentText(form_mode)
        training.start_from.setEditText(str(model))
        training.refresh()
        assert says in training.data_status.text(), training.data_status.text()
        setup = prepare_training(training.request())  # what training then does
        assert (says == "resizes its inputs") == (not setup.val), setup.messages
    training.start_from.setEditText("new model")
    training.refresh()  # the form's own input again
    assert "a slab of 10 of its 48 px" in training.data_status.text()


def test_the_training_dock_fits_a_1280_px_window(docks, qtbot):
    """Fields were cut at the right edge behind a sideways scrollbar, and progress, status and
    the plot were below the fold."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QScrollArea, QWidget

    viewer, training, _ = docks
    viewer.window._qt_window.resize(1280, 1024)
    viewer.window.show()
    image, labels = make_cells_2d(shape=(64, 64), n_objects=6, seed=0)
    training.train_pairs.set_pairs([(viewer.add_image(image, name="a long image layer name"),
                                     viewer.add_labels(labels, name="its ground truth labels"))])
    training.refresh()
    for index in range(training.tabs.count()):
        training.tabs.setCurrentIndex(index)
        qtbot.wait(20)
        page = training.tabs.widget(index)
        if not isinstance(page, QScrollArea):
            continue
        viewport = page.viewport()
        assert page.horizontalScrollBar().maximum() == 0, training.tabs.tabText(index)
        for child in page.widget().findChildren(QWidget):
            if child.isVisible():
                right = child.mapTo(viewport, QPoint(child.width(), 0)).x()
                assert right <= viewport.width() + 1, (training.tabs.tabText(index), child)
    dock = training.parentWidget()
    for widget in (training.start_button, training.progress, training.status):
        assert widget.isVisible()
        bottom = widget.mapTo(dock, QPoint(0, widget.height())).y()
        assert bottom <= dock.height(), widget  # in view, no scrolling needed
    assert training.tabs.indexOf(training.plot) >= 0  # the plot has a tab of its own
