"""Two-way binding between one field of the controls' state and one widget.

`bind(model, "steps", spin_box)` keeps them equal both ways: the widget's change signal calls
`model.set_param("steps", value)`, and `model.paramsChanged("steps")` (or "" for all fields) writes
the model's value into the widget. As in Krita AI Diffusion's `properties.py`, one line per control
replaces a connect-lambda in the widget's constructor plus a mirrored line in its refresh method.

The model side is any QObject with `params` (an object with the field as an attribute),
`set_param(name, value)` and a `paramsChanged(str)` signal: `StudioModel` in model.py.
A value written into the widget is not sent back to the model (no echo).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QAbstractButton, QComboBox, QDoubleSpinBox, QPlainTextEdit, QSpinBox, QWidget


@dataclass(frozen=True)
class Adapter:
    """How to read, write and watch one kind of widget."""
    read: Callable[[QWidget], Any]
    write: Callable[[QWidget, Any], None]
    signal: str


def _write_text(w: QPlainTextEdit, value) -> None:
    if w.toPlainText() != value:
        w.setPlainText(value)


def _write_combo(w: QComboBox, value) -> None:
    index = w.findData(value)
    if index < 0 and w.count():
        index = 0   # a value the list lacks (a recipe from another model): show the first entry
    if index != w.currentIndex():
        w.setCurrentIndex(index)


def _read_combo(w: QComboBox):
    return w.currentData() if w.currentIndex() >= 0 else None


ADAPTERS: tuple[tuple[type, Adapter], ...] = (
    (QPlainTextEdit, Adapter(lambda w: w.toPlainText(), _write_text, "textChanged")),
    (QComboBox, Adapter(_read_combo, _write_combo, "currentIndexChanged")),
    (QDoubleSpinBox, Adapter(lambda w: float(w.value()), lambda w, v: w.setValue(float(v)), "valueChanged")),
    (QSpinBox, Adapter(lambda w: int(w.value()), lambda w, v: w.setValue(int(v)), "valueChanged")),
    (QAbstractButton, Adapter(lambda w: bool(w.isChecked()), lambda w, v: w.setChecked(bool(v)), "toggled")),
)


def adapter_for(widget: QWidget) -> Adapter:
    for kind, adapter in ADAPTERS:
        if isinstance(widget, kind):
            return adapter
    raise TypeError(f"bind() does not know how to bind a {type(widget).__name__}")


class Binding(QObject):
    """One field <-> one widget; `update_widget()` writes the model's value now. A child of the
    widget, so it lives exactly as long as the widget does."""

    def __init__(self, model, name: str, widget: QWidget):
        super().__init__(widget)
        self.model, self.name, self.widget = model, name, widget
        self.adapter = adapter_for(widget)
        self.writing = False
        getattr(widget, self.adapter.signal).connect(self.update_model)
        model.paramsChanged.connect(self.on_params_changed)
        self.update_widget()

    def update_model(self, *_) -> None:
        if self.writing:
            return  # the widget reports the value the model just gave it
        if isinstance(self.widget, QComboBox) and self.widget.currentIndex() < 0:
            return  # a combo box being cleared and refilled
        self.model.set_param(self.name, self.adapter.read(self.widget))

    def update_widget(self) -> None:
        self.writing = True
        try:
            self.adapter.write(self.widget, getattr(self.model.params, self.name))
        finally:
            self.writing = False

    def on_params_changed(self, name: str) -> None:
        if name in ("", self.name):
            self.update_widget()


def bind(model, name: str, widget: QWidget) -> Binding:
    """Keep `model.params.<name>` and `widget` equal in both directions (see the module docstring)."""
    return Binding(model, name, widget)
