"""The app end to end, offscreen, on tiny ONNX bundles (tests/helpers/tiny_bundles.py).

Every test drives the real widgets and the real pipeline in the worker thread; where a test needs
to see what the pipeline received it wraps `desktop.runtime.pipeline.generate` (a spy that still
runs it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop.runtime import pipeline, pngmeta
from desktop.ui import app, images
from tests.ui.conftest import run_and_wait, spy_generate, widget_pos

pytestmark = pytest.mark.slow  # drives the app

ROOT = Path(__file__).resolve().parents[2]


def drop_file(widget, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPoint(widget.width() // 2, widget.height() // 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def test_prompt_generate_previews_every_step_and_saves_png_with_recipe(qtbot, open_window, home):
    w = open_window(cond="text")
    m = w.model
    assert w.controls.prompt.isVisible() and not w.controls.class_combo.isVisible()
    assert "CPU" in w.provider_label.text()
    qtbot.keyClicks(w.controls.prompt, "a red cat")
    assert m.params.prompt == "a red cat"
    frames = []
    m.frameChanged.connect(lambda f: frames.append(f.x0[0].copy()))
    with qtbot.waitSignal(m.runningChanged, timeout=30000, check_params_cb=lambda r: r is False):
        qtbot.mouseClick(w.controls.generate_button, Qt.MouseButton.LeftButton)
    steps = m.params.steps
    assert len(frames) == steps == len(m.frames)
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:])), "the preview did not change at a step"
    assert len(m.history) == 1
    entry = m.history.entries[0]
    png = Path(entry.path)
    assert png.exists() and png.parent == home["home"] / "outputs"
    recipe = pngmeta.read_recipe(png)
    assert recipe.prompt == "a red cat" and recipe.seed == m.params.seed and recipe.steps == steps
    saved = images.load_image(png)
    assert np.array_equal(saved, m.result_images[0])
    assert len(w.history.items()) == 1
    # the trajectory slider steps through the stored previews, the last position is the result
    assert w.preview.slider.isEnabled() and w.preview.slider.maximum() == steps
    w.preview.slider.setValue(0)
    assert w.preview.step_label.text() == f"step 1 / {steps}"


@pytest.mark.parametrize("cond", ["inpaint", "class"])  # mask channels, or the sampler's blend (any model)
def test_inpainting_keeps_unmasked_pixels(qtbot, open_window, home, cond):
    w = open_window(cond=cond, size=16)
    m = w.model
    assert w.canvas.tool_buttons["brush"].isVisible() and not w.canvas.tool_buttons["bucket"].isVisible()
    init = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    m.canvas.set_init_image(init)
    view = w.canvas.view
    view.set_radius(2.5)
    view.hardness = 0.5
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 4, 8))
    qtbot.mouseMove(view, widget_pos(view, 11, 8))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 11, 8))
    mask = m.canvas.mask.copy()
    assert mask[8, 8] == 1 and mask[0, 0] == 0 and 0 < mask.mean() < 0.5
    assert w.controls.seamless.isVisible() and w.controls.seamless.isChecked()
    w.controls.seamless.setChecked(False)
    assert m.build_request().seamless is False
    w.controls.seamless.setChecked(True)
    assert m.build_request().seamless is True
    run_and_wait(qtbot, m)
    out = m.result_images[0]
    keep = mask == 0
    assert np.array_equal(out[keep], init[keep]), "pixels outside the mask changed"
    assert not np.array_equal(out[mask == 1], init[mask == 1]), "nothing was generated inside the mask"
    # undo the stroke: the mask is empty again
    w.a_undo.trigger()
    assert m.canvas.mask.max() == 0


def test_painted_label_map_reaches_the_generation(qtbot, open_window, monkeypatch):
    w = open_window(cond="semantic", size=16)
    m = w.model
    seen = spy_generate(monkeypatch)
    view = w.canvas.view
    assert w.canvas.label_combo.count() == 3 and w.canvas.label_combo.itemText(1) == "grass"
    w.canvas.label_combo.setCurrentIndex(1)
    w.canvas.set_tool("bucket")
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 2, 2))
    assert (m.canvas.labels == 1).all()
    w.canvas.label_combo.setCurrentIndex(2)
    w.canvas.set_tool("labels")
    view.set_radius(2)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 8, 3))
    qtbot.mouseMove(view, widget_pos(view, 8, 12))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 8, 12))
    painted = m.canvas.labels.copy()
    assert set(np.unique(painted)) == {1, 2}
    run_and_wait(qtbot, m)
    assert len(seen) == 1
    assert np.array_equal(np.asarray(seen[0].labels), painted)
    assert m.result_images


def test_label_map_model_inpaints_with_its_map(qtbot, open_window, home):
    """A label-map model paints both: labels with the label tools, the inpainting mask with Mask."""
    w = open_window(cond="semantic", size=16)
    m, view = w.model, w.canvas.view
    assert w.canvas.tool_buttons["bucket"].isVisible() and w.canvas.tool_buttons["brush"].isVisible()
    init = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    m.canvas.set_init_image(init)
    w.canvas.label_combo.setCurrentIndex(1)
    w.canvas.set_tool("bucket")
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 2, 2))
    assert (m.canvas.labels == 1).all() and view.mode == "semantic"
    w.canvas.set_tool("brush")
    assert view.mode == "inpaint" and not w.canvas.label_combo.isEnabled()   # greyed, not hidden: nothing moves
    view.set_radius(3)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 4, 8))
    qtbot.mouseMove(view, widget_pos(view, 11, 8))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=widget_pos(view, 11, 8))
    mask = m.canvas.mask.copy()
    assert mask[8, 8] == 1 and (m.canvas.labels == 1).all()  # the mask stroke left the labels alone
    request = m.build_request()
    assert request.mask is not None and np.array_equal(np.asarray(request.labels), m.canvas.labels)
    run_and_wait(qtbot, m)
    out = m.result_images[0]
    assert np.array_equal(out[mask == 0], init[mask == 0])
    assert not np.array_equal(out[mask == 1], init[mask == 1])


def test_cancel_mid_run_is_idle_within_one_step_and_writes_nothing(qtbot, open_window, monkeypatch, home):
    w = open_window(cond="class")
    m = w.model
    m.set_param("steps", 60)
    steps_run = []
    pressed = threading.Event()

    def slow(info):  # the worker holds after step 3 until Esc was pressed at step 2, if it gets there first
        steps_run.append(info.step)
        if info.step == 3:
            pressed.wait(20)

    spy_generate(monkeypatch, before_step=slow)
    cancelled_at = []

    def on_progress(step, steps, it_s, eta):
        if step == 2 and not cancelled_at:
            cancelled_at.append(step)
            qtbot.keyClick(w, Qt.Key.Key_Escape)
            pressed.set()

    m.progressChanged.connect(on_progress)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)   # window shortcuts need the active window
    run_and_wait(qtbot, m)
    assert cancelled_at == [2]
    # the cancel lands before step 3 starts, or during it (the worker may already be in it): never later
    assert max(steps_run) in (2, 3), f"ran {max(steps_run)} steps after a cancel at step 2"
    assert not m.running and w.controls.generate_button.isEnabled()
    assert not list((home["home"] / "outputs").glob("*.png")) if (home["home"] / "outputs").exists() else True
    assert len(m.history) == 0
    assert "Cancelled" in w.statusBar().currentMessage()
    run_and_wait(qtbot, m)  # and the app still generates
    assert len(m.history) == 1


def test_the_steps_box_stops_at_the_models_timesteps(open_window):
    """The soak test typed 419 steps into a model trained with T=100: a refusal per click."""
    w = open_window(cond="class")
    assert w.model.caps.max_steps == 100 and w.controls.steps.maximum() == 100
    w.controls.steps.setValue(419)
    assert w.controls.steps.value() == 100 and w.model.params.steps == 100


def test_restore_from_history_and_from_dropped_png_is_exact(qtbot, open_window, home, tmp_path):
    w = open_window(cond="class")
    m = w.model
    c = w.controls
    c.class_combo.setCurrentIndex(2)
    c.sampler.setCurrentIndex(c.sampler.findData("ddpm"))
    c.steps.setValue(7)
    c.guidance.setValue(3.5)
    c.seed.setValue(1234)
    c.lock.setChecked(True)
    run_and_wait(qtbot, m)
    made = m.params
    recipe = pngmeta.read_recipe(m.history.entries[0].path)
    fields = ("prompt", "negative_prompt", "class_name", "sampler", "steps", "guidance", "seed", "batch_size",
              "height", "width", "spacing", "strength")

    def same_request():
        got = m.build_request()
        return {f: getattr(got, f) for f in fields} == {f: getattr(recipe, f) for f in fields}

    def scramble():
        c.class_combo.setCurrentIndex(0)
        c.sampler.setCurrentIndex(c.sampler.findData("dpmpp_2m"))
        c.steps.setValue(3)
        c.guidance.setValue(1.0)
        c.lock.setChecked(False)
        c.seed.setValue(99)
        assert m.params != made and not same_request()

    scramble()
    item = w.history.tree.topLevelItem(0)
    qtbot.mouseClick(w.history.tree.viewport(), Qt.MouseButton.LeftButton, pos=w.history.tree.visualItemRect(item).center())
    assert same_request()
    assert (c.class_combo.currentData(), c.steps.value(), c.seed.value(), c.lock.isChecked()) == ("two", 7, 1234, True)
    request = m.build_request()
    assert (request.class_name, request.sampler, request.steps, request.guidance, request.seed) == ("two", "ddpm", 7, 3.5, 1234)

    scramble()
    png = Path(m.history.entries[0].path)
    drop_file(w.canvas.view, png)
    assert same_request()
    assert m.canvas.init_image is None, "a PNG with a recipe restores the recipe, it is not loaded as an image"

    # a PNG carrying only A1111 parameters (another tool's image)
    scramble()
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "\nSteps: 9, Sampler: DDIM, CFG scale: 2.5, Seed: 777, Size: 8x8, Class: one")
    other = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(other, pnginfo=info)
    drop_file(w.canvas.view, other)
    assert (m.params.steps, m.params.sampler, m.params.guidance, m.params.seed, m.params.class_name) == (9, "ddim", 2.5, 777, "one")

    # a plain image becomes the init image, and the strength control appears
    plain = tmp_path / "plain.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(plain)
    drop_file(w.canvas.view, plain)
    assert m.canvas.init_image.shape == (8, 8, 3) and c.strength.isVisible()


def test_bad_model_folder_shows_an_error_and_the_app_keeps_working(qtbot, open_window, tmp_path):
    w = open_window(cond="class")
    m = w.model
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "studio.json").write_text(json.dumps({"format": "diffusion-studio-bundle", "format_version": 1, "name": "x"}))
    assert not m.add_model(bad)
    assert w.banner.isVisible()
    text = w.banner.text.text()
    assert "studio.json" in text and "Traceback" not in text
    assert not (m.settings.path.parent.parent / "models" / "broken").exists()
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    assert not m.add_model(not_a_model)
    assert "not a model bundle" in w.banner.text.text()
    assert m.caps is not None and m.caps.name == "tiny-pixel-class"
    run_and_wait(qtbot, m)
    assert len(m.history) == 1 and not w.banner.isVisible()


def test_add_model_copies_a_valid_bundle_and_selects_it(qtbot, open_window, home, tmp_path):
    from tests.helpers.tiny_bundles import make_bundle

    w = open_window(cond="class")
    src = make_bundle(tmp_path / "mine", cond="text")
    assert w.model.add_model(src)
    assert (home["home"] / "models" / "mine" / "studio.json").exists()
    assert w.model.caps.text and w.controls.prompt.isVisible()
    assert w.controls.picker.combo.currentText().startswith("mine")


def test_wrong_size_mask_is_refused_in_plain_words(qtbot, open_window, tmp_path):
    from PIL import Image

    w = open_window(cond="inpaint", size=16)
    path = tmp_path / "mask.png"
    Image.new("L", (32, 32), 255).save(path)
    w.canvas.load_mask_file(str(path))
    assert w.banner.isVisible() and "32×32" in w.banner.text.text() and "16×16" in w.banner.text.text()
    assert w.model.canvas.mask.max() == 0
    Image.new("L", (16, 16), 255).save(path)
    w.canvas.load_mask_file(str(path))
    assert w.model.canvas.mask.min() == 1
    out = tmp_path / "saved.png"
    w.canvas.save_mask_file(str(out))
    assert np.asarray(Image.open(out)).min() == 255


def test_restart_keeps_history_settings_and_layout(qtbot, open_window, home):
    w = open_window(cond="text")
    m = w.model
    m.set_param("prompt", "a blue house")
    run_and_wait(qtbot, m)
    m.settings["preview_every"] = 3
    m.settings["provider"] = "cpu"
    w.resize(1111, 777)
    w.history_dock.hide()
    w.close()
    path = Path(m.history.entries[0].path)

    w2 = open_window(make=False)
    m2 = w2.model
    assert len(m2.history) == 1 and m2.history.entries[0].path == str(path)
    assert m2.settings["preview_every"] == 3 and m2.settings["provider"] == "cpu"
    assert m2.settings["recent_prompts"][0] == "a blue house"
    assert m2.settings["window_geometry"] and m2.settings["window_state"]
    assert not w2.history_dock.isVisible()
    assert len(w2.history.items()) == 1
    assert m2.caps.name == "tiny-pixel-text"


def test_empty_state_without_models(qtbot, home):
    from desktop.ui.window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    w.load_default_model()
    assert w.controls.picker.combo.currentText() == "No model found — add one…"
    assert "No model found" in w.preview.view.placeholder
    assert not w.controls.generate_button.isEnabled()
    w.model.generate()
    assert w.banner.isVisible() and "No model is loaded" in w.banner.text.text()


def test_every_control_has_a_tooltip(qtbot, open_window):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QPlainTextEdit

    w = open_window(cond="text")
    kinds = (QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QPlainTextEdit)
    controls = [c for panel in (w.controls, w.canvas, w.preview, w.history) for k in kinds for c in panel.findChildren(k)]
    missing = [f"{type(c).__name__} {getattr(c, 'text', lambda: '')()!r} {c.objectName()} {type(c.parent()).__name__} {c.isVisible()}"
               for c in controls
               if not c.toolTip() and not (isinstance(c, QAbstractButton) and c.defaultAction() is not None and c.defaultAction().toolTip())
               and c.parent() is not None and type(c).__name__ != "QScrollBar" and c.objectName() != "qt_toolbar_ext_button"]
    assert not missing, missing


def test_no_display_prints_one_line_and_exits_2():
    assert app.display_problem({}, "linux")
    assert app.display_problem({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert app.display_problem({"DISPLAY": ":0"}, "linux") is None
    assert app.display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert app.display_problem({}, "win32") is None
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "desktop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1 and "xvfb-run -a diffusion-studio" in lines[0]


def test_a_provider_that_fails_is_reported_and_the_model_stays_usable(qtbot, open_window):
    w = open_window(cond="class")
    m = w.model
    m.settings["provider"] = "tensorrt"   # not available on this machine
    assert not m.select_model(m.entry.path)
    assert w.banner.isVisible() and "execution provider" in w.banner.text.text()
    assert m.bundle is not None and "CPU" in m.provider
    m.settings["provider"] = "auto"
    run_and_wait(qtbot, m)
    assert len(m.history) == 1


def test_help_lists_shortcuts_and_describes_each_model_from_its_manifest(qtbot, open_window):
    from PySide6.QtWidgets import QTextBrowser

    from desktop.ui.widgets.dialogs import HelpDialog

    w = open_window(cond="semantic")
    dialog = HelpDialog(w.model, w)
    qtbot.addWidget(dialog)
    texts = sorted((b.toPlainText() for b in dialog.findChildren(QTextBrowser)), key=lambda t: "Keyboard" not in t)
    shortcuts, models = texts
    assert "Ctrl+Enter" in shortcuts and "Esc" in shortcuts and "Ctrl+Z" in shortcuts
    assert "tiny pixel semantic test bundle" in models and "grass" in models and "CPU" in models


def test_settings_dialog_writes_output_folder_and_preview_frequency(qtbot, open_window, tmp_path):
    from desktop.ui.widgets.dialogs import SettingsDialog

    w = open_window(cond="class")
    m = w.model
    dialog = SettingsDialog(m.settings, w)
    qtbot.addWidget(dialog)
    dialog.output.setText(str(tmp_path / "elsewhere"))
    dialog.preview_every.setValue(2)
    assert not dialog.apply()
    m.save_settings()
    frames = []
    m.frameChanged.connect(lambda f: frames.append(f.step))
    run_and_wait(qtbot, m)
    assert frames == [2, 4, 5]          # every 2nd step, and always the last
    assert len(m.frames) == 5           # the trajectory keeps every step
    assert Path(m.history.entries[0].path).parent == tmp_path / "elsewhere"


def test_latent_batch_is_a_grid_of_separate_images_and_noisy_toggle_keeps_the_step(qtbot, open_window):
    w = open_window(cond="text", kind="latent", size=16)
    m = w.model
    m.set_param("prompt", "a dog")
    m.set_param("batch_size", 3)
    run_and_wait(qtbot, m)
    assert len(m.result_images) == 3 and len(m.history) == 3
    seeds = sorted(e.recipe["seed"] for e in m.history.entries)
    assert seeds == [m.params.seed, m.params.seed + 1, m.params.seed + 2]
    frame = m.frames[0]
    assert len(frame.x0) == 3 and len(frame.x_t) == 3   # every image of the batch, and its noisy sample
    assert len(w.preview.view.images) == 3              # a grid of separate images, not one tiled picture
    w.preview.slider.setValue(2)
    w.preview.noisy.setChecked(True)
    assert w.preview.slider.value() == 2                # the toggle keeps the trajectory where it is
    shown = images.array_from_qimage(w.preview.view.images[1])
    assert np.array_equal(shown, m.frames[2].x_t[1])
    w.preview.noisy.setChecked(False)
    assert w.preview.slider.value() == 2
    assert np.array_equal(images.array_from_qimage(w.preview.view.images[1]), m.frames[2].x0[1])


def test_ctrl_enter_in_the_prompt_generates(qtbot, open_window):
    w = open_window(cond="text")
    m = w.model
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)   # window shortcuts need the active window
    w.controls.prompt.setFocus()
    qtbot.keyClicks(w.controls.prompt, "a tree")
    with qtbot.waitSignal(m.runningChanged, timeout=30000, check_params_cb=lambda r: r is False):
        qtbot.keyClick(w.controls.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert w.controls.prompt.toPlainText() == "a tree"   # no newline typed
    assert len(m.history) == 1 and m.history.entries[0].recipe["prompt"] == "a tree"


def test_text_model_with_classes_starts_at_any_class_and_generates(qtbot, open_window):
    # like the shapes model: the prompt names the shape, so a class picked for the user would fight it
    w = open_window(cond="text+class")
    m, c = w.model, w.controls
    assert c.prompt.isVisible() and c.class_combo.isVisible()
    assert c.class_combo.itemData(0) is None and c.class_combo.count() == 1 + len(m.caps.class_names)
    assert m.params.class_name is None and m.build_request().class_name is None
    qtbot.keyClicks(c.prompt, "a red heart")
    run_and_wait(qtbot, m)
    assert len(m.history) == 1 and m.history.entries[0].recipe["class_name"] is None
    c.class_combo.setCurrentIndex(2)
    assert m.build_request().class_name == m.caps.class_names[1]
    c.class_combo.setCurrentIndex(0)  # and back to "any"
    assert m.build_request().class_name is None
