"""The canvas (issue 14 items 2, 6, 9): a canvas per model for the session, a carried-over start image
shown with a one-click drop, both layers visible, no resize on tool switches, keys without a click,
the label list, the empty-map hint."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from tests.helpers.tiny_bundles import make_bundle
from tests.ui.conftest import run_and_wait, spy_generate, widget_pos


def two_models(home):
    make_bundle(home["bundled"] / "maps", cond="semantic", size=16, name="maps")
    make_bundle(home["bundled"] / "zdigits", cond="class", size=8, name="zdigits")
    return home["bundled"] / "maps", home["bundled"] / "zdigits"   # maps sorts first: the default model


def stroke(qtbot, view, a, b):
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, *a))
    qtbot.mouseMove(view, widget_pos(view, *b))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, *b))


def test_each_model_keeps_its_canvas_for_the_session(qtbot, open_window, home):
    maps, digits = two_models(home)
    w = open_window(make=False)
    m = w.model
    assert m.select_model(maps)
    w.canvas.label_combo.setCurrentIndex(1)
    w.canvas.set_tool("bucket")
    qtbot.mouseClick(w.canvas.view, Qt.MouseButton.LeftButton, pos=widget_pos(w.canvas.view, 3, 3))
    painted = m.canvas.labels.copy()
    assert (painted == 1).all() and m.canvas.can_undo()
    assert m.select_model(digits)
    assert m.canvas.labels.shape == (8, 8) and not m.canvas.has_labels() and not m.canvas.can_undo()
    assert m.select_model(maps)
    assert np.array_equal(m.canvas.labels, painted) and m.canvas.can_undo() and w.a_undo.isEnabled()
    w.a_undo.trigger()
    assert not m.canvas.has_labels()


def test_a_carried_start_image_is_shown_and_dropped_in_one_click(qtbot, open_window, home):
    maps, digits = two_models(home)
    w = open_window(make=False)
    m = w.model
    assert m.select_model(maps)
    m.canvas.set_init_image(np.full((16, 16, 3), 200, np.uint8))
    assert not w.canvas.notice.isVisible()       # the user's own image: nothing to say
    assert m.select_model(digits)
    notice = w.canvas.notice
    assert notice.isVisible() and "maps" in notice.text.text() and "img2img" in notice.text.text()
    assert m.build_request().init_image is not None and w.controls.strength.isVisible()
    qtbot.mouseClick(notice.drop, Qt.MouseButton.LeftButton)
    assert m.canvas.init_image is None and not notice.isVisible()
    assert m.build_request().init_image is None and not w.controls.strength.isVisible()
    w.a_undo.trigger()                             # the drop is one undo step
    assert m.canvas.init_image is not None
    assert m.select_model(maps) and m.canvas.init_image is not None and not notice.isVisible()


def test_mask_and_labels_both_show_and_tool_switches_never_move_the_canvas(qtbot, open_window):
    w = open_window(cond="semantic", size=16)
    m, view, panel = w.model, w.canvas.view, w.canvas
    w.resize(1000, 700)
    qtbot.wait(50)
    m.canvas.set_init_image(np.full((16, 16, 3), 90, np.uint8))
    panel.set_tool("bucket")
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 2, 2))
    panel.set_tool("brush")
    view.set_radius(3)
    stroke(qtbot, view, (4, 8), (11, 8))
    assert m.canvas.has_mask() and m.canvas.has_labels()
    geometry, rect = view.geometry(), view.image_rect()
    for tool in ("labels", "label_eraser", "bucket", "eraser", "brush", "labels"):
        panel.set_tool(tool)
        qtbot.wait(10)
        assert view.geometry() == geometry and view.image_rect() == rect, f"switching to {tool} moved the canvas"
        assert len(view.overlays) == 2, f"{tool}: both the label map and the mask must show"
    # the mask stays visible in Paint mode: its overlay has colour where the mask is
    from desktop.ui import images
    mask_layer = images.array_from_qimage(view.overlays[1].convertToFormat(view.overlays[1].Format.Format_RGBA8888))
    assert mask_layer.any()
    # clearing the image with a mask left says what to do instead of failing mysteriously
    w.canvas.a_clear_image.trigger()
    m.generate()
    assert "clear the mask" in w.banner.text.text()


def test_brush_keys_work_without_a_click_and_never_steal_typing(qtbot, open_window):
    w = open_window(cond="text", size=16)
    view = w.canvas.view
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    w.preview.view.setFocus()          # the pointer and focus are not on the canvas: no paint click
    r = view.radius
    qtbot.keyClick(w.preview.view, Qt.Key.Key_BracketRight)
    assert view.radius > r
    qtbot.keyClick(w.preview.view, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(w.preview.view, Qt.Key.Key_BracketLeft)
    assert view.radius < r
    assert not w.model.canvas.has_mask()          # nothing was painted on the way
    w.controls.prompt.setFocus()
    r = view.radius
    qtbot.keyClicks(w.controls.prompt, "a [b]")
    assert w.controls.prompt.toPlainText() == "a [b]" and view.radius == r


def test_label_list_drops_below_and_an_empty_map_says_what_to_do(qtbot, open_window):
    w = open_window(cond="semantic", size=16)
    combo, view = w.canvas.label_combo, w.canvas.view
    combo.setCurrentIndex(2)
    combo.showPopup()
    popup = combo.view().window()
    qtbot.waitUntil(popup.isVisible)
    assert popup.geometry().top() >= combo.mapToGlobal(combo.rect().bottomLeft()).y() - 1
    combo.hidePopup()
    assert view.empty_map()
    blank = view.grab().toImage()
    w.canvas.fill_all()
    assert not view.empty_map()
    assert view.grab().toImage() != blank


def test_history_entries_without_a_prompt_say_what_they_are(qtbot, open_window, home):
    maps, digits = two_models(home)
    w = open_window(make=False)
    m = w.model
    m.canvas.fill_labels(1)
    run_and_wait(qtbot, m)
    assert w.history.tree.topLevelItem(0).text(0).startswith("label map\n")
    assert m.select_model(digits)
    w.controls.class_combo.setCurrentIndex(1)
    run_and_wait(qtbot, m)
    assert w.history.tree.topLevelItem(0).text(0).startswith("class one\n")


def test_tooltips_say_it_in_plain_words_before_any_math(qtbot, open_window):
    from PySide6.QtWidgets import QWidget

    w = open_window(cond="text+class", size=16)
    math = ("ε", "x̂", "x_t", "σ", "ᾱ", "β", " = ")
    for widget in w.findChildren(QWidget):
        tip = widget.toolTip()
        if tip:
            first = tip.replace(":", ".").split(".")[0]
            assert not any(sym in first for sym in math), f"{type(widget).__name__}: {tip!r}"


def test_a_new_size_resamples_the_painting_instead_of_clearing_it(qtbot, open_window):
    w = open_window(cond="semantic", size=16)
    m = w.model
    assert m.sizes.flexible
    labels = np.zeros((16, 16), np.int32)
    labels[8:] = 2
    m.canvas.set_labels(labels)
    m.canvas.set_init_image(np.zeros((16, 16, 3), np.uint8))
    m.canvas.mask[:, :4] = 1
    w.controls.width_box.setValue(2 * m.sizes.step if m.sizes.step > 16 else 32)
    width = m.params.width
    assert m.canvas.labels.shape == (16, width) and m.canvas.init_image.shape == (16, width, 3)
    assert (m.canvas.labels[8:] == 2).all() and (m.canvas.labels[:8] == 0).all()
    assert m.canvas.mask[:, : width // 4 - 1].min() == 1 and m.canvas.mask[:, width // 2:].max() == 0


def test_one_mouse_move_paints_all_its_dabs_and_redraws_once(qtbot, open_window):
    """A long drag is many dabs (a quarter radius apart) but one `changed`, so one overlay redraw per
    mouse event; the painted pixels are those of painting the dabs one by one."""
    from desktop.ui import brush

    w = open_window(cond="semantic", size=16)
    m, view, panel = w.model, w.canvas.view, w.canvas
    w.resize(1000, 700)
    qtbot.wait(50)
    panel.set_tool("labels")
    view.set_radius(1)
    changes = []
    m.canvas.changed.connect(lambda: changes.append(1))
    stroke(qtbot, view, (1, 8), (14, 8))
    assert len(changes) == 2  # the press, then the one move (which is dozens of dabs)
    start, end = view.to_image(widget_pos(view, 1, 8).toPointF()), view.to_image(widget_pos(view, 14, 8).toPointF())
    want = np.full((16, 16), -1, np.int32)
    for x, y in [(start.x(), start.y()), *brush.stroke_points(start.x(), start.y(), end.x(), end.y(), 1)]:
        brush.paint_labels(want, x, y, 1, view.label)
    np.testing.assert_array_equal(m.canvas.labels, want)
