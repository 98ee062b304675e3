"""``colorrl export``, and ``colorrl predict`` with the package it writes."""

from __future__ import annotations

import sys
import zipfile

import numpy as np
import pytest
import tifffile

from conftest import tiny_samples, trained_model
from napari_colorrl.cli.main import main

pytest.importorskip("bioimageio.spec")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained_model(tmp_path_factory.mktemp("export") / "tiny.pt")


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_export_then_predict_gives_the_checkpoint_labels(model, tmp_path, capsys):
    package = tmp_path / "tiny.zip"
    sample = tmp_path / "sample.tif"
    tifffile.imwrite(sample, (tiny_samples(2, n=1)[0].image * 4000).astype(np.uint16))
    assert main(["export", "--model", str(model), "--output", str(package), "--sample",
                 str(sample), "--author", "A. Biologist", "--license", "CC-BY-4.0",
                 "--training-data", "my cells"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {package}" in out and "sample.tif" in out and "bioimageio test" in out
    assert "--training-data" not in out  # named
    with zipfile.ZipFile(package) as archive:
        rdf = archive.read("rdf.yaml").decode()
    assert "A. Biologist" in rdf and "CC-BY-4.0" in rdf and "my cells" in rdf

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, s in enumerate(tiny_samples(2, n=2, shape=(44, 37))):
        tifffile.imwrite(inputs / f"img{i}.tif", s.image)
    for name, source in (("from-checkpoint", model), ("from-package", package)):
        assert main(["predict", "--model", str(source), "--input", str(inputs), "--output",
                     str(tmp_path / name), "--device", "cpu"]) == 0
    for i in range(2):
        expected = tifffile.imread(tmp_path / "from-checkpoint" / f"img{i}.tif")
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "from-package" / f"img{i}.tif"), expected)
        assert expected.max() > 0


@pytest.mark.parametrize("kind", ["exists", "suffix", "folder", "model", "license", "sample"])
def test_export_bad_arguments_are_one_line(model, tmp_path, capsys, kind):
    output = tmp_path / "out.zip"
    args = ["export", "--model", str(model), "--output", str(output)]
    if kind == "exists":
        output.write_bytes(b"mine")
    elif kind == "suffix":
        args[-1] = str(tmp_path / "out.pt")
    elif kind == "folder":
        (tmp_path / "dir.zip").mkdir()
        args[-1] = str(tmp_path / "dir.zip")
    elif kind == "model":
        args[2] = str(tmp_path / "missing.pt")
    elif kind == "license":
        args += ["--license", "my-own-licence"]
    else:
        args += ["--sample", str(tmp_path / "missing.tif")]
    assert main(args) == 2
    expected = {"exists": "already exists; choose another --output, or --overwrite",
                "suffix": "must end in .zip", "folder": "is a folder",
                "model": "not found", "license": "not an SPDX licence id",
                "sample": "--sample .* does not exist"}[kind]
    import re

    assert re.search(expected, _error(capsys))
    if kind == "exists":
        assert output.read_bytes() == b"mine"
        assert main(args + ["--overwrite"]) == 0 and zipfile.is_zipfile(output)
        assert "give it with --training-data" in capsys.readouterr().out
    else:
        assert not output.exists()


def test_export_without_bioimageio_spec_says_how_to_install(model, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import raises ImportError
    assert main(["export", "--model", str(model), "--output", str(tmp_path / "m.zip")]) == 2
    assert "pip install 'napari-colorrl[bioimage]'" in _error(capsys)
    assert not (tmp_path / "m.zip").exists()


def test_predict_refuses_a_bioimageio_package_of_another_program(tmp_path, capsys):
    package = tmp_path / "other.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\nformat_version: 0.5.4\nname: StarDist nuclei\n"
                                     "config: {stardist: {}}\n")
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, tiny_samples(2, n=1)[0].image)
    assert main(["predict", "--model", str(package), "--input", str(image), "--output",
                 str(tmp_path / "out")]) == 2
    line = _error(capsys)
    assert "is a bioimage.io model package ('StarDist nuclei') but not a ColorRL model" in line
    assert "bioimageio.core" in line
