"""Screenshots of the two docks in use, for the documentation.

    xvfb-run -a -s "-screen 0 1920x1200x24" python docs/make_screenshots.py [--minutes 4]

Writes docs/images/training-2d.png, segmentation-2d.png, training-3d.png and segmentation-3d.png:
it trains on the bundled synthetic samples for ``--minutes`` each (2D, then 3D) with small
networks and the "fast" recipe, as a user of a laptop would. Then segmentation-large.png: a
4096 x 4096 image of synthetic nuclei (a dask array, as napari holds large data) segmented by
the bundled nuclei-2d model in tiles. ``--only large`` makes that one alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

IMAGES = Path(__file__).resolve().parent / "images"


def wait(app, done, timeout: float = 900.0) -> None:
    start = time.perf_counter()
    while not done() and time.perf_counter() - start < timeout:
        app.processEvents()
        time.sleep(0.02)


def train_and_shoot(app, viewer, training, name: str) -> None:
    """Start training, take the screenshot near the end (plot in view), wait for the end."""
    from qtpy.QtWidgets import QScrollArea

    training.refresh()
    viewer.reset_view()
    training.start()
    wait(app, lambda: len(training.history) > 0 and training.history[-1].progress > 0.9)
    area = training.findChild(QScrollArea)  # scroll down so the live plot is in the picture
    area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    app.processEvents()
    viewer.screenshot(str(IMAGES / name), canvas_only=False)
    wait(app, lambda: not training.running)


def segment(app, segmentation, layer_name: str) -> None:
    from napari_colorrl.widgets.launch import show_dock

    show_dock(segmentation)
    segmentation.image.select(layer_name)
    segmentation.run()
    wait(app, lambda: not segmentation.running)


def large_image(app, viewer) -> None:
    """A 4096 x 4096 field of synthetic nuclei segmented by nuclei-2d in tiles, zoomed on a
    corner where four tiles meet."""
    import dask.array as da

    from napari_colorrl.core.data.synthetic import make_round_nuclei
    from napari_colorrl.widgets.launch import show_dock

    viewer.layers.clear()
    image, _ = make_round_nuclei((4096, 4096), seed=0)
    viewer.add_image(da.from_array(image, chunks=1024), name="nuclei 4096 x 4096")
    _, segmentation = viewer.window.add_plugin_dock_widget("napari-colorrl",
                                                           "ColorRL Segmentation")
    show_dock(segmentation)
    segmentation.model.setCurrentIndex(segmentation.model.findText("bundled: nuclei-2d"))
    segmentation.object_size.setText("16")
    segment(app, segmentation, "nuclei 4096 x 4096")
    for name in list(viewer.layers.selection):
        viewer.layers.selection.discard(name)
    viewer.layers["nuclei 4096 x 4096 colors"].visible = False
    seam = segmentation.results[0].plan.grid.axes[0].core_ends[0]
    camera = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
    camera.center = (seam, seam)
    camera.zoom = 1.2
    app.processEvents()
    viewer.screenshot(str(IMAGES / "segmentation-large.png"), canvas_only=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training time per sample")
    parser.add_argument("--only", choices=("large",), default=None,
                        help="make only this screenshot")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_colorrl.sample_data import nuclei_3d
    from napari_colorrl.widgets.launch import setup_demo, show_dock

    IMAGES.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="colorrl-screenshots-"))
    viewer = napari.Viewer(title="ColorRL")
    viewer.window._qt_window.resize(1680, 1050)
    app = QApplication.instance()
    if args.only == "large":
        large_image(app, viewer)
        viewer.close()
        print(f"screenshot in {IMAGES}")
        return 0

    # 2D: the demo (training and validation cells, small network), trained for a while.
    training, segmentation = setup_demo(viewer, args.minutes, out, start=False)
    training.every.setValue(10)
    train_and_shoot(app, viewer, training, "training-2d.png")

    segment(app, segmentation, "cells (training)")
    viewer.layers["cells training ground truth"].visible = False
    segmentation.step_slider.setValue(segmentation.step_slider.maximum() - 1)
    viewer.screenshot(str(IMAGES / "segmentation-2d.png"), canvas_only=False)

    # 3D: the nuclei sample, a small 3D network on 32^3 crops.
    viewer.layers.clear()
    for data, kwargs, kind in nuclei_3d():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    show_dock(training)
    training.train_pairs.set_pairs([("nuclei (synthetic)", "nuclei ground truth")])
    training.val_pairs.set_pairs([])
    training.set_model_ndim(3)
    training.input_size.setValue(32)
    training.network.setCurrentIndex(0)  # small
    training.batch_size.setValue(2)
    training.recipe.setCurrentText("fast")
    training.budget_kind.setCurrentText("minutes")
    training.budget.setValue(args.minutes)
    training.output.setText(str(out / "nuclei-3d.pt"))
    train_and_shoot(app, viewer, training, "training-3d.png")
    segment(app, segmentation, "nuclei (synthetic)")
    viewer.layers["nuclei ground truth"].visible = False
    viewer.layers["nuclei (synthetic) colors"].visible = False
    # A slice through the middle of the volume shows the instances more clearly than a
    # rendering of the whole volume; the dims slider below the canvas moves through z.
    viewer.dims.ndisplay = 2
    viewer.dims.set_point(0, viewer.layers["nuclei (synthetic)"].data.shape[0] // 2)
    viewer.reset_view()
    app.processEvents()
    viewer.screenshot(str(IMAGES / "segmentation-3d.png"), canvas_only=False)
    large_image(app, viewer)
    viewer.close()
    print(f"screenshots in {IMAGES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
