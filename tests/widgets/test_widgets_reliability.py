"""Bad inputs in the napari docks end as notifications, never as a crash; closing napari while
training asks, then stops and saves; worker threads are released.

Run with a display: xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest ...
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402
from test_widgets import WAIT_MS, configure_tiny  # noqa: E402

from napari_colorrl.core.config import ColorRLConfig  # noqa: E402
from napari_colorrl.core.data.synthetic import make_cells_2d  # noqa: E402
from napari_colorrl.core.model.checkpoint import save_checkpoint  # noqa: E402
from napari_colorrl.core.model.networks import build_network  # noqa: E402

pytestmark = pytest.mark.gui


def write_model(path, ndim: int = 2):
    data = {"ndim": ndim, "steps": 2, "min_size": 0,
            "network": {"features": [4, 8], "attention": False, "input_features": 4}}
    data.update(input_size=[32, 32] if ndim == 2 else [8, 16, 16])
    config = ColorRLConfig.from_dict(data)
    torch.manual_seed(0)
    save_checkpoint(path, config=config, model_state=build_network(config).state_dict())
    return path


@pytest.fixture
def notes(monkeypatch):
    """Everything the docks show with show_error / show_warning / show_info."""
    from napari_colorrl.widgets import _segmentation, _training, _training_inputs

    shown: list[str] = []
    for module in (_training, _training_inputs, _segmentation):
        for name in ("show_error", "show_warning", "show_info"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, shown.append)
    return shown


def test_bad_training_layers_are_notified(docks, notes):
    viewer, training, _ = docks
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    cells = viewer.add_image(image, name="cells")
    cases = [
        (viewer.add_labels(labels[:30], name="short"), "same shape"),
        (viewer.add_labels(labels.astype(np.int32) - 1, name="negative"), "negative ids"),
        (viewer.add_labels(np.zeros_like(labels), name="empty"), "No labelled frame"),
    ]
    for layer, expected in cases:
        training.train_pairs.set_pairs([(cells, layer)])
        training.refresh()
        assert not training.start_button.isEnabled()
        assert expected in training.data_status.text()
        assert expected in notes[-1]
    count = len(notes)
    training.refresh()  # the same problem is not notified twice
    assert len(notes) == count
    training.set_model_ndim(3)
    training.train_pairs.set_pairs([(cells, viewer.add_labels(labels, name="ok"))])
    training.refresh()
    assert "a 3D model needs 3D labels" in notes[-1]


@pytest.mark.parametrize("layout", ["rgb", "channels first", "channels last"])
def test_rgb_and_multichannel_layers_train(docks, layout):
    viewer, training, _ = docks
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    if layout == "rgb":
        layer = viewer.add_image(np.stack([image] * 3, -1), rgb=True, name="rgb")
    elif layout == "channels first":
        layer = viewer.add_image(np.stack([image, image]), name="2ch")
    else:
        layer = viewer.add_image(np.stack([image, image], -1), name="2ch", rgb=False)
    training.train_pairs.set_pairs([(layer, viewer.add_labels(labels, name="gt"))])
    training.set_model_ndim(2)
    training.refresh()
    assert training.start_button.isEnabled(), training.data_status.text()
    (sample,) = training.train_scan.samples
    assert sample.labels.shape == (48, 48) and sample.image.shape[:2] == (48, 48)


def _segment(qtbot, segmentation, model, layer_name):
    segmentation.add_model_file(model)
    segmentation.image.select(layer_name)
    segmentation.run()
    qtbot.waitUntil(lambda: not segmentation.running, timeout=WAIT_MS)


class _Evil:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["truncated", "foreign", "malicious"])
def test_bad_checkpoints_in_the_segmentation_dock(docks, qtbot, tmp_path, notes, kind,
                                                  monkeypatch):
    viewer, _, segmentation = docks
    viewer.add_image(make_cells_2d(shape=(32, 32), n_objects=3)[0], name="cells")
    path, marker = tmp_path / f"{kind}.pt", tmp_path / "code-ran"
    if kind == "truncated":
        data = write_model(tmp_path / "good.pt").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "foreign":
        torch.save({"weight": torch.zeros(2)}, path)
    else:
        monkeypatch.setattr(_Evil, "marker", str(marker))
        with open(path, "wb") as fh:
            pickle.dump({"format": "napari-colorrl", "model_state": _Evil()}, fh)
    _segment(qtbot, segmentation, path, "cells")
    expected = {"truncated": "corrupt", "foreign": "state_dict", "malicious": "refused"}[kind]
    assert notes and notes[-1].startswith("ColorRL segmentation failed") and expected in notes[-1]
    assert segmentation.progress.format() == "failed" and not marker.exists()
    assert not segmentation.results


def test_wrong_dimensions_huge_and_odd_images_in_the_segmentation_dock(
        docks, qtbot, tmp_path, notes, monkeypatch):
    from napari_colorrl.core import runtime
    from napari_colorrl.core.runtime import available_devices

    viewer, _, segmentation = docks
    image = make_cells_2d(shape=(32, 32), n_objects=3)[0]
    viewer.add_image(image, name="cells")
    _segment(qtbot, segmentation, write_model(tmp_path / "m3.pt", ndim=3), "cells")
    assert "3D model" in notes[-1] and "2D" in notes[-1]

    model = write_model(tmp_path / "m2.pt")
    monkeypatch.setattr(runtime, "available_bytes", lambda device="cpu": 1000)
    _segment(qtbot, segmentation, model, "cells")
    assert "needs about" in notes[-1] and "tiles" in notes[-1]
    monkeypatch.undo()

    warned: list[str] = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    bad = image.copy()
    bad[::4] = np.nan
    viewer.add_image(bad, name="with nan")
    _segment(qtbot, segmentation, model, "with nan")
    assert segmentation.results and "with nan instances" in viewer.layers
    qtbot.waitUntil(lambda: any("NaN" in w for w in warned), timeout=5000)
    assert warned[-1].startswith("ColorRL segmentation: The image holds")
    assert [segmentation.device.itemText(i) for i in range(segmentation.device.count())] == \
        available_devices()


def test_segmentation_worker_reports_a_missing_device(tmp_path):
    from napari_colorrl.widgets import Failure
    from napari_colorrl.widgets._segmentation_run import segmentation_run

    run = segmentation_run(str(write_model(tmp_path / "m.pt")), "cuda:99",
                           np.zeros((16, 16), np.float32), (16, 16), None)
    with pytest.raises(StopIteration) as stop:
        next(run)
    assert isinstance(stop.value.value, Failure)
    assert "'cuda:99'" in stop.value.value.message


def test_training_worker_reports_bad_data_and_words_a_finished_run(tmp_path):
    """The training dock's worker body (Qt-free) turns bad data into a ``Failure`` (not a
    traceback) and writes nothing; the progress bar's text says how a run ended."""
    import threading
    from types import SimpleNamespace

    from napari_colorrl.core.training.setup import TrainingRequest
    from napari_colorrl.widgets import Failure
    from napari_colorrl.widgets._training_run import clock, finished_text, training_run

    missing = tmp_path / "no-such-folder"
    run = training_run(TrainingRequest(data=missing, ndim=2), tmp_path / "m.pt",
                       threading.Event())
    with pytest.raises(StopIteration) as stop:
        next(run)
    assert isinstance(stop.value.value, Failure)
    assert "no-such-folder" in stop.value.value.message
    assert not (tmp_path / "m.pt").exists()

    report = SimpleNamespace(update=40, progress=0.25, final=True, stopped=True)
    assert finished_text([]) == "idle"
    assert finished_text([report]) == "stopped at update 40 (25% of the budget)"
    report.stopped, report.progress = False, 1.0
    assert finished_text([report]) == "done: 40 updates"
    assert (clock(59), clock(61), clock(3725)) == ("0:59", "1:01", "1:02:05")


def test_training_dock_refuses_unwritable_output_and_bad_resume(docks, qtbot, tmp_path, notes):
    viewer, training, _ = docks
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    configure_tiny(training, viewer.add_image(image), viewer.add_labels(labels), 2, 32,
                   blocker / "m.pt")
    training.start()
    assert not training.running and "Cannot write the checkpoint" in notes[-1]

    training.output.setText(str(tmp_path / "m.pt"))
    (tmp_path / "junk.pt").write_bytes(b"\x80\x02junk")
    training.resume.setText(str(tmp_path / "junk.pt"))
    training.start()
    qtbot.waitUntil(lambda: not training.running, timeout=WAIT_MS)
    assert notes[-1].startswith("ColorRL training stopped") and "junk.pt" in notes[-1]
    assert training.start_button.isEnabled()


def test_closing_napari_while_training_asks_then_stops_and_saves(docks, qtbot, tmp_path,
                                                                  monkeypatch):
    from qtpy.QtCore import QThreadPool
    from qtpy.QtWidgets import QMessageBox

    from napari_colorrl.widgets import _closing

    viewer, training, _ = docks
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    out = tmp_path / "closing.pt"
    configure_tiny(training, viewer.add_image(image), viewer.add_labels(labels), 2, 32, out)
    training.every.setValue(10_000)  # no periodic checkpoint: only the stop writes one
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes]
    asked: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return answers[len(asked) - 1]

    monkeypatch.setattr(_closing.QMessageBox, "question", question)
    training.start()
    qtbot.waitUntil(lambda: len(training.history) >= 1, timeout=WAIT_MS)
    window = training.window()  # napari's main window
    assert window.close() is False  # "Cancel": napari stays open and training goes on
    assert len(asked) == 1 and training.running
    updates = len(training.history)
    qtbot.waitUntil(lambda: len(training.history) > updates, timeout=WAIT_MS)
    assert not out.exists()

    assert window.close() is not False  # "Yes": stop after the current update, save, close
    assert len(asked) == 2 and "save a checkpoint" in asked[1]
    assert not training.running and training.worker is None
    from napari_colorrl.core.model.checkpoint import load_checkpoint

    assert load_checkpoint(out).step >= updates + 1
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0,
                    timeout=10_000)


def test_automatic_t_is_counted_off_the_gui_thread(docks, qtbot, monkeypatch):
    """The neighbour count behind "auto: T = ..." ran in the GUI thread at every refresh."""
    import threading

    from napari_colorrl.core.method import steps

    viewer, training, _ = docks
    real, threads, release = steps.auto_steps, [], threading.Event()

    def slow(*args, **kwargs):
        threads.append(threading.current_thread())
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(steps, "auto_steps", slow)
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    training.train_pairs.set_pairs([(viewer.add_image(image, name="c"),
                                     viewer.add_labels(labels, name="c gt"))])
    training.refresh()  # returns while the count is still running
    assert training.auto_steps.text() == "auto: T = … (counting neighbours)"
    qtbot.waitUntil(lambda: bool(threads), timeout=WAIT_MS)
    assert threads[-1] is not threading.main_thread()
    release.set()
    counted = training.auto_steps.text
    qtbot.waitUntil(lambda: counted().startswith("auto: T = ") and "…" not in counted(),
                    timeout=WAIT_MS)


def test_automatic_t_of_labels_too_big_to_count_says_so(docks, qtbot):
    viewer, training, _ = docks
    image, labels = make_cells_2d(shape=(48, 48), n_objects=5, seed=0)
    training.train_pairs.set_pairs([(viewer.add_image(image, name="c"),
                                     viewer.add_labels(labels, name="c gt"))])
    training.input_size.setMaximum(65536)
    training.input_size.setValue(65536)  # 65536^2 labels: 100 GiB to count at input size
    training.refresh()
    qtbot.waitUntil(lambda: "needs about" in training.data_status.text(), timeout=WAIT_MS)
    assert training.auto_steps.text() == ""
