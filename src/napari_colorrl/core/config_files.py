"""Config dictionaries in and out of files: reading a config file, upgrading one written by an
older version, merging partial dictionaries with clear errors, and dotted settings
(``reward.w_split``) as nested dictionaries. The table of settings itself is ``core/config.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Bumped when the meaning of a saved config or of the saved weights changes incompatibly.
#: Version 2 removed ``train.update_epochs`` and ``train.weight_average`` (measured as not
#: helping, docs/experiments.md); a saved version-1 config holding them still loads. Version 3
#: added the ``inference`` section (tiles); an older config without it gets its defaults.
CONFIG_VERSION = 3
REMOVED_IN_2 = ("update_epochs", "weight_average")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object of a config file (not yet checked); clear errors for a bad file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"Config file {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"Config file {path} is not valid JSON: {err}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path} must hold a JSON object.")
    return data


def settings_dict(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted settings (``{"reward.w_split": 2.0}``) as a nested config dictionary."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        *sections, name = path.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return out


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config dictionary of an older version, in today's form."""
    version = data.get("version", CONFIG_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"version must be a whole number, got {version!r}.")
    if version > CONFIG_VERSION:
        raise ValueError(
            f"This configuration was written by a newer napari-colorrl (config version "
            f"{version}, this one reads up to {CONFIG_VERSION}); upgrade napari-colorrl."
        )
    train = data.get("train")
    if version < 2 and isinstance(train, dict):
        # A model trained with them is still a model: their values only shaped its training.
        data = {**data, "train": {k: v for k, v in train.items() if k not in REMOVED_IN_2}}
    return data


def to_jsonable(value: Any) -> Any:
    """``value`` with every tuple a list, at any depth (what ``json`` writes and reads back)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def deep_update(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in, nested dictionaries key by key (no checks)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def merge_known(base: dict, update: dict, path: str) -> dict:
    """``base`` with ``update`` merged in, refusing a key ``base`` lacks (named with ``path``,
    the dotted prefix of this level) and a plain value where ``base`` has a section."""
    out = dict(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ValueError(f"Unknown config setting {where!r}; known settings here: {known}.")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"Config setting {where!r} must be an object.")
            out[key] = merge_known(base[key], value, path=f"{where}.")
        else:
            out[key] = value
    return out
