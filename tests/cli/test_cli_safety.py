"""predict and evaluate never replace what the user has (issue 20, points 1 and 10)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from test_cli import write_model

from napari_colorrl.cli.main import main
from napari_colorrl.core.inference import Segmenter


def _predict(tmp_path, inputs, output, *extra):
    return main(["predict", "--model", str(tmp_path / "m.pt"), "--input", str(inputs),
                 "--output", str(output), "--device", "cpu", *extra])


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the model is loaded: every refusal must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(Segmenter, "load", refuse)


def _img(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 255, (20, 24), dtype=np.uint8))
    return path


def test_predict_into_the_input_folder_refused(tmp_path, no_model, capsys):
    image = _img(tmp_path / "my_nuclei.tif")
    before = image.read_bytes()
    assert _predict(tmp_path, image, tmp_path) == 2
    err = capsys.readouterr().err
    assert "my_nuclei.tif would replace the input" in err and err.count("\n") == 1
    assert image.read_bytes() == before


def test_predict_collisions_listed(tmp_path, no_model, capsys):
    folder = tmp_path / "in"
    for name in ("a.tif", "b.tif", "b_steps.tif", "C.TIF", "C.tif"):
        _img(folder / name)
    from PIL import Image

    Image.fromarray(np.zeros((20, 24), np.uint8)).save(folder / "a.png")
    assert _predict(tmp_path, folder, tmp_path / "out", "--save-steps") == 2
    err = capsys.readouterr().err
    for clash in ("a.tif <- a.png and a.tif", "b_steps.tif <- b.tif (steps) and b_steps.tif",
                  "C.TIF and C.tif"):
        assert clash in err
    assert not (tmp_path / "out").exists()


def test_predict_into_ground_truth_refused(tmp_path, no_model, capsys):
    _img(tmp_path / "train" / "images" / "a.tif")
    masks = tmp_path / "train" / "masks"
    gt = _img(masks / "a.tif", seed=1)
    before = gt.read_bytes()
    for extra in ((), ("--overwrite",)):
        assert _predict(tmp_path, tmp_path / "train" / "images", masks, *extra) == 2
        assert "ground-truth folder" in capsys.readouterr().err
    assert gt.read_bytes() == before


def test_predict_twice_needs_overwrite(tmp_path, capsys):
    write_model(tmp_path / "m.pt")
    image = _img(tmp_path / "in" / "a.tif")
    out = tmp_path / "out"
    assert _predict(tmp_path, image, out, "--save-steps") == 0
    first = (out / "a.tif").read_bytes()
    capsys.readouterr()
    assert _predict(tmp_path, image, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _predict(tmp_path, image, out, "--save-steps", "--overwrite") == 0
    assert (out / "a.tif").read_bytes() == first


def test_evaluate_skips_steps_files_and_refuses_twins(tmp_path, capsys):
    write_model(tmp_path / "m.pt")
    gt = tmp_path / "gt"
    gt.mkdir()
    for name in ("a", "b"):
        _img(tmp_path / "in" / f"{name}.tif")
        tifffile.imwrite(gt / f"{name}.tif", np.ones((20, 24), np.uint16))
    out = tmp_path / "pred"
    assert _predict(tmp_path, tmp_path / "in", out, "--save-steps") == 0
    assert main(["evaluate", "--pred", str(out), "--gt", str(gt)]) == 0
    table = capsys.readouterr().out
    assert "a_steps" not in table and "\nb " in table
    from PIL import Image

    Image.fromarray(np.ones((20, 24), np.uint8)).save(out / "a.png")
    assert main(["evaluate", "--pred", str(out), "--gt", str(gt)]) == 2
    assert "a.png and a.tif" in capsys.readouterr().err


def test_evaluate_json_is_not_overwritten(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for folder in (gt, pred):
        folder.mkdir()
        tifffile.imwrite(folder / "a.tif", np.ones((8, 8), np.uint16))
    target = tmp_path / "scores.json"
    target.write_text("mine")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err and target.read_text() == "mine"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(target),
                 "--overwrite"]) == 0
    assert json.loads(target.read_text())["images"]["a"]["sbd"] == pytest.approx(1.0)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
