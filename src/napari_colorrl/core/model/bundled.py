"""Models shipped inside the package, usable by name (``--model nuclei-2d``)."""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "weights"

#: name -> file name inside ``core/model/weights``.
BUNDLED_MODELS: dict[str, str] = {"nuclei-2d": "nuclei-2d.pt", "nuclei-3d": "nuclei-3d.pt"}

#: name -> what a bioimage.io package of the model says about it (``colorrl export``): its
#: training data and its validation scores (docs/results.md).
BUNDLED_INFO: dict[str, dict] = {
    "nuclei-2d": {
        "training_data": {
            "name": "DSB 2018 fluorescence nuclei (BBBC038)",
            "description": "The fluorescence images (up to 512 px) of the Kaggle Data Science "
            "Bowl 2018 stage-1 nuclei set, BBBC038: 300 training and 45 validation images.",
            "license": "CC0-1.0",
            "doi": "10.1038/s41592-019-0612-7",
            "citation": "Caicedo et al.: Nucleus segmentation across imaging experiments: the "
            "2018 Data Science Bowl. Nature Methods 16, 1247-1253 (2019)",
        },
        "validation": "Trained on 240 of the 300 training images; the checkpoint, the depth "
        "(2 of its 3 steps) and the minimum size (32 px) were chosen on the other 60. On the 45 "
        "validation images, scored at full size (2026-12-06, napari-colorrl docs/results.md): "
        "SBD 0.791, AP50 0.760, mAP 0.510, AJI 0.724, absolute difference in count 4.62.",
    },
    "nuclei-3d": {
        "training_data": {
            "name": "Synthetic round 3D nuclei (napari-colorrl)",
            "description": "Volumes of 64 x 96 x 96 voxels holding about 45 bright round "
            "nuclei of radius 6 voxels (within 15 %), mostly apart and a few touching, on a "
            "dark noisy background, generated in code "
            "(napari_colorrl.core.data.synthetic.make_round_nuclei in 3D, written by "
            "benchmarks/synthetic_set.py --kind round): 16 training and 4 validation volumes.",
            "license": "CC0-1.0",
        },
        "validation": "On the 4 validation volumes of that set (2026-12-02, napari-colorrl "
        "docs/results.md): SBD 0.831, AP50 0.849, mAP 0.594, AJI 0.739, absolute difference "
        "in count 4.5. Trained for 25 minutes on 2 CPU cores; for touching nuclei, train on "
        "your own labels.",
    },
}


def is_bundled(path: str | Path) -> bool:
    """Whether ``path`` is one of the files of ``BUNDLED_MODELS``."""
    path = Path(path).resolve()
    return path.parent == MODEL_DIR and path.name in BUNDLED_MODELS.values()


def with_current_tiling(checkpoint):
    """``checkpoint`` with the tile size and overlap of this version's defaults for its
    dimensionality. A checkpoint stores the ``inference`` section of the config it was trained
    with; a bundled model's is that of the day it was exported, and the defaults have since been
    chosen by measurement (docs/results.md, "Tiles and scale"): nuclei-2d was exported with 64 px
    of overlap, where 128 is what makes tiles agree with one pass."""
    import dataclasses

    from ..config import ColorRLConfig

    config = checkpoint.config
    inference = ColorRLConfig.default_for(config.ndim).inference
    return dataclasses.replace(checkpoint, config=config.replace(inference=inference))


def available_models() -> list[str]:
    """Names of bundled models whose files are present."""
    return [name for name, file in BUNDLED_MODELS.items() if (MODEL_DIR / file).is_file()]


def resolve_model_path(model: str | Path) -> Path:
    """A bundled model name or a path to a checkpoint file or a bioimage.io package -> the
    file's path."""
    text = str(model)
    if text in BUNDLED_MODELS:
        path = MODEL_DIR / BUNDLED_MODELS[text]
        if not path.is_file():
            raise FileNotFoundError(
                f"The bundled model {text!r} is not part of this installation; "
                f"give the path of a checkpoint file instead."
            )
        return path
    path = Path(model).expanduser()
    if not path.exists():
        names = ", ".join(available_models()) or "none installed"
        raise FileNotFoundError(
            f"Model {text!r} not found: give the path of a checkpoint written by `colorrl train`, "
            f"of a bioimage.io package written by `colorrl export`, or a bundled model name "
            f"({names})."
        )
    return path
