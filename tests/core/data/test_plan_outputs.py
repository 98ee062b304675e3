"""plan_outputs and prediction_files: predictions never replace inputs, ground truth, each other
or earlier files (issue 20, points 1 and 10)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_colorrl.core.data.files import PREDICTION_TAG, prediction_files
from napari_colorrl.core.data.outputs import plan_outputs, written_by_predict
from napari_colorrl.core.data.writing import write_labels, write_tiff


def _image(path):
    write_tiff(path, np.zeros((4, 4), np.uint8))
    return path


def test_plan_names_and_fresh_folder(tmp_path):
    a = _image(tmp_path / "in" / "a.tif")
    plans = plan_outputs([a], tmp_path / "out", save_steps=True)
    assert [p.name for p in plans[0].paths] == ["a.tif", "a_steps.tif", "a_colors.tif"]
    assert not (tmp_path / "out").exists()  # planning writes nothing
    assert plan_outputs([a], tmp_path / "out")[0].paths == [tmp_path / "out" / "a.tif"]


def test_output_that_is_the_input_refused(tmp_path):
    image = _image(tmp_path / "my_nuclei.tif")
    with pytest.raises(ValueError, match="my_nuclei.tif would replace the input my_nuclei.tif"):
        plan_outputs([image], tmp_path)
    assert written_by_predict(image) is False


def test_every_collision_listed_in_one_message(tmp_path):
    names = ["a.tif", "a.png", "b.tif", "b_steps.tif", "C.TIF", "C.tif"]
    inputs = [_image(tmp_path / n) if n.endswith(("tif", "TIF")) else tmp_path / n for n in names]
    (tmp_path / "a.png").write_bytes(b"png")
    with pytest.raises(ValueError) as info:
        plan_outputs(inputs, tmp_path / "out", save_steps=True)
    message = str(info.value)
    assert "\n" not in message
    assert "a.tif <- a.tif and a.png" in message
    assert "c.tif" in message.casefold() and "C.TIF and C.tif" in message
    assert "b_steps.tif <- b.tif (steps) and b_steps.tif" in message
    assert "another --output folder" in message


def test_case_only_difference_with_an_input_refused(tmp_path):
    image = _image(tmp_path / "C.TIF")
    with pytest.raises(ValueError, match="C.tif would replace the input C.TIF"):
        plan_outputs([image], tmp_path)


@pytest.mark.parametrize("name", ["masks", "Labels", "gt", "ground_truth"])
def test_ground_truth_folder_by_name_refused(tmp_path, name):
    image = _image(tmp_path / "images" / "a.tif")
    write_labels(tmp_path / name / "other.tif", np.ones((4, 4), np.uint8))
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="looks like a ground-truth folder"):
            plan_outputs([image], tmp_path / name, overwrite=overwrite)


def test_folder_with_labels_named_like_the_inputs_refused(tmp_path):
    image = _image(tmp_path / "images" / "a.tif")
    write_labels(tmp_path / "annots" / "a_mask.png".replace(".png", ".tif"), np.ones((4, 4)))
    with pytest.raises(ValueError, match="named like the inputs, e.g. a_mask.tif"):
        plan_outputs([image], tmp_path / "annots", overwrite=True)


def test_existing_outputs_need_overwrite_and_must_be_ours(tmp_path):
    image = _image(tmp_path / "in" / "a.tif")
    out = tmp_path / "out"
    write_labels(out / "a.tif", np.ones((4, 4), np.uint8), tag=PREDICTION_TAG)
    assert written_by_predict(out / "a.tif")
    with pytest.raises(ValueError, match=r"already holds a.tif.*--overwrite"):
        plan_outputs([image], out)
    assert plan_outputs([image], out, overwrite=True)[0].labels == out / "a.tif"
    write_labels(out / "a.tif", np.ones((4, 4), np.uint8))  # no longer predict's file
    with pytest.raises(ValueError, match="ground-truth folder.*not written by colorrl predict"):
        plan_outputs([image], out, overwrite=True)
    write_labels(out / "a.tif", np.ones((4, 4), np.uint8), tag=PREDICTION_TAG)
    write_tiff(out / "a_steps.tif", np.ones((4, 4), np.uint8))  # someone else's file
    with pytest.raises(ValueError, match="--overwrite only replaces files colorrl predict wrote"):
        plan_outputs([image], out, save_steps=True, overwrite=True)


def test_output_folder_that_is_a_file(tmp_path):
    image = _image(tmp_path / "a.tif")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        plan_outputs([image], tmp_path / "f")


def test_prediction_files_skip_steps_and_refuse_twins(tmp_path):
    for name in ("a.tif", "a_steps.tif", "a_colors.tif", "b.tif", "x_steps.tif"):
        _image(tmp_path / name)
    assert [p.name for p in prediction_files(tmp_path)] == ["a.tif", "b.tif", "x_steps.tif"]
    (tmp_path / "b.png").write_bytes(b"png")
    with pytest.raises(ValueError, match="b.png and b.tif"):
        prediction_files(tmp_path)
