"""Named settings a run starts from: trainer recipes (``apply_recipe``), network presets, the
defaults of a new run per machine, and what the default recipe reached (``budget_expectation``,
shown before a run starts). The settings themselves, their defaults and ranges are the table
of ``config``; these are sets of values of it, shared by ``colorrl train`` and the dock."""

from __future__ import annotations

from typing import Any

from .config_files import deep_update

#: Named sets of trainer settings. "paper": the authors' A3C settings (lr 1e-4 then 1e-5,
#: entropy 0.05, no clipping). "fast": what learns most per CPU-minute in our measurements
#: (docs/experiments.md): a higher learning rate held by gradient clipping, advantages normalised
#: over the masked pixels, GAE lambda 0.95 and an entropy bonus that decays as the policy
#: settles. The method (rewards, network, coloring) is the same in both.
TRAINING_RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"lr": 1e-4, "lr_final": 1e-5, "lr_switch": 0.7, "entropy_coef": 0.05,
              "entropy_coef_final": 0.05, "gae_lambda": 1.0, "advantage_norm": False,
              "grad_clip": None},
    "fast": {"lr": 6e-4, "lr_final": 1e-4, "lr_switch": 0.8, "entropy_coef": 0.03,
             "entropy_coef_final": 0.005, "gae_lambda": 0.95, "advantage_norm": True,
             "grad_clip": 1.0},
    # Fine-tuning a trained model: "fast" at a tenth of its learning rate and without the
    # early entropy bonus, which pushed a trained policy back towards random coloring (at
    # "fast"'s own rates a 3-minute fine-tune of nuclei-2d lost 0.15 SBD on DSB val).
    "finetune": {"lr": 6e-5, "lr_final": 1e-5, "lr_switch": 0.8, "entropy_coef": 0.005,
                 "entropy_coef_final": 0.005, "gae_lambda": 0.95, "advantage_norm": True,
                 "grad_clip": 1.0},
}

#: The recipe of a fine-tune (``--init``, the dock's "start from") unless another is asked for.
FINETUNE_RECIPE = "finetune"

#: Network widths offered by name, per dimensionality (the dock's presets).
NETWORK_PRESETS: dict[int, dict[str, tuple[int, ...]]] = {
    2: {"small": (16, 32, 64, 128), "medium": (16, 32, 64, 128, 256),
        "paper": (32, 64, 128, 256, 512)},
    3: {"small": (8, 16, 32, 64), "paper": (8, 16, 32, 64, 128),
        "large": (16, 32, 64, 128, 256)},
}


#: The recipe a new run starts from, in the dock and in ``colorrl train`` (the kept one: what
#: learns most per CPU-minute, docs/results.md).
DEFAULT_RECIPE = "fast"

#: Training budgets of a new run, in minutes, by machine (CPU only, or a GPU).
DEFAULT_MINUTES = {"cpu": 10.0, "gpu": 30.0}

#: Network preset of a new run, by machine: the paper's widths need a GPU to learn in minutes.
DEFAULT_NETWORK = {"cpu": "small", "gpu": "paper"}


#: What the default recipe reached in docs/results.md (2 CPU cores, measured 2026-11-25 to
#: 2026-12-07), by dimensionality: (data set, metric, {minutes: score}). Shown before a run
#: starts as a rough idea of what a budget buys; the user's data may do better or worse. DSB at
#: 60 min: T = 5 (what steps auto gives there) with the depth chosen, one seed.
REFERENCE_RESULTS: dict[int, list[tuple[str, str, dict[float, float]]]] = {
    2: [("CVPPP leaves", "SBD", {10: 0.53, 60: 0.68}),
        ("DSB nuclei", "AP50", {10: 0.50, 60: 0.72})],
    3: [("GoNuclear nuclei", "SBD", {30: 0.38, 60: 0.41})],
}


def budget_expectation(ndim: int, minutes: float | None, device_type: str = "cpu") -> str:
    """One line on what a budget tends to give, from ``REFERENCE_RESULTS``."""
    if minutes is None:
        return ("An episode budget: the time it takes shows after the first updates (a budget "
                "in minutes is known in advance).")
    line = f"About {minutes:g} min of training."
    if device_type != "cpu":
        return line + " Reference scores were measured on CPUs; a GPU does more per minute."
    parts = []
    for name, metric, scores in REFERENCE_RESULTS[ndim]:
        near = min(scores, key=lambda m: abs(m - minutes))
        parts.append(f"{metric} {scores[near]:.2f} on {name} after {near:g} min")
    return line + " For scale, on 2 CPU cores this recipe reached " + "; ".join(parts) + \
        " (docs/results.md)."


def machine_defaults(ndim: int, device_type: str) -> dict[str, Any]:
    """Dotted settings a new run starts from on a machine whose training device is of
    ``device_type`` ("cpu", "cuda", "mps"): the network preset and a budget in minutes. The dock
    and ``colorrl train`` both put them under the recipe and under what the user gives."""
    kind = "cpu" if device_type == "cpu" else "gpu"
    return {"network.features": list(NETWORK_PRESETS[ndim][DEFAULT_NETWORK[kind]]),
            "train.minutes": DEFAULT_MINUTES[kind]}


def apply_recipe(data: dict[str, Any], name: str) -> dict[str, Any]:
    """``data`` (a nested config dictionary) with the trainer settings of recipe ``name``."""
    if name not in TRAINING_RECIPES:
        raise ValueError(f"Unknown training recipe {name!r}; choose one of "
                         f"{', '.join(TRAINING_RECIPES)}.")
    return deep_update(data, {"train": TRAINING_RECIPES[name]})
