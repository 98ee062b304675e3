"""How many coloring steps T: N_b, the most neighbours of any object, and T from it.

With T binary steps there are 2^T colors; step 0 separates foreground from background, so
2^(T-1) colors are left for the objects, and an object with N_b neighbours within the largest
splitting radius needs 2^(T-1) + 1 >= N_b (the paper's rule; docs/method.md, "Number of steps").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..config import ColorRLConfig
from ..data.checks import warn
from ..data.normalize import network_labels
from .targets import grown_box, relabel


def max_neighbours(labels: np.ndarray, radius: float) -> int:
    """N_b: the largest number of distinct other instances within Euclidean distance
    <= ``radius`` (pixels) of any instance of ``labels`` ((H, W) or (D, H, W) ints); 0 if none.
    """
    lab, _ = relabel(labels)
    reach = int(math.floor(radius))
    best = 0
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:  # pragma: no cover
            continue
        crop = lab[grown_box(box, lab.shape, reach)]
        obj = crop == i
        near = (crop > 0) & ~obj & (ndi.distance_transform_edt(~obj) <= radius)
        best = max(best, int(np.unique(crop[near]).size))
    return best


def steps_for_neighbours(n_b: int) -> int:
    """Smallest T >= 1 with 2^(T-1) + 1 >= n_b (the paper's choice of the number of steps)."""
    t = 1
    while 2 ** (t - 1) + 1 < n_b:
        t += 1
    return t


def auto_steps(
    label_maps: Sequence[np.ndarray], config: ColorRLConfig
) -> tuple[int, int]:
    """``T = auto``: (T, N_b) with N_b the most neighbours of any instance in the training
    labels at the network's resolution, neighbours being closer than the largest radius."""
    radius = max(config.reward.radii)
    n_b = max((max_neighbours(network_labels(lab, config), radius) for lab in label_maps),
              default=0)
    # The paper's rule gives T = 1 for one or two neighbours, but with a single step every object
    # gets the same foreground color; two steps are the fewest that can tell neighbours apart.
    return max(steps_for_neighbours(n_b), 2 if n_b >= 1 else 1), n_b


def check_steps(steps: int, n_b: int, radius: float) -> str | None:
    """A warning (also emitted) when T steps cannot color ``n_b`` neighbours apart."""
    capacity = 2 ** (steps - 1) + 1
    if n_b <= capacity:
        return None
    needed = max(steps_for_neighbours(n_b), 2)
    message = (
        f"T = {steps} coloring steps separate at most {capacity} neighbouring objects "
        f"(2^(T-1)+1), but an object in the training labels has {n_b} neighbours within "
        f"{radius:g} px: neighbours will share colors and merge. Use T = {needed} (steps auto)."
    )
    warn(message)
    return message
