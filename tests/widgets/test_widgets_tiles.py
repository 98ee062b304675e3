"""The segmentation dock at the model's scale and in tiles (issue 18, points 2, 4 and 5):
object size (in pixels or the layer's units), progress with the tile count, a Cancel that
writes no layer, dask and multiscale layers, results too large for memory kept on disk.

Run with a display: xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest ...
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_widgets import WAIT_MS  # noqa: E402

from napari_colorrl.core.config import ColorRLConfig  # noqa: E402
from napari_colorrl.core.data.scale import TrainingScale  # noqa: E402
from napari_colorrl.core.data.synthetic import make_round_nuclei  # noqa: E402
from napari_colorrl.core.model.checkpoint import save_checkpoint  # noqa: E402
from napari_colorrl.core.model.networks import build_network  # noqa: E402
from napari_colorrl.widgets import _segmentation_run  # noqa: E402
from napari_colorrl.widgets._layers import result_unedited  # noqa: E402

pytestmark = pytest.mark.gui


def write_model(path):
    """A tiny 'crop' model whose training objects were 8 px across."""
    config = ColorRLConfig.from_dict({
        "ndim": 2, "steps": 2, "min_size": 0, "input_mode": "crop", "input_size": [32, 32],
        "network": {"features": [4, 8], "attention": False, "input_features": 4}})
    torch.manual_seed(0)
    scale = TrainingScale((8.0, 8.0), (1.0, 1.0), (), objects=10)
    save_checkpoint(path, config=config, model_state=build_network(config).state_dict(),
                    extra={"training_scale": scale.to_dict()})
    return path


@pytest.fixture
def dock(docks, tmp_path):
    viewer, _, segmentation = docks
    segmentation.add_model_file(write_model(tmp_path / "m.pt"))
    return viewer, segmentation


def _record_progress(segmentation, monkeypatch, then=None):
    seen = []
    original = segmentation._on_progress

    def record(update):
        seen.append(tuple(update))
        original(update)
        if then is not None:
            then(update)

    monkeypatch.setattr(segmentation, "_on_progress", record)
    return seen


def _run(qtbot, segmentation):
    segmentation.run()
    qtbot.waitUntil(lambda: not segmentation.running, timeout=WAIT_MS)


def test_object_size_and_tiles_with_progress(dock, qtbot, monkeypatch):
    viewer, segmentation = dock
    image, _ = make_round_nuclei((120, 150), seed=0)
    viewer.add_image(image, name="nuclei", scale=(0.5, 0.5))
    segmentation.image.select("nuclei")
    segmentation.object_size.setText("16")
    segmentation.tile_size.setText("32")
    segmentation.tile_overlap.setValue(8)
    seen = _record_progress(segmentation, monkeypatch)
    _run(qtbot, segmentation)
    result = segmentation.results[0]
    assert result.plan.factors == pytest.approx((0.5, 0.5), abs=0.01)  # 16 px -> 8 px
    assert result.plan.tiles > 1 and seen[-1] == (1, 1, result.plan.tiles, result.plan.tiles)
    assert viewer.layers["nuclei instances"].data.shape == image.shape
    segmentation.in_layer_units.setChecked(True)  # 16 units of 0.5: 32 px across
    _run(qtbot, segmentation)
    assert segmentation.results[0].plan.factors == pytest.approx((0.25, 0.25), abs=0.01)


def test_cancel_stops_between_tiles_and_writes_no_layer(dock, qtbot, monkeypatch):
    viewer, segmentation = dock
    image, _ = make_round_nuclei((160, 160), seed=1)
    viewer.add_image(image, name="big")
    segmentation.image.select("big")
    segmentation.tile_size.setText("32")
    segmentation.tile_overlap.setValue(16)
    once = []
    seen = _record_progress(segmentation, monkeypatch,
                            then=lambda update: once or once.append(segmentation.cancel()))
    _run(qtbot, segmentation)
    assert seen and seen[-1][2] < seen[-1][3]  # stopped before the last tile
    assert "big instances" not in viewer.layers and "big colors" not in viewer.layers
    assert "Cancelled" in segmentation.status.text()
    assert segmentation.run_button.isEnabled() and not segmentation.cancel_button.isEnabled()
    segmentation.tile_size.setText("")
    _run(qtbot, segmentation)  # a run after a cancel works
    assert viewer.layers["big instances"].data.shape == image.shape


def test_dask_and_multiscale_layers_are_segmented_at_full_resolution(dock, qtbot):
    da = pytest.importorskip("dask.array")
    viewer, segmentation = dock
    image, _ = make_round_nuclei((128, 96), seed=2)
    viewer.add_image(da.from_array(image, chunks=32), name="lazy")
    viewer.add_image([image, image[::2, ::2]], multiscale=True, name="pyramid")
    for name in ("lazy", "pyramid"):
        segmentation.image.select(name)
        _run(qtbot, segmentation)
        assert viewer.layers[f"{name} instances"].data.shape == image.shape, name


def test_results_too_large_for_memory_go_to_a_zarr_layer(dock, qtbot, monkeypatch):
    viewer, segmentation = dock
    image, _ = make_round_nuclei((96, 96), seed=3)
    viewer.add_image(np.stack([image, image]), name="stack")
    segmentation.image.select("stack")
    monkeypatch.setattr(_segmentation_run, "IN_MEMORY_SHARE", 1e-12)
    _run(qtbot, segmentation)
    result = segmentation.results
    assert isinstance(result, _segmentation_run.LazyResult) and result.folder.is_dir()
    layer = viewer.layers["stack instances"]
    assert layer.data.shape == (2, 96, 96) and not isinstance(layer.data, np.ndarray)
    assert result_unedited(layer) and "stack step 1" not in viewer.layers
    np.testing.assert_array_equal(np.asarray(layer.data[0]), np.asarray(layer.data[1]))
    result.remove()
