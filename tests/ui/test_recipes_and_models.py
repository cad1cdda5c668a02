"""Recipes and models (issue 14 items 4, 8, 9's theme): File ▸ Open recipe… with a PNG info view and
Apply / Apply except seed; the model manager; the dark theme."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from desktop.ui import theme
from tests.helpers.tiny_bundles import make_bundle
from tests.ui.conftest import run_and_wait


def test_open_recipe_shows_the_png_info_and_applies_it_with_or_without_the_seed(qtbot, open_window, tmp_path):
    w = open_window(cond="class")
    m, c = w.model, w.controls
    assert any(a.text() == "Open recipe…" for a in w.menuBar().actions()[0].menu().actions())
    c.class_combo.setCurrentIndex(2)
    c.steps.setValue(7)
    c.seed.setValue(1234)
    c.lock.setChecked(True)
    run_and_wait(qtbot, m)
    png = Path(m.history.entries[0].path)
    c.steps.setValue(3)
    c.seed.setValue(99)
    c.class_combo.setCurrentIndex(0)
    dialog = w.show_png_info(png)
    qtbot.addWidget(dialog)
    text = dialog.table.text()
    assert "1234" in text and "7 steps" in text and "two" in text and "tiny-pixel-class" in text
    assert "Seed: 1234" in dialog.raw.toPlainText()
    dialog.apply_seedless.click()
    assert (m.params.steps, m.params.class_name, m.params.seed) == (7, "two", 99)
    dialog = w.show_png_info(png)
    qtbot.addWidget(dialog)
    dialog.apply_button.click()
    assert (m.params.steps, m.params.seed, m.params.seed_locked) == (7, 1234, True)
    # a PNG without a recipe: the dialog says so in one sentence and offers nothing to apply
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    dialog = w.show_png_info(plain)
    qtbot.addWidget(dialog)
    assert "no recipe" in dialog.table.text() and not dialog.apply_button.isEnabled()
    assert "Traceback" not in dialog.table.text()


def test_adding_a_shipped_model_again_selects_it_instead_of_copying(qtbot, open_window, home):
    w = open_window(cond="class")
    m = w.model
    shipped = home["bundled"] / "tiny-pixel-class"
    assert m.add_model(shipped)
    assert not (home["home"] / "models").exists() or not any((home["home"] / "models").iterdir())
    assert m.entry.path == shipped and "already" in w.statusBar().currentMessage()
    assert not any("(yours)" in w.controls.picker.combo.itemText(i) for i in range(w.controls.picker.combo.count()))


def test_model_manager_adds_renames_and_removes_the_users_own_models(qtbot, open_window, home, tmp_path, monkeypatch):
    w = open_window(cond="class")
    m = w.model
    src = make_bundle(tmp_path / "mine", cond="text")
    manager = w.open_models()
    qtbot.addWidget(manager)
    from desktop.ui.widgets import models_dialog
    monkeypatch.setattr(models_dialog.QFileDialog, "getExistingDirectory", lambda *a, **k: str(src))
    manager.buttons["add"].click()
    mine = home["home"] / "models" / "mine"
    assert mine.is_dir() and m.entry.path == mine
    rows = {manager.table.item(r, 0).text(): r for r in range(manager.table.rowCount())}
    assert set(rows) == {"tiny-pixel-class", "mine"}
    assert "text prompt" in manager.table.item(rows["mine"], 2).text()
    assert manager.table.item(rows["mine"], 3).text() == "yours"
    # a shipped model cannot be renamed or removed
    manager.table.selectRow(rows["tiny-pixel-class"])
    assert not manager.buttons["remove"].isEnabled() and not manager.buttons["rename"].isEnabled()
    # rename: edit the name cell
    manager.table.selectRow(rows["mine"])
    assert manager.buttons["rename"].isEnabled()
    manager.table.item(rows["mine"], 0).setText("My prompts")
    assert m.entry.name == "My prompts" and w.controls.picker.combo.currentText().startswith("My prompts")
    assert m.settings["model_names"] == {str(mine): "My prompts"}
    # remove: the folder goes, the app moves to the shipped model
    rows = {manager.table.item(r, 0).text(): r for r in range(manager.table.rowCount())}
    manager.table.selectRow(rows["My prompts"])
    manager.remove(confirm=False)
    assert not mine.exists() and [e.name for e in m.models] == ["tiny-pixel-class"]
    assert m.caps is not None and m.caps.name == "tiny-pixel-class" and manager.table.rowCount() == 1
    run_and_wait(qtbot, m)
    assert m.result_images


def test_dark_theme_follows_the_system_unless_chosen(qtbot, open_window, monkeypatch):
    from desktop.ui.widgets.dialogs import SettingsDialog

    app = QApplication.instance()
    w = open_window(cond="class")
    lightness = lambda: app.palette().color(QPalette.ColorRole.Window).lightness()
    try:
        dialog = SettingsDialog(w.model.settings, w)
        qtbot.addWidget(dialog)
        dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
        dialog.apply()
        assert theme.apply_theme(w.model.settings["theme"]) == "dark" and lightness() < 100
        assert w.model.settings["theme"] == "dark"
        assert theme.apply_theme("light") == "light" and lightness() > 180
        monkeypatch.setattr(theme, "system_is_dark", lambda: True)
        assert theme.apply_theme("system") == "dark" and lightness() < 100
        monkeypatch.setattr(theme, "system_is_dark", lambda: False)
        assert theme.apply_theme("system") == "light"
        assert theme.apply_theme("nonsense") == "light"        # a bad setting falls back to the system
    finally:
        theme.apply_theme("light")
