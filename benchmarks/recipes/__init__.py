"""The benchmarks' training recipes: three complete base configs and the experiments tried.

``cvppp.json``, ``dsb.json`` and ``gonuclear3d.json`` are the kept recipes, complete config files
(``colorrl train --config`` reads them as they are). Each ``experiments/NAME.json`` is a lever
tried against one of them, written as ``{"base": BASE, "why": "one line", "changes": {...}}``
with only the settings that differ from the base. ``load_recipe(name)`` gives the full config of
either kind; ``write_recipe(config, path)`` writes one to hand to training as its config file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from napari_colorrl.core.config_files import deep_update

FOLDER = Path(__file__).resolve().parent
EXPERIMENTS = FOLDER / "experiments"


def base_names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.json"))


def experiment_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS.glob("*.json"))


def recipe_names() -> list[str]:
    """Every name ``load_recipe`` knows: the bases, then the experiments."""
    return base_names() + experiment_names()


def experiment(name: str) -> dict[str, Any]:
    """The override file of an experiment as it is: base, why and changes."""
    path = EXPERIMENTS / f"{name}.json"
    if not path.is_file():
        raise ValueError(_unknown(name))
    return json.loads(path.read_text())


def load_recipe(name: str) -> dict[str, Any]:
    """The full config dict of a base recipe, or of an experiment (its base deep-updated by its
    changes). ValueError naming the known recipes for an unknown name."""
    base = FOLDER / f"{name}.json"
    if base.is_file():
        return json.loads(base.read_text())
    spec = experiment(name)
    if spec.get("base") not in base_names():
        raise ValueError(f"Experiment {name!r} names the base {spec.get('base')!r}; the bases "
                         f"are {', '.join(base_names())}.")
    return deep_update(load_recipe(spec["base"]), spec.get("changes", {}))


def write_recipe(config: dict[str, Any], path: Path) -> Path:
    """Write a config dict as a JSON config file (e.g. the run folder's config.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _unknown(name: str) -> str:
    return (f"Unknown recipe {name!r}; the bases are {', '.join(base_names())} and the "
            f"experiments {', '.join(experiment_names())}.")
