"""From a color map to instances: connected components per color, small-object removal.

``skimage.measure.label`` labels connected regions of equal value, so one call separates every
color at once: no loop per color or per object.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as label_regions

from ..data.normalize import resize_nearest


def label_dtype(n_labels: int) -> np.dtype:
    """uint16 when the ids fit, else uint32."""
    return np.dtype(np.uint16) if n_labels < 2**16 else np.dtype(np.uint32)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set components smaller than ``min_size`` to 0 and relabel the rest 1..N (vectorised)."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(int(min_size), 1)
    keep[0] = False
    new_ids = np.zeros(sizes.shape[0], dtype=np.int64)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1)
    n = int(keep.sum())
    return new_ids.astype(label_dtype(n))[labels]


def instances_from_colors(
    colors: np.ndarray,
    *,
    min_size: int = 0,
    connectivity: int | None = None,
    output_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Instances from a color map (2D or 3D), ids 1..N, 0 = background (color 0).

    colors: integer color map at the network's resolution.
    connectivity: 1 .. ndim (skimage convention); None = full connectivity.
    output_shape: resize the labels back to this shape (nearest) before small objects are
        removed, so ``min_size`` is in pixels/voxels of the output image, the user's unit.
    Returns uint16 labels, or uint32 when there are 65536 objects or more.
    """
    colors = np.asarray(colors)
    if connectivity is None:
        connectivity = colors.ndim
    components = label_regions(colors, background=0, connectivity=connectivity)
    if output_shape is not None:
        components = resize_nearest(components, tuple(output_shape))
    return remove_small(components, min_size)
