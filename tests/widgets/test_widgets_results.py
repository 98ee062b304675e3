"""The segmentation dock never replaces a layer it did not write, nor one the user edited since;
edited results can be picked as training labels; the status after segmenting stays (issue 20
point 3, issue 19).

Run with a display: xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest ...
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import WAIT_MS  # noqa: E402
from test_widgets_reliability import write_model  # noqa: E402

from napari_colorrl.core.data.synthetic import make_cells_2d, make_nuclei_3d  # noqa: E402
from napari_colorrl.widgets._layers import result_unedited  # noqa: E402

pytestmark = pytest.mark.gui


def _run(qtbot, segmentation):
    segmentation.run()
    qtbot.waitUntil(lambda: not segmentation.running, timeout=WAIT_MS)
    assert segmentation.results, segmentation.status.text()


@pytest.fixture
def cells(docks, tmp_path):
    viewer, training, segmentation = docks
    image, labels = make_cells_2d(shape=(40, 40), n_objects=4, seed=0)
    viewer.add_image(image, name="cells")
    segmentation.add_model_file(write_model(tmp_path / "m.pt"))
    segmentation.image.select("cells")
    return viewer, training, segmentation


def test_rerun_replaces_only_its_own_unchanged_layers(cells, qtbot):
    viewer, _, segmentation = cells
    _run(qtbot, segmentation)
    names = {layer.name for layer in viewer.layers}
    first = viewer.layers["cells instances"]
    assert result_unedited(first)
    _run(qtbot, segmentation)  # unchanged: replaced in place, no new layers
    assert {layer.name for layer in viewer.layers} == names
    assert viewer.layers["cells instances"] is first

    edited = np.asarray(first.data).copy()
    edited[:5, :5] = 77
    first.data = edited  # a correction, as napari's paint tools would make
    assert not result_unedited(first)
    _run(qtbot, segmentation)
    assert "cells instances [2]" in viewer.layers
    np.testing.assert_array_equal(viewer.layers["cells instances"].data, edited)
    second = viewer.layers["cells instances [2]"]
    _run(qtbot, segmentation)  # the new result layer is the dock's: re-used
    assert viewer.layers["cells instances [2]"] is second
    assert "cells instances [3]" not in viewer.layers


def test_a_layer_the_user_made_is_never_replaced(cells, qtbot):
    viewer, _, segmentation = cells
    mine = np.zeros((40, 40), np.uint8)
    mine[3:9, 3:9] = 1
    viewer.add_labels(mine, name="cells instances")
    viewer.add_labels(np.ones((40, 40), np.uint8), name="cells step 1")
    _run(qtbot, segmentation)
    np.testing.assert_array_equal(viewer.layers["cells instances"].data, mine)
    assert (viewer.layers["cells step 1"].data == 1).all()
    assert "cells instances [2]" in viewer.layers and "cells step 1 [2]" in viewer.layers


def test_min_size_never_overwrites_an_edited_instances_layer(cells, qtbot):
    viewer, _, segmentation = cells
    _run(qtbot, segmentation)
    layer = viewer.layers["cells instances"]
    edited = np.asarray(layer.data).copy()
    edited[0, 0] = 99
    layer.data = edited
    segmentation.min_size.setValue(10**6)
    qtbot.waitUntil(lambda: "cells instances [2]" in viewer.layers, timeout=5000)
    np.testing.assert_array_equal(viewer.layers["cells instances"].data, edited)
    assert not viewer.layers["cells instances [2]"].data.any()


def test_edited_results_can_be_picked_as_training_labels(cells, qtbot):
    viewer, training, segmentation = cells
    _run(qtbot, segmentation)
    training.reset_choices()
    combo = training.train_pairs.rows[0].labels
    names = [layer.name for layer in combo.candidates()]
    assert "cells instances" not in names  # an unedited result is hidden, as before
    layer = viewer.layers["cells instances"]
    edited = np.asarray(layer.data).copy()
    edited[:4, :4] = 5
    layer.data = edited
    training.reset_choices()
    assert "cells instances" in [layer.name for layer in combo.candidates()]


def test_status_after_segmenting_stays(cells, qtbot):
    _, _, segmentation = cells
    _run(qtbot, segmentation)
    qtbot.wait(50)
    assert segmentation.status.text().startswith("T = 2 steps,")
    assert "objects" in segmentation.status.text()


def test_a_volume_does_not_preselect_the_2d_bundled_model(docks, tmp_path):
    viewer, _, segmentation = docks
    from napari_colorrl.core.model.bundled import available_models

    if "nuclei-2d" not in available_models():
        pytest.skip("no bundled 2D model in this installation")
    segmentation.add_model_file(write_model(tmp_path / "m3.pt", ndim=3))
    segmentation.model.setCurrentIndex(segmentation.model.findData("nuclei-2d"))
    volume, _ = make_nuclei_3d(shape=(8, 24, 24), n_objects=3, seed=0)
    viewer.add_image(volume, name="vol")
    segmentation.image.select("vol")
    assert segmentation.model.currentData() != "nuclei-2d"
    image, _ = make_cells_2d(shape=(24, 24), n_objects=2, seed=0)
    viewer.add_image(image, name="flat")
    segmentation.model.setCurrentIndex(segmentation.model.findData("nuclei-2d"))
    segmentation.image.select("flat")
    assert segmentation.model.currentData() == "nuclei-2d"


def test_the_step_slider_visibly_changes_the_canvas(docks, qtbot):
    """Step 1 and step T looked the same: 'X colors' lay under 'X instances' and the truth."""
    viewer, _, segmentation = docks
    viewer.window.show()  # the canvas draws only when shown
    image, labels = make_cells_2d(shape=(128, 128), n_objects=10, seed=2)
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="cells truth")  # a layer on top, as a user has it
    segmentation.refresh_models(select="nuclei-2d")
    segmentation.image.select("cells")
    _run(qtbot, segmentation)
    steps = segmentation.segmenter.steps
    colors, instances = viewer.layers["cells colors"], viewer.layers["cells instances"]
    viewer.layers["cells truth"].visible = False

    def canvas():
        qtbot.wait(50)
        return viewer.screenshot(canvas_only=True, flash=False).astype(np.int16)

    segmentation.step_slider.setValue(1)
    assert viewer.layers[-1] is colors and colors.visible and not instances.visible
    first, label_first = canvas(), segmentation.step_label.text()
    shown_first = colors.data.copy()
    segmentation.step_slider.setValue(steps)
    last, label_last = canvas(), segmentation.step_label.text()
    assert instances.visible and colors.data.max() > shown_first.max()
    assert not np.array_equal(shown_first, colors.data)  # the displayed data changed
    changed = np.abs(first - last).max(axis=-1) > 30
    assert changed.mean() > 0.05, changed.mean()  # and the picture, visibly
    assert label_first.startswith("colors after step 1 of") and "objects" in label_first
    count = int(instances.data.max())
    assert label_last.endswith(f": {count} objects")
    status = segmentation.status.text()  # the status after segmenting says what ran
    total = segmentation.segmenter.config.steps
    assert f"{steps} of T = {total} steps" in status
    assert "nuclei-2d.pt" in status and " s, model" in status


def test_correct_then_retrain_in_napari(docks, qtbot, tmp_path):
    """Segment a stack, correct two frames with the layer's API, one button: a fine-tune from
    the model that segmented, on the corrected frames only; the next segmentation uses the new
    model."""
    from napari_colorrl.core.model.checkpoint import load_checkpoint

    viewer, training, segmentation = docks
    frames = [make_cells_2d(shape=(40, 40), n_objects=4, seed=i) for i in range(4)]
    viewer.add_image(np.stack([image for image, _ in frames]), name="stack")
    model = write_model(tmp_path / "m.pt")
    segmentation.add_model_file(model)
    segmentation.image.select("stack")
    _run(qtbot, segmentation)
    assert segmentation.stacked
    instances = viewer.layers["stack instances"]
    segmentation.retrain()  # nothing corrected yet: nothing starts
    assert not training.running
    corrected = instances.data.copy()
    corrected[1] = frames[1][1]  # the user repaints frames 1 and 3 (the truth stands in)
    corrected[3] = frames[3][1]
    instances.data = corrected
    training.output.setText(str(tmp_path / "tuned.pt"))
    training.budget_kind.setCurrentText("episodes")
    training.budget.setValue(4)
    training.batch_size.setValue(1)
    training.device.setCurrentText("cpu")
    segmentation.retrain()
    assert training.running, training.status.text()
    assert training.init_model() == str(model)
    scan = training.train_scan
    assert [s.name for s in scan.samples] == ["stack[1]", "stack[3]"] and scan.untouched == 2
    qtbot.waitUntil(lambda: not training.running, timeout=WAIT_MS)
    tuned = load_checkpoint(tmp_path / "tuned.pt")
    assert tuned.step >= 1 and tuned.config.steps == load_checkpoint(model).config.steps
    assert segmentation.model.currentData() == str(tmp_path / "tuned.pt")  # the new model
    _run(qtbot, segmentation)
    assert segmentation.segmenter.source == str(tmp_path / "tuned.pt")


def test_retrain_uses_the_open_training_dock_of_the_demo(make_napari_viewer, qtbot, tmp_path):
    """Docks made by code (colorrl demo) were not found: Retrain opened a second training dock."""
    from napari_colorrl.widgets import training_docks
    from napari_colorrl.widgets.launch import add_docks

    viewer = make_napari_viewer()
    training, segmentation = add_docks(viewer)
    image, labels = make_cells_2d(shape=(40, 40), n_objects=4, seed=0)
    viewer.add_image(image, name="cells")
    segmentation.add_model_file(write_model(tmp_path / "m.pt"))
    segmentation.image.select("cells")
    _run(qtbot, segmentation)
    viewer.layers["cells instances"].data = labels.astype(np.uint16)  # corrected
    training.output.setText(str(tmp_path / "tuned.pt"))
    training.budget_kind.setCurrentText("episodes")
    training.budget.setValue(2)
    training.batch_size.setValue(1)
    segmentation.retrain()
    assert training.running
    assert [d for d in training_docks if d.viewer is viewer] == [training]
    qtbot.waitUntil(lambda: not training.running, timeout=WAIT_MS)
