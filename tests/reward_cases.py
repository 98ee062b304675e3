"""Hand-made label maps and colorings for reward tests (no training): a square with four
touching squares, its merged and correct colorings, and the total return of a coloring."""

from __future__ import annotations

import numpy as np
import torch

from napari_colorrl.core.config import RewardConfig
from napari_colorrl.core.method.rewards import collate_targets, episode_rewards
from napari_colorrl.core.method.targets import prepare_targets

STEPS = 3


def plus(side: int) -> np.ndarray:
    """A square i (1) with four touching squares: j (2) on its right, 3 left, 4 up, 5 down."""
    labels = np.zeros((3 * side, 3 * side), np.int32)
    a, b = side, 2 * side
    labels[a:b, a:b] = 1
    labels[a:b, b:] = 2
    labels[a:b, :a] = 3
    labels[:a, a:b] = 4
    labels[b:, a:b] = 5
    return labels


# i and j merged (both color 1); every other pair of neighbours differs (j and the left square
# are a side apart, as are up and down: not neighbours, so they may share a color; the corner
# squares touch diagonally). c = a_0 + 2 a_1 + 4 a_2, a_0 = 1 on the foreground.
MERGED = {1: 1, 2: 1, 3: 3, 4: 5, 5: 7}
CORRECT = {**MERGED, 2: 3}


def total_return(labels: np.ndarray, colors: np.ndarray, config: RewardConfig) -> float:
    """Sum of the rewards of every pixel over the T steps, per foreground pixel."""
    actions = torch.from_numpy(np.stack([(colors >> t) & 1 for t in range(STEPS)])[:, None]
                               .astype(bool))
    parts = episode_rewards(collate_targets([prepare_targets(labels, config)]), actions)
    return float(sum(p.total.sum() for p in parts)) / float((labels > 0).sum())


def coloring(labels: np.ndarray, colors: dict[int, int]) -> np.ndarray:
    out = np.zeros(labels.shape, np.int64)
    for label, color in colors.items():
        out[labels == label] = color
    return out
