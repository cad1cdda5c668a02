"""GUI soak test (issue 13): thousands of random user actions, no exception, no growing memory.

The app starts on corrupted settings and history files, with three tiny models of different kinds.
Then 2,400 actions drawn from a seeded generator: clicks on every visible, enabled button and menu
action, strokes on the canvas, model switches, generate (sometimes cancelled at once), undo/redo,
settings changes, typing a prompt, spin boxes and sliders. Modal dialogs, file pickers and menus
answer "cancel" at once (they would wait for a person). pytest-qt turns any exception raised inside
a Qt slot into a failure. Memory: the resident set after the run is at most 1.2x what it was after a
300-action warm-up.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import random

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QDialog, QFileDialog, QInputDialog, QLineEdit,
    QMenu, QMessageBox,
)

from desktop.ui import dirs
from tests.helpers.tiny_bundles import make_bundle

ACTIONS = 2400
WARM_UP = 300
# Actions that leave the session or wait for a person even with dialogs answered at once.
SKIP_TEXT = ("Quit", "Exit", "Close", "Full screen")


def rss_bytes() -> int:
    """Resident memory after a full collection and after glibc hands freed heap pages back
    (malloc_trim): what the process holds, not what the allocator kept from an earlier peak (a
    large generation's buffers, freed since). Without it, runs of the same seeded sequence measured
    1.07x and 1.23x (the bound is 1.2x)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture
def no_waiting(monkeypatch):
    """Every modal question answered with 'cancel' at once."""
    monkeypatch.setattr(QDialog, "exec", lambda self: 0)
    monkeypatch.setattr(QMenu, "exec", lambda self, *a, **k: None)
    for name in ("getOpenFileName", "getSaveFileName"):
        monkeypatch.setattr(QFileDialog, name, staticmethod(lambda *a, **k: ("", "")))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.No))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("", False)))


def corrupt_user_files() -> None:
    dirs.settings_file().parent.mkdir(parents=True, exist_ok=True)
    dirs.settings_file().write_text(json.dumps({"overlay_opacity": "x", "preview_every": 1e300, "output_dir": 5,
                                                "provider": "cpu", "recent_prompts": [1, 2], "theme": "purple"}))
    dirs.history_file().parent.mkdir(parents=True, exist_ok=True)
    dirs.history_file().write_text('[{"path": 5}, "x", {"path": "a.png", "recipe": {"seed": "s"}}, [[[[')


def close_dialogs(window) -> None:
    from PySide6.QtWidgets import QApplication
    for top in QApplication.topLevelWidgets():
        if isinstance(top, QDialog) and top.isVisible():
            top.close()


class Monkey:
    """The random user."""

    def __init__(self, window, qtbot, rng: random.Random):
        self.w, self.qtbot, self.rng = window, qtbot, rng
        self.m = window.model
        self.counts: dict[str, int] = {}

    def act(self) -> None:
        name = self.rng.choices(
            ["click", "action", "paint", "model", "generate", "undo", "settings", "type", "value", "wait"],
            weights=[20, 8, 20, 4, 6, 8, 4, 6, 16, 8])[0]
        self.counts[name] = self.counts.get(name, 0) + 1
        getattr(self, name)()

    def _visible(self, kind):
        return [x for x in self.w.findChildren(kind) if x.isVisible() and x.isEnabled()]

    def click(self):
        buttons = [b for b in self._visible(QAbstractButton)
                   if not any(t in b.text() for t in SKIP_TEXT) and not getattr(b, "menu", lambda: None)()]
        if buttons:
            self.rng.choice(buttons).click()

    def action(self):
        actions = [a for a in self.w.findChildren(QAction) if a.isEnabled() and a.text()
                   and not any(t in a.text() for t in SKIP_TEXT) and not a.menu()]
        if actions:
            self.rng.choice(actions).trigger()

    def paint(self):
        view = self.w.canvas.view
        target = view.viewport() if hasattr(view, "viewport") else view
        size = target.size()
        if size.width() < 4 or size.height() < 4:
            return
        points = [QPoint(self.rng.randrange(size.width()), self.rng.randrange(size.height())) for _ in range(4)]
        QTest.mousePress(target, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
        for p in points[1:]:
            QTest.mouseMove(target, p)
        QTest.mouseRelease(target, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])

    def model(self):
        usable = [e.path for e in self.m.models if e.caps is not None]
        if usable and not self.m.running:
            self.m.select_model(self.rng.choice(usable))

    def generate(self):
        self.m.generate()
        if self.rng.random() < 0.4:
            self.m.cancel()

    def undo(self):
        (self.m.canvas.undo if self.rng.random() < 0.6 else self.m.canvas.redo)()

    def settings(self):
        key, value = self.rng.choice([("preview_every", self.rng.randint(1, 5)), ("show_noisy", self.rng.random() < .5),
                                      ("overlay_opacity", self.rng.random()), ("theme", "dark"), ("theme", "system")])
        self.m.settings[key] = value
        self.m.save_settings()

    def type(self):
        edits = self._visible(QLineEdit)
        if edits:
            edit = self.rng.choice(edits)
            edit.setText(self.rng.choice(["a red heart", "", "x" * 300, "sky, grass", "\u00e9\u00e8 \U0001F600"]))
            edit.editingFinished.emit()

    def value(self):
        widgets = self._visible(QAbstractSpinBox) + self._visible(QAbstractSlider) + self._visible(QComboBox)
        if not widgets:
            return
        x = self.rng.choice(widgets)
        if isinstance(x, QComboBox):
            if x.count():
                x.setCurrentIndex(self.rng.randrange(x.count()))
        elif isinstance(x, QAbstractSlider):
            x.setValue(self.rng.randint(x.minimum(), x.maximum()))
        elif hasattr(x, "minimum"):
            lo, hi = x.minimum(), min(x.maximum(), x.minimum() + 1000)
            x.setValue(self.rng.uniform(lo, hi) if isinstance(lo, float) else self.rng.randint(int(lo), int(hi)))

    def wait(self):
        self.qtbot.wait(self.rng.choice([1, 5, 20]))


@pytest.mark.slow
def test_two_thousand_random_actions(qtbot, home, no_waiting):
    for name, kind, cond, size in (("a-digits", "pixel", "class", 8), ("b-text", "latent", "text+class", 16),
                                   ("c-labels", "pixel", "semantic", 8)):
        make_bundle(home["bundled"] / name, kind=kind, cond=cond, size=size)
    corrupt_user_files()
    from desktop.ui.window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    w.load_default_model()
    assert w.model.bundle is not None
    monkey = Monkey(w, qtbot, random.Random(13))
    finished, errors = [], []
    w.model.runningChanged.connect(lambda running: running or finished.append(1))
    w.model.error.connect(errors.append)
    for i in range(ACTIONS):
        monkey.act()
        if i % 25 == 0:
            close_dialogs(w)  # as a person closes the windows they opened
            qtbot.wait(1)
        if i == WARM_UP:
            qtbot.waitUntil(lambda: not w.model.running, timeout=60000)
            close_dialogs(w)
            qtbot.wait(50)
            warm = rss_bytes()
    qtbot.waitUntil(lambda: not w.model.running, timeout=60000)
    close_dialogs(w)
    qtbot.wait(50)
    after = rss_bytes()
    assert sum(monkey.counts.values()) == ACTIONS and all(monkey.counts[k] > 20 for k in monkey.counts), monkey.counts
    assert after <= 1.2 * warm, (f"RSS grew from {warm >> 20} MB to {after >> 20} MB over {ACTIONS - WARM_UP} actions "
                                 f"({len(w.model.history.entries)} history entries, canvas {w.model.canvas.height}x"
                                 f"{w.model.canvas.width})")
    assert w.model.bundle is not None  # still usable
    # runs really started and ended: how many depends on the machine's speed (a Generate while a run is
    # going is refused); 17-44 on the 2-core CI machine, so more than 20 failed there now and then
    assert len(finished) >= 8, (len(finished), monkey.counts)
    print(f"soak: {monkey.counts}, {len(finished)} runs, {len(errors)} messages, RSS {warm >> 20} -> {after >> 20} MB")
    print("soak messages:", sorted(set(errors))[:20])
