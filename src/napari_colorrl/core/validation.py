"""Validation during training: segment validation images at full size and score them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .config import ColorRLConfig
from .inference import Segmenter
from .metrics import abs_dic, ap, sbd

VALIDATION_METRICS = ("sbd", "abs_dic", "ap50")


def validate(
    model: torch.nn.Module,
    config: ColorRLConfig,
    samples: Sequence,
    device: torch.device,
    min_size: int | None = None,
) -> dict[str, float]:
    """Mean SBD, |DiC| and AP50 over ``samples`` (argmax coloring, full-size scoring)."""
    segmenter = Segmenter(model, config, device=str(device))
    scores = {name: [] for name in VALIDATION_METRICS}
    try:
        for sample in samples:
            result = segmenter.segment(sample.image, min_size=min_size)
            gt = np.asarray(sample.labels)
            scores["sbd"].append(sbd(result.instances, gt))
            scores["abs_dic"].append(abs_dic(result.instances, gt))
            scores["ap50"].append(ap(result.instances, gt, 0.5))
    finally:
        model.train()
    return {name: float(np.mean(values)) for name, values in scores.items()}
