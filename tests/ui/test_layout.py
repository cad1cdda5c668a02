"""The window at small sizes (issue 14 item 3): usable at 1000×700 and on a 1280-px laptop."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QAbstractButton, QAbstractSlider, QComboBox

from tests.ui.conftest import run_and_wait


def visible_controls(window):
    kinds = (QAbstractButton, QAbstractSlider, QComboBox)
    panels = (window.controls, window.controls.buttons, window.canvas, window.preview)
    return [c for p in panels for k in kinds for c in p.findChildren(k) if c.isVisibleTo(window)]


@pytest.mark.parametrize("size", [(1000, 700), (1280, 720)])
@pytest.mark.parametrize("cond", ["semantic", "text+class"])
def test_the_window_fits_and_every_control_is_on_screen(qtbot, open_window, size, cond):
    w = open_window(cond=cond, size=16)
    assert w.minimumSizeHint().width() <= 1000 and w.minimumSizeHint().height() <= 700
    w.resize(*size)
    qtbot.waitUntil(lambda: (w.width(), w.height()) == size)
    run_and_wait(qtbot, w.model)        # with a result, the output's actions are enabled too
    inside = QRect(0, 0, *size)
    scroll_area = w.controls.parentWidget().parentWidget()   # the controls scroll; everything else must fit
    for c in visible_controls(w):
        r = QRect(c.mapTo(w, c.rect().topLeft()), c.size())
        assert c.width() > 8 and c.height() > 8, f"{type(c).__name__} {c.toolTip()[:40]!r} is squeezed to {c.size()}"
        if not scroll_area.isAncestorOf(c):
            assert inside.contains(r), f"{type(c).__name__} {c.toolTip()[:40]!r} at {r} is outside the {size} window"
    for view in (w.canvas.view, w.preview.view):
        assert view.width() >= 160 and view.height() >= 140
    gen = w.controls.generate_button
    assert inside.contains(QRect(gen.mapTo(w, gen.rect().topLeft()), gen.size())), "Generate must never scroll away"


def test_compact_layout_tabs_the_history_and_gives_the_pictures_the_room(qtbot, open_window):
    w = open_window(cond="class")
    w.resize(1000, 700)
    w.set_compact(False)
    qtbot.wait(20)
    wide = w.canvas.view.width()
    w.a_compact.trigger()
    qtbot.wait(20)
    assert w.tabifiedDockWidgets(w.controls_dock) == [w.history_dock]
    assert w.canvas.view.width() > wide + 50
    w.a_compact.trigger()
    qtbot.wait(20)
    assert not w.tabifiedDockWidgets(w.controls_dock) and w.history_dock.isVisible()
