"""Widgets alone: the two-way binding, plain-words errors by exception type, the image view's zoom."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QPlainTextEdit, QSpinBox

from desktop.runtime.manifest import BundleError
from desktop.runtime.providers import ProviderError
from desktop.ui import images
from desktop.ui.bind import bind
from desktop.ui.widgets.imageview import ImageView, fit_scale, next_level
from desktop.ui.worker import ORT_ERRORS, friendly_error, is_cancelled_error
from diffusion.samplers import Cancelled, NonFiniteError


@dataclass
class Fields:
    text: str = "a"
    count: int = 3
    scale: float = 1.5
    on: bool = False
    choice: str | None = "b"


class FakeModel(QObject):
    paramsChanged = Signal(str)

    def __init__(self):
        super().__init__()
        self.params = Fields()
        self.sets: list[tuple[str, object]] = []

    def set_param(self, name, value):
        self.sets.append((name, value))
        if getattr(self.params, name) != value:
            self.params = replace(self.params, **{name: value})
            self.paramsChanged.emit(name)


def test_bind_keeps_model_and_widgets_equal_both_ways(qtbot):
    m = FakeModel()
    text, count, scale, on, choice = QPlainTextEdit(), QSpinBox(), QDoubleSpinBox(), QCheckBox(), QComboBox()
    for w in (text, count, scale, on, choice):
        qtbot.addWidget(w)
    for value in ("a", "b", "c"):
        choice.addItem(value.upper(), value)
    for name, w in (("text", text), ("count", count), ("scale", scale), ("on", on), ("choice", choice)):
        bind(m, name, w)
    # the model's values reach the widgets at once
    assert (text.toPlainText(), count.value(), scale.value(), on.isChecked(), choice.currentData()) == ("a", 3, 1.5, False, "b")
    assert m.sets == []   # writing what the model holds did not echo back
    # widget -> model
    count.setValue(7)
    choice.setCurrentIndex(2)
    on.setChecked(True)
    text.moveCursor(text.textCursor().MoveOperation.End)
    qtbot.keyClicks(text, "x")
    assert m.params == Fields(text="ax", count=7, scale=1.5, on=True, choice="c")
    # model -> widget, for one field and for all ("")
    m.set_param("scale", 4.25)
    assert scale.value() == 4.25
    m.params = Fields(text="new", count=1, scale=2.0, on=False, choice="a")
    m.paramsChanged.emit("")
    assert (text.toPlainText(), count.value(), scale.value(), on.isChecked(), choice.currentData()) == ("new", 1, 2.0, False, "a")
    # a value the combo box lacks shows its first entry
    m.params = replace(m.params, choice="zzz")
    m.paramsChanged.emit("choice")
    assert choice.currentIndex() == 0


def test_bind_refuses_a_widget_it_cannot_read(qtbot):
    from PySide6.QtWidgets import QLabel

    with pytest.raises(TypeError, match="QLabel"):
        bind(FakeModel(), "text", QLabel())


def test_friendly_error_goes_by_exception_type_not_by_name():
    assert "file unet/model.onnx" in friendly_error(BundleError("bad hash", "unet/model.onnx", "sha256"))
    assert "field 'sha256'" in friendly_error(BundleError("bad hash", "unet/model.onnx", "sha256"))
    assert "Settings" in friendly_error(ProviderError("CUDA is missing"))
    assert "NaN" in friendly_error(NonFiniteError(3, 20, 500))
    assert "execution provider failed" in friendly_error(ORT_ERRORS[0]("boom"), "CUDAExecutionProvider")
    on_cpu = friendly_error(ORT_ERRORS[0]("boom"), "CPUExecutionProvider")  # no "try another provider" on the CPU
    assert "on the CPU: boom" in on_cpu and "provider" not in on_cpu
    assert friendly_error(ValueError("steps must be 1 to 1000")) == "steps must be 1 to 1000"
    assert is_cancelled_error(Cancelled(1, 2)) and not is_cancelled_error(RuntimeError("Cancelled"))

    class BundleErrorLookalike(Exception):  # same name, another type: not a bundle error
        pass
    BundleErrorLookalike.__name__ = "BundleError"
    assert friendly_error(BundleErrorLookalike("x")) == "BundleError: x"


def test_fit_zoom_is_an_integer_for_small_images_and_smooth_for_large(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.set_image(images.qimage_from_array(np.zeros((16, 16, 3), np.uint8)))
    assert view.scale() == 24.0 and view.crisp()       # floor((400 - 16) / 16)
    view.set_image(images.qimage_from_array(np.zeros((1000, 800, 3), np.uint8)))
    assert view.scale() < 1 and not view.crisp()
    assert fit_scale(3.7) == 3.0 and fit_scale(0.4) == 0.4
    assert next_level(1.0, True) == 2.0 and next_level(2.0, False) == 1.0 and next_level(3.5, True) == 4.0


def test_grid_view_selects_a_cell_with_a_click(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.show()
    view.set_images([images.qimage_from_array(np.full((8, 8, 3), v, np.uint8)) for v in (0, 80, 160, 240)])
    picked = []
    view.selected.connect(picked.append)
    r = view.cell_rect(3)
    assert view.cell_rect(0).right() < view.cell_rect(1).left()  # separate cells with a gap
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=r.center().toPoint())
    assert picked == [3] and view.current == 3
    assert images.array_from_qimage(view.image)[0, 0, 0] == 240
    assert view.cell_at(QPointF(1, 1)) == -1
