"""Screenshots of the two docks in use, for the documentation.

    xvfb-run -a -s "-screen 0 1280x1024x24" python docs/make_screenshots.py [--minutes 4]

Writes docs/images/training-2d.png, segmentation-2d.png, steps-1.png, steps-last.png,
correct-retrain.png, training-3d.png and segmentation-3d.png, in a 1280 x 1024 window: it trains
on the bundled synthetic samples for ``--minutes`` each (2D, then 3D) with small networks and the
"fast" recipe, as a user of a laptop would, then corrects a result and fine-tunes on it. Then
segmentation-large.png: a 4096 x 4096 image of synthetic nuclei (a dask array, as napari holds
large data) segmented by the bundled nuclei-2d model in tiles. ``--only large`` makes that one
alone.
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
    training.refresh()
    viewer.reset_view()
    training.start()  # brings the Plot tab up
    wait(app, lambda: len(training.history) > 0 and training.history[-1].progress > 0.9)
    app.processEvents()
    viewer.screenshot(str(IMAGES / name), canvas_only=False)
    wait(app, lambda: not training.running)


def segment(app, segmentation, layer_name: str) -> None:
    from napari_colorrl.widgets import show_dock

    show_dock(segmentation)
    segmentation.image.select(layer_name)
    segmentation.run()
    wait(app, lambda: not segmentation.running)


def large_image(app, viewer) -> None:
    """A 4096 x 4096 field of synthetic nuclei segmented by nuclei-2d in tiles, zoomed on a
    corner where four tiles meet."""
    import dask.array as da

    from napari_colorrl.core.data.synthetic import make_round_nuclei
    from napari_colorrl.widgets import show_dock

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
    from napari_colorrl.widgets import show_dock
    from napari_colorrl.widgets.launch import setup_demo

    IMAGES.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="colorrl-screenshots-"))
    viewer = napari.Viewer(title="ColorRL")
    viewer.window._qt_window.resize(1280, 1024)
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
    viewer.screenshot(str(IMAGES / "segmentation-2d.png"), canvas_only=False)
    # The step view: step 1 (foreground) and the last step (every object its own color).
    for step, name in ((1, "steps-1.png"), (segmentation.step_slider.maximum(),
                                            "steps-last.png")):
        segmentation.step_slider.setValue(step)
        app.processEvents()
        viewer.screenshot(str(IMAGES / name), canvas_only=False)

    # Correct, then retrain: the validation frames segmented, frame 0 corrected (the truth
    # stands in for the user's painting), one button, a one-minute fine-tune.
    for name in ("cells (training)", "cells training ground truth", "cells (training) colors",
                 "cells (training) instances"):
        viewer.layers[name].visible = False
    viewer.layers["cells (validation)"].visible = True
    segment(app, segmentation, "cells (validation)")
    instances = viewer.layers["cells (validation) instances"]
    corrected = instances.data.copy()
    corrected[0] = viewer.layers["cells validation ground truth"].data[0]
    instances.data = corrected
    viewer.layers.selection.active = instances
    viewer.dims.set_point(0, 0)
    training.budget_kind.setCurrentText("minutes")
    training.budget.setValue(1.0)
    segmentation.retrain()
    wait(app, lambda: len(training.history) >= 3)
    viewer.screenshot(str(IMAGES / "correct-retrain.png"), canvas_only=False)
    wait(app, lambda: not training.running)

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
