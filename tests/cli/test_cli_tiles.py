"""colorrl predict at the model's scale, in tiles, into TIFF or zarr label files, for stacks
(issue 18, points 2, 4 and 5), never replacing what the user has."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tifffile
import zarr
from test_cli import write_model

from napari_colorrl.cli.main import main
from napari_colorrl.core.data import lazy
from napari_colorrl.core.data.outputs import written_by_predict
from napari_colorrl.core.inference import Segmenter


def _predict(tmp_path, inputs, output, *extra):
    return main(["predict", "--model", str(tmp_path / "m.pt"), "--input", str(inputs),
                 "--output", str(output), "--device", "cpu", *extra])


@pytest.fixture
def image(tmp_path):
    write_model(tmp_path / "m.pt", input_mode="crop")
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 255, (70, 90), dtype=np.uint8))
    return path


def test_labels_to_zarr_never_replacing_what_predict_did_not_write(tmp_path, image, capsys):
    out = tmp_path / "labels.zarr"
    assert _predict(tmp_path, image, out, "--tile-size", "32", "--tile-overlap", "8") == 0
    labels = zarr.open(str(out), mode="r")
    assert labels.shape == (70, 90) and labels.dtype == np.uint32 and written_by_predict(out)
    assert _predict(tmp_path, image, out) == 2
    assert "already exists" in capsys.readouterr().err
    assert _predict(tmp_path, image, out, "--overwrite") == 0  # its own earlier prediction
    foreign = tmp_path / "mine.zarr"
    zarr.open(str(foreign), mode="w", shape=(4, 4), dtype=np.uint8)
    assert _predict(tmp_path, image, foreign, "--overwrite") == 2
    assert "only replaces files colorrl predict wrote" in capsys.readouterr().err
    assert zarr.open(str(foreign), mode="r").shape == (4, 4)
    assert _predict(tmp_path, image, image.with_name("img.tif")) == 2  # the input itself
    assert "would replace the input" in capsys.readouterr().err


def test_a_large_tiff_is_read_lazily_and_written_in_tiles(tmp_path, image, monkeypatch):
    monkeypatch.setattr(lazy, "LAZY_BYTES", 0)  # every TIFF counts as large
    calls = []
    original = lazy.open_lazy
    monkeypatch.setattr(lazy, "open_lazy", lambda path: calls.append(path) or original(path))
    assert _predict(tmp_path, image, tmp_path / "out", "--tile-size", "32",
                    "--tile-overlap", "8", "--save-steps") == 0
    assert calls == [image]
    labels = tifffile.imread(tmp_path / "out" / "img.tif")
    assert labels.shape == (70, 90) and written_by_predict(tmp_path / "out" / "img.tif")
    assert tifffile.imread(tmp_path / "out" / "img_steps.tif").shape == (3, 70, 90)
    assert not list((tmp_path / "out").glob(".*"))


def test_stacks_need_frames_and_keep_their_shape(tmp_path, capsys):
    write_model(tmp_path / "m.pt", input_mode="crop")
    stack = np.random.default_rng(1).integers(0, 255, (5, 40, 44), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert _predict(tmp_path, tmp_path / "stack.tif", tmp_path / "o") == 2
    assert "--frames" in capsys.readouterr().err
    assert _predict(tmp_path, tmp_path / "stack.tif", tmp_path / "o", "--frames") == 0
    assert tifffile.imread(tmp_path / "o" / "stack.tif").shape == (5, 40, 44)
    write_model(tmp_path / "m.pt", ndim=3)
    series = np.random.default_rng(2).random((2, 10, 20, 24)).astype(np.float32)
    tifffile.imwrite(tmp_path / "series.tif", series)
    assert _predict(tmp_path, tmp_path / "series.tif", tmp_path / "series.zarr",
                    "--frames") == 0
    assert zarr.open(str(tmp_path / "series.zarr"), mode="r").shape == (2, 10, 20, 24)


def test_bad_sizes_are_usage_errors_before_any_image_is_read(tmp_path, image, capsys,
                                                              monkeypatch):
    monkeypatch.setattr(lazy, "should_read_lazily", lambda path: pytest.fail("image read"))
    for extra, message in ((["--object-size", "3", "4", "5"], "one number or 2"),
                           (["--pixel-size", "0.5"], "give --object-size too"),
                           (["--tile-size", "8"], "--tile-size must be"),
                           (["--object-size", "-2"], "positive number")):
        # A negative number is refused by argparse itself (exit status 2 through SystemExit).
        with pytest.raises(SystemExit) if extra[-1] == "-2" else contextlib.nullcontext():
            assert _predict(tmp_path, image, tmp_path / "o", *extra) == 2
        assert message in capsys.readouterr().err


def test_an_interrupted_prediction_leaves_no_file(tmp_path, image, monkeypatch):
    monkeypatch.setattr(lazy, "LAZY_BYTES", 0)
    original, calls = Segmenter._color_tile, []

    def stop_at_the_third(self, data):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, data)

    monkeypatch.setattr(Segmenter, "_color_tile", stop_at_the_third)
    assert _predict(tmp_path, image, tmp_path / "labels.tif", "--tile-size", "32",
                    "--tile-overlap", "8") == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "m.pt"]
