"""The settings table's machinery: the field declaration (:func:`setting`), the row
(:class:`Setting`: type, default, range, help; parsing and range checks with messages naming
the setting) and the table of a config dataclass (:func:`settings_of`). The settings themselves,
their defaults and help are the dataclasses of ``config.py``."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            choices: tuple | None = None, low_open: bool = False) -> Any:
    """A dataclass field of the settings table: default, one line of help, the valid range
    (``low`` <= value <= ``high``; ``low_open``: low < value) or the valid ``choices``. For a
    tuple setting the range applies to each item."""
    meta = {"help": help, "low": low, "high": high, "choices": choices, "low_open": low_open}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: a leaf field of the config, reached by ``path``."""

    path: str  # "steps", "reward.w_split"
    kind: type  # int, float, bool, str
    is_tuple: bool
    optional: bool
    default: Any
    help: str
    low: float | None
    high: float | None
    choices: tuple | None
    low_open: bool

    @property
    def section(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    def get(self, config: Any) -> Any:
        """The value of this setting in ``config`` (a ``ColorRLConfig``)."""
        node: Any = config
        for part in self.path.split("."):
            node = getattr(node, part)
        return node

    def range_text(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.low is not None and self.high is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g} and <= {self.high:g}"
        elif self.kind is bool:
            text = "true or false"
        else:
            text = f"a {self.kind.__name__}"
        if self.is_tuple:
            text = f"a list of whole numbers, each {text}"
        return text + (", or null" if self.optional else "")

    def parse(self, value: Any) -> Any:
        """``value`` from JSON as the field's type (lists become tuples, whole floats ints);
        ValueError naming the setting and its valid range for anything else."""
        if value is None and self.optional:
            return None
        if self.is_tuple:
            if not isinstance(value, (list, tuple)):
                raise self.error(value)
            return tuple(self._scalar(v, value) for v in value)
        return self._scalar(value, value)

    def _scalar(self, value: Any, shown: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise self.error(shown)
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise self.error(shown)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(shown)
        if not math.isfinite(value):
            raise self.error(shown)
        if self.kind is int:
            if float(value) != int(value):
                raise self.error(shown)
            return int(value)
        return float(value)

    def check(self, value: Any) -> None:
        """Raise ValueError when ``value`` (already of the field's type) is out of range."""
        value = self.parse(value)
        if value is None:
            return
        for item in value if self.is_tuple else (value,):
            if self.choices is not None and item not in self.choices:
                raise self.error(value)
            if self.low is not None and (item < self.low or (self.low_open and item == self.low)):
                raise self.error(value)
            if self.high is not None and item > self.high:
                raise self.error(value)

    def error(self, value: Any) -> ValueError:
        shown = list(value) if isinstance(value, tuple) else value
        return ValueError(f"{self.path} must be {self.range_text()}; got {json.dumps(shown)}.")


def settings_of(cls: type, prefix: str = "") -> list[Setting]:
    """The rows of the table for the dataclass ``cls``, nested sections flattened in field
    order (``reward.w_split``); the field ``version`` is not a setting."""
    hints = typing.get_type_hints(cls)
    rows: list[Setting] = []
    for f in fields(cls):
        if f.name == "version":
            continue
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            rows += settings_of(kind, f"{prefix}{f.name}.")
            continue
        args = typing.get_args(kind)
        optional = type(None) in args
        is_tuple = typing.get_origin(kind) is tuple
        if optional:
            kind = next(a for a in args if a is not type(None))
        if is_tuple:
            kind = typing.get_args(kind)[0]
        meta = f.metadata
        rows.append(Setting(
            path=f"{prefix}{f.name}", kind=kind, is_tuple=is_tuple, optional=optional,
            default=f.default, help=meta["help"], low=meta["low"], high=meta["high"],
            choices=meta["choices"], low_open=meta["low_open"]))
    return rows
