"""napari sample-data providers (npe2 ``sample_data`` contributions in ``napari.yaml``).

Imports only numpy and :mod:`napari_colorrl.core.data.synthetic`: no napari, Qt or torch at import
time. Each provider returns a list of napari ``LayerDataTuple``\\ s: the synthetic image and its
ground-truth labels, ready to train on or to segment.
"""

from __future__ import annotations

from typing import Any

from napari_colorrl.core.data.synthetic import make_cells_2d, make_nuclei_3d

LayerDataTuple = tuple[Any, dict[str, Any], str]


def cells_2d() -> list[LayerDataTuple]:
    """Touching 2D cells (176 x 176, float32 in [0, 1]) and their uint16 ground-truth labels."""
    image, labels = make_cells_2d(seed=0)
    return [
        (image, {"name": "cells (synthetic)", "colormap": "gray"}, "image"),
        (labels, {"name": "cells ground truth", "opacity": 0.5}, "labels"),
    ]


def nuclei_3d() -> list[LayerDataTuple]:
    """Touching 3D nuclei (48 x 64 x 64 ZYX, isotropic voxels) and their ground-truth labels."""
    image, labels = make_nuclei_3d(seed=0)
    return [
        (image, {"name": "nuclei (synthetic)", "colormap": "gray"}, "image"),
        (labels, {"name": "nuclei ground truth", "opacity": 0.5}, "labels"),
    ]
