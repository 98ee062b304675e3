"""The segmentation dock with bioimage.io packages written by ``colorrl export``.

Run with a display: xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest ...
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("bioimageio.spec")

from test_widgets_reliability import _segment, notes  # noqa: E402, F401

from conftest import tiny_samples, trained_model  # noqa: E402
from napari_colorrl.core.model.bioimage_export import export_package  # noqa: E402

pytestmark = [pytest.mark.gui,
              pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")]


def test_segmentation_dock_runs_a_package_as_its_checkpoint(docks, qtbot, tmp_path):
    viewer, _, segmentation = docks
    model = trained_model(tmp_path / "cells.pt")
    package = export_package(model, tmp_path / "cells.zip").path
    viewer.add_image(tiny_samples(2, n=1, shape=(41, 36))[0].image, name="cells")
    _segment(qtbot, segmentation, model, "cells")
    from_checkpoint = np.asarray(viewer.layers["cells instances"].data).copy()
    _segment(qtbot, segmentation, package, "cells")
    assert segmentation.model.currentText() == "file: cells.zip"
    assert segmentation.progress.format() != "failed", segmentation.status.text()
    np.testing.assert_array_equal(viewer.layers["cells instances"].data, from_checkpoint)
    assert from_checkpoint.max() > 0


def test_segmentation_dock_refuses_a_package_of_another_program(docks, qtbot, tmp_path,
                                                                 notes):  # noqa: F811
    viewer, _, segmentation = docks
    viewer.add_image(tiny_samples(2, n=1)[0].image, name="cells")
    package = tmp_path / "other.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\nformat_version: 0.5.4\nname: cellpose cyto3\n")
    _segment(qtbot, segmentation, package, "cells")
    assert notes and "not a ColorRL model exported by napari-colorrl" in notes[-1]
    assert segmentation.progress.format() == "failed" and not segmentation.results
