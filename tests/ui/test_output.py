"""The output panel (issue 14 items 1, 5, 7): large crisp results with a zoom control and full screen,
honest states after a cancel or a failed save, and batches as grids of separate images."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from desktop.runtime import pngmeta
from desktop.ui import images
from tests.helpers.tiny_bundles import make_bundle
from tests.ui.conftest import run_and_wait, spy_generate, widget_pos


def test_a_small_result_shows_large_and_crisp_with_zoom_and_full_screen(qtbot, open_window):
    w = open_window(cond="class", size=8)
    m, view = w.model, w.preview.view
    run_and_wait(qtbot, m)
    assert view.scale() >= 8 and view.scale() == int(view.scale()) and view.crisp()
    assert view.image_rect().width() >= 64                       # not an 8-pixel stamp
    assert w.preview.zoom.currentText().startswith("Fit")
    w.preview.zoom.setCurrentIndex(w.preview.zoom.findData(1.0))
    w.preview.zoom.activated.emit(w.preview.zoom.currentIndex())
    assert view.scale() == 1.0
    view.set_zoom(None)
    w.preview.b_full.click()
    full = w.preview.full_screen
    assert full is not None and full.isVisible()
    assert np.array_equal(images.array_from_qimage(full.view.image), m.result_images[0])
    qtbot.keyClick(full, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: w.preview.full_screen is None)


def test_cancel_says_cancelled_and_leaves_nothing_to_save(qtbot, open_window, monkeypatch):
    w = open_window(cond="class")
    m, p = w.model, w.preview
    run_and_wait(qtbot, m)
    assert p.b_save.isEnabled() and p.progress.format() == "done"
    cancelled = threading.Event()
    spy_generate(monkeypatch, before_step=lambda info: info.step == 3 and cancelled.wait(20))
    m.set_param("steps", 40)
    m.progressChanged.connect(lambda step, *_: step == 2 and (m.cancel(), cancelled.set()))
    run_and_wait(qtbot, m)
    assert m.run_state == "cancelled" and "cancelled" in p.progress.format()
    assert not any(b.isEnabled() for b in (p.b_save, p.b_copy, p.b_input, p.b_folder))
    assert m.selected_image() is None                              # no stale image to act on


def test_a_failed_auto_save_keeps_save_as_working(qtbot, open_window, tmp_path):
    w = open_window(cond="class")
    m = w.model
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    m.settings["output_dir"] = str(blocker)
    run_and_wait(qtbot, m)
    assert w.banner.isVisible() and "could not be saved" in w.banner.text.text()
    assert m.result_images and m.run_state == "done"
    assert w.preview.b_save.isEnabled() and not w.preview.b_folder.isEnabled()
    target = tmp_path / "kept.png"
    assert m.save_selected_as(target)
    assert np.array_equal(images.load_image(target), m.result_images[0])
    assert pngmeta.read_recipe(target).seed == m.params.seed


def test_disk_full_part_way_through_a_batch_says_what_was_saved(qtbot, open_window, monkeypatch):
    """Issue 13: two of eight PNGs were written, and the message did not say which."""
    import errno
    import os

    w = open_window(cond="class")
    m = w.model
    real, calls = pngmeta.save_png, []

    def save_png(*a, **k):
        calls.append(1)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)
    monkeypatch.setattr(pngmeta, "save_png", save_png)
    m.set_param("batch_size", 8)
    run_and_wait(qtbot, m)
    text = w.banner.text.text()
    assert w.banner.isVisible() and "Saved 2 of 8 images to" in text and "No space left on device" in text, text
    assert "\n" not in text and "Traceback" not in text
    saved = [p for p in m.result_paths if p is not None]
    assert len(saved) == 2 and all(Path(p).is_file() for p in saved)
    assert len(m.result_images) == 8  # all eight kept in the window for Save as…
    assert sorted(e.path for e in m.history.entries) == sorted(str(p) for p in saved)
    assert sorted(p.name for p in saved[0].parent.iterdir()) == sorted(p.name for p in saved)  # no half file
    assert w.preview.b_save.isEnabled()


def test_a_batch_is_a_grid_and_every_action_uses_the_chosen_image(qtbot, open_window, tmp_path):
    w = open_window(cond="class", size=8)
    m, view = w.model, w.preview.view
    m.set_param("batch_size", 4)
    run_and_wait(qtbot, m)
    assert len(view.images) == 4 and m.selected == 0
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.cell_rect(2).center().toPoint())
    assert m.selected == 2 and view.current == 2
    chosen = m.result_images[2]
    assert not np.array_equal(chosen, m.result_images[0])
    w.preview.b_copy.click()
    assert np.array_equal(images.array_from_qimage(QGuiApplication.clipboard().image()), chosen)
    target = tmp_path / "third.png"
    assert m.save_selected_as(target)
    assert np.array_equal(images.load_image(target), chosen)
    assert pngmeta.read_recipe(target).seed == m.history.entries[0].recipe["seed"] - 1 == m.params.seed + 2
    assert m.selected_path() == Path(m.result_paths[2])
    w.preview.b_input.click()
    assert np.array_equal(m.canvas.init_image, chosen)
    # the arrow keys move the choice within the grid
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert m.selected == 3


def test_width_and_height_come_in_the_models_steps(qtbot, open_window, home, monkeypatch):
    """An SD folder (made by optimum) takes other sizes: the controls offer them in its steps."""
    import shutil

    from desktop.runtime.image_size import size_options

    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "sd" / "optimum-sd1", home["bundled"] / "sd1")
    w = open_window(make=False)
    m, c = w.model, w.controls
    sizes = size_options(m.bundle)
    assert sizes.flexible and c.width_box.isVisible() and not c.size_fixed.isVisible()
    assert c.width_box.singleStep() == sizes.step and c.width_box.minimum() == sizes.step
    assert "memory" in c.size_note.text()
    from desktop.runtime import memory

    asked, check_fits = [], memory.check_fits
    monkeypatch.setattr(memory, "check_fits", lambda *a, **k: asked.append(a[1:4]) or check_fits(*a, **k))
    notes, memory_note = [], m.memory_note
    monkeypatch.setattr(m, "memory_note", lambda: notes.append(1) or memory_note())
    note = c.size_note.text()
    for value in (1.0, 0.5, 0.0):                                # painting asks for the note each time...
        m.canvas.set_mask(np.full(m.canvas.mask.shape, value, np.float32))
    assert len(notes) >= 3 and asked == [] and c.size_note.text() == note  # ...but the estimate is not redone
    c.width_box.lineEdit().setText(str(2 * sizes.step + 1))      # between two steps: snapped
    c.width_box.interpretText()
    c.width_box.editingFinished.emit()
    assert m.params.width == 2 * sizes.step
    assert asked and asked[-1][2] == 2 * sizes.step and c.size_note.text() != note  # a new size asks again
    c.height_box.setValue(3 * sizes.step)
    run_and_wait(qtbot, m)
    assert m.result_images[0].shape[:2] == (3 * sizes.step, 2 * sizes.step)
    assert pngmeta.read_recipe(m.result_paths[0]).width == 2 * sizes.step
    # a U-Net exported with a fixed size: the model's one size, no controls
    import onnx

    from desktop.runtime.manifest import read_manifest, write_manifest
    fixed = make_bundle(home["bundled"] / "fixed", cond="class", size=8)
    graph = onnx.load(fixed / "unet/model.onnx")
    for value in (*graph.graph.input[:1], *graph.graph.output):
        for dim in value.type.tensor_type.shape.dim[2:]:
            dim.dim_value = 8
    onnx.save(graph, fixed / "unet/model.onnx")
    write_manifest(fixed, read_manifest(fixed))   # hashes the changed file
    w2 = open_window(make=False)
    assert w2.model.select_model(fixed)
    assert not w2.controls.width_box.isVisible() and w2.controls.size_fixed.text() == "8 × 8 (fixed)"
