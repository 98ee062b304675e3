"""Validation during training: segment validation images as the product does and score them.

The coloring (T network passes) runs once per image; the post-processing is cheap, so the
minimum object size is chosen here too, on the validation images, as the paper does: every
candidate size is tried on the same stitched objects and the one with the best score is kept.
So is the depth (docs/method.md, "Depth"): the instances made from the colors after the first
k of the T steps, for every k, since the colors after k steps are the first k bits of the
colors after T.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import ColorRLConfig
from ..data.scale import TrainingScale
from ..inference import Segmenter
from ..method.postprocess import instances_from_colors
from ..metrics import evaluate_min_sizes

VALIDATION_METRICS = ("sbd", "abs_dic", "ap50")


def min_size_candidates(default: int, image_size: int) -> list[int]:
    """Sizes to try: 0, the configured one, and a geometric ladder up to 1% of the image."""
    top = max(1, image_size // 100)
    ladder = {0, int(default)}
    size = 4
    while size <= top:
        ladder.add(size)
        size *= 2
    return sorted(ladder)


def selection_score(scores: dict[str, float]) -> float:
    """What the min-size choice maximises: SBD + AP50 (both in [0, 1]).

    SBD alone rewards dropping small true objects as readily as fragments; AP50 alone ignores
    how well the kept objects fit. Their sum balances the two.
    """
    return scores["sbd"] + scores["ap50"]


def validate(
    model: torch.nn.Module,
    config: ColorRLConfig,
    samples: Sequence,
    device: torch.device,
    min_size: int | None = None,
    choose_min_size: bool = False,
    scale: TrainingScale | dict | None = None,
    choose_depth: bool = False,
) -> dict[str, float]:
    """Mean SBD, |DiC| and AP50 over ``samples`` (argmax coloring, full-size scoring).

    Each image is segmented as the product segments it (``Segmenter.segment``: the same plan,
    tiles and instance-norm statistics), so a checkpoint and a minimum size are chosen on the
    path they are used on. scale: the model's ``TrainingScale`` (or its ``to_dict()``), as the
    checkpoint will record it; without it the scale derived from ``config``, which for a
    'resize' model differs from the measured one on images of other shapes.

    With ``choose_min_size`` the minimum object size is picked among
    :func:`min_size_candidates` to maximise :func:`selection_score`; the result then also holds
    ``"min_size"``, the size chosen (the scores are those at that size). A size is the
    model's, in pixels of an image at the training scale, as ``config.min_size`` is: each image
    applies it at its own scale (``InferencePlan.default_min_size``), as the product does.

    With ``choose_depth`` every depth k = 1 .. T is tried with every size (the instances of
    the colors after the first k steps, ``Segmentation.colors_after``) and the result also
    holds ``"depth"``, the k chosen (T when all steps win, the same choice as 0; a smaller k
    only when it scores strictly better). Without it the model runs the steps ``config.depth``
    asks for.
    """
    if isinstance(scale, dict):
        scale = TrainingScale.from_dict(scale, config.ndim)
    if choose_depth:
        config = config.replace(depth=0)
    segmenter = Segmenter(model, config, device=str(device), fast_layout=False, scale=scale)
    results, gts = [], []
    try:
        for sample in samples:
            results.append(segmenter.segment(sample.image, min_size=0, keep_steps=choose_depth))
            gts.append(np.asarray(sample.labels))
    finally:
        model.train()
    default = config.min_size if min_size is None else int(min_size)
    candidates = [default]
    if choose_min_size and results:
        candidates = min_size_candidates(default, int(min(r.objects.size for r in results)))
    # All T steps first: a smaller depth must score strictly better to be chosen (on a few
    # images whose objects happen not to touch, depth 1 would tie and then merge elsewhere).
    depths = range(config.steps, 0, -1) if choose_depth else [config.passes]
    best: dict[str, float] | None = None
    for depth in depths:
        if depth == segmenter.steps:
            objects = [r.objects for r in results]
        else:
            objects = [instances_from_colors(r.colors_after(depth),
                                             connectivity=config.connectivity)
                       for r in results]
        # Per image, the scores at every candidate size (each image's size at its own scale).
        per_image = [evaluate_min_sizes(o, gt, [r.plan.default_min_size(size)
                                                for size in candidates], VALIDATION_METRICS)
                     for o, gt, r in zip(objects, gts, results)]
        for k, size in enumerate(candidates):
            scores = {name: float(np.mean([rows[k][name] for rows in per_image]))
                      for name in VALIDATION_METRICS}
            scores["min_size"], scores["depth"] = float(size), float(depth)
            if best is None or selection_score(scores) > selection_score(best):
                best = scores
    assert best is not None
    if not choose_min_size:
        best.pop("min_size")
    if not choose_depth:
        best.pop("depth")
    return best

