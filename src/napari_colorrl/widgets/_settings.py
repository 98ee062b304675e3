"""Form fields made from the settings table of ``core.config``: one Qt editor per setting, with
the table's range, default and help (as the tooltip), and reading it back checked by the table.

The dock never types a default, range or help of its own: a setting that changes in the table
changes here.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from napari_colorrl.core.config import SETTINGS_BY_PATH
from napari_colorrl.core.settings import Setting

_INT_MAX = 2**31 - 1


def setting_editor(path: str) -> QWidget:
    """An editor for the setting ``path``: a combo box for choices, a check box for a flag, a
    spin box for a bounded number, a line edit for a list or a number spanning decades."""
    spec = SETTINGS_BY_PATH[path]
    if spec.choices is not None:
        editor: QWidget = QComboBox()
        editor.addItems([str(c) for c in spec.choices])
    elif spec.kind is bool:
        editor = QCheckBox()
    elif spec.kind is int and not spec.is_tuple:
        editor = QSpinBox()
        editor.setRange(int(spec.low or 0), int(min(spec.high or _INT_MAX, _INT_MAX)))
    elif spec.kind is float and not spec.is_tuple and _linear(spec):
        editor = QDoubleSpinBox()
        editor.setDecimals(2)
        editor.setRange(float(spec.low), float(spec.high))
        editor.setSingleStep(0.05 if spec.high <= 1 else 0.1)
    else:
        editor = QLineEdit()
    editor.setToolTip(f"{spec.path}: {spec.help} ({spec.range_text()}).")
    set_value(editor, path, spec.default)
    return editor


def _linear(spec: Setting) -> bool:
    """A float range a spin box shows well (not a learning rate spanning decades)."""
    return (spec.low is not None and spec.high is not None and not spec.low_open
            and spec.high - spec.low <= 100)


def set_value(editor: QWidget, path: str, value: Any) -> None:
    """Show ``value`` of the setting ``path`` in its editor."""
    spec = SETTINGS_BY_PATH[path]
    if isinstance(editor, QComboBox):
        editor.setCurrentText(str(value))
    elif isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        editor.setValue(value)
    elif spec.is_tuple:
        editor.setText(", ".join(str(v) for v in value))
    else:
        editor.setText("" if value is None else f"{value:g}")


def read_value(editor: QWidget, path: str) -> Any:
    """The value in the editor of setting ``path``, checked against the table (ValueError names
    the setting and its valid range)."""
    spec = SETTINGS_BY_PATH[path]
    if isinstance(editor, QComboBox):
        text = editor.currentText()
        value = next((c for c in spec.choices if str(c) == text), text)
    elif isinstance(editor, QCheckBox):
        value = editor.isChecked()
    elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
        value = editor.value()
    else:
        value = _parse_text(editor.text(), spec)
    spec.check(value)
    return spec.parse(value)


def _parse_text(text: str, spec: Setting) -> Any:
    text = text.strip()
    if not text and spec.optional:
        return None
    try:
        if spec.is_tuple:
            return [spec.kind(v) for v in text.replace(",", " ").split()]
        return spec.kind(text)
    except ValueError:
        raise spec.error(text) from None
