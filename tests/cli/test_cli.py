import json

import numpy as np
import pytest
import tifffile
import torch

from napari_colorrl.cli.main import main
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.inference import Segmenter
from napari_colorrl.core.metrics import METRIC_NAMES
from napari_colorrl.core.model.checkpoint import save_checkpoint
from napari_colorrl.core.model.networks import build_network


def write_model(path, ndim=2, steps=3, **kw):
    data = {"ndim": ndim, "steps": steps, "min_size": 0,
            "network": {"features": [4, 8], "attention": ndim == 2, "input_features": 4}}
    if ndim == 2:
        data["input_size"] = [32, 32]
    else:
        data.update(input_size=[8, 16, 16], input_mode="crop")
    data.update(kw)
    config = ColorRLConfig.from_dict(data)
    torch.manual_seed(0)
    model = build_network(config)
    save_checkpoint(path, config=config, model_state=model.state_dict())
    return config


def test_predict_folder_2d_writes_labels_of_input_shape(tmp_path):
    write_model(tmp_path / "m.pt")
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(inputs / "a.tif", rng.integers(0, 255, (50, 70), dtype=np.uint8))
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (33, 41, 3), dtype=np.uint8)).save(inputs / "b.png")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--input", str(inputs),
                 "--output", str(out), "--save-steps", "--device", "cpu"]) == 0
    a, b = tifffile.imread(out / "a.tif"), tifffile.imread(out / "b.tif")
    assert a.shape == (50, 70) and b.shape == (33, 41)
    assert a.dtype in (np.uint16, np.uint32)
    steps = tifffile.imread(out / "a_steps.tif")
    assert steps.shape == (3, 50, 70) and set(np.unique(steps)) <= {0, 1}
    colors = tifffile.imread(out / "a_colors.tif")
    assert colors.shape == (50, 70) and colors.max() < 8


def test_predict_depth_runs_the_first_steps_and_a_model_saved_with_one_uses_it(tmp_path):
    write_model(tmp_path / "m.pt")
    write_model(tmp_path / "d.pt", depth=2)  # as training saves a chosen depth
    image = np.random.default_rng(3).integers(0, 255, (40, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image)
    runs = {"all": ("m.pt", []), "asked": ("m.pt", ["--depth", "2"]), "saved": ("d.pt", []),
            "override": ("d.pt", ["--depth", "0"])}
    for name, (model, extra) in runs.items():
        assert main(["predict", "--model", str(tmp_path / model), "--input",
                     str(tmp_path / "a.tif"), "--output", str(tmp_path / name), "--save-steps",
                     "--device", "cpu", *extra]) == 0
    full = tifffile.imread(tmp_path / "all" / "a_colors.tif")
    for name in ("asked", "saved"):
        assert tifffile.imread(tmp_path / name / "a_steps.tif").shape == (2, 40, 40)
        np.testing.assert_array_equal(tifffile.imread(tmp_path / name / "a_colors.tif"),
                                      full % 4)
        np.testing.assert_array_equal(  # the instances of the first two steps' colors
            tifffile.imread(tmp_path / name / "a.tif"),
            Segmenter.load(tmp_path / "m.pt", device="cpu").postprocess(full % 4))
    assert tifffile.imread(tmp_path / "override" / "a_steps.tif").shape == (3, 40, 40)


def test_predict_refuses_a_depth_beyond_the_models_steps(tmp_path, capsys):
    write_model(tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((40, 40), np.uint8))
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--input",
                 str(tmp_path / "a.tif"), "--output", str(tmp_path / "o"), "--depth", "4"]) != 0
    err = capsys.readouterr().err
    assert "T = 3" in err and "--depth" in err and "Traceback" not in err
    assert not list(tmp_path.glob("o/*.tif"))


def test_predict_single_3d_volume(tmp_path):
    write_model(tmp_path / "m3.pt", ndim=3)
    volume = np.random.default_rng(1).random((10, 20, 24)).astype(np.float32)
    tifffile.imwrite(tmp_path / "vol.tif", volume)
    assert main(["predict", "--model", str(tmp_path / "m3.pt"), "--input",
                 str(tmp_path / "vol.tif"), "--output", str(tmp_path / "o"),
                 "--min-size", "3"]) == 0
    assert tifffile.imread(tmp_path / "o" / "vol.tif").shape == (10, 20, 24)


def test_segmenter_matches_engine_and_min_size(tmp_path):
    write_model(tmp_path / "m.pt")
    seg = Segmenter.load(tmp_path / "m.pt", device="cpu")
    image = np.random.default_rng(2).random((40, 40)).astype(np.float32)
    result = seg.segment(image, min_size=0)
    assert result.steps.shape == (3, 40, 40)
    np.testing.assert_array_equal(result.colors_after(3), result.colors)
    assert result.colors_after(1).max() <= 1
    bigger = seg.postprocess(result.colors, min_size=50)
    assert len(np.unique(bigger)) <= len(np.unique(result.instances))


def test_evaluate_json_has_exact_metric_names(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    labels = np.zeros((20, 20), np.uint16)
    labels[2:8, 2:8] = 1
    labels[10:18, 10:18] = 2
    for name in ("x", "y"):
        tifffile.imwrite(gt / f"{name}.tif", labels)
        tifffile.imwrite(pred / f"{name}.tif", labels)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt),
                 "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert list(result["mean"]) == list(METRIC_NAMES)
    assert set(result["images"]) == {"x", "y"}
    assert result["mean"]["sbd"] == 1.0
    assert "mean" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nope.pt"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("colorrl: error:") and "Traceback" not in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((8, 8), np.uint8))
    assert main(["predict", "--model", str(tmp_path / "junk.pt"), "--input",
                 str(tmp_path / "i.tif"), "--output", str(tmp_path / "o")]) != 0
    assert "colorrl: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
