"""Live painting: the picture regenerates on its own while painting (debounced), a stale live run is
cancelled for a fresh one, a Generate run is never cancelled by painting, and the switch turns it off."""
from __future__ import annotations

import time

import numpy as np

from desktop.ui import live
from tests.ui.conftest import run_and_wait, spy_generate, widget_pos


def outputs(home):
    folder = home["home"] / "outputs"
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_painting_regenerates_on_its_own_and_saves_nothing(qtbot, open_window, home, monkeypatch):
    w = open_window(cond="semantic", size=16)
    m = w.model
    seen = spy_generate(monkeypatch)
    m.set_param("seed", 5)
    w.controls.live.setChecked(True)
    assert m.settings["live_painting"]
    qtbot.waitUntil(lambda: len(seen) == 1 and not m.running, timeout=10000)   # switching on shows the current state
    m.canvas.checkpoint()
    for x in range(2, 14):                      # one stroke = many changes = one run after the pause
        m.canvas.dab_labels(x, 8, 2, 1)
    qtbot.waitUntil(lambda: len(seen) == 2 and not m.running and bool(m.result_images), timeout=10000)
    assert np.array_equal(np.asarray(seen[1].labels)[8, 2:14], np.ones(12))
    assert seen[1].seed == 5 and m.params.seed == 5 and seen[1].batch_size == 1
    assert len(m.history) == 0 and outputs(home) == []
    assert w.preview.b_save.isEnabled()         # a live picture can still be kept
    w.controls.live.setChecked(False)
    m.canvas.fill_labels(2)
    qtbot.wait(live.DEBOUNCE_MS * 3)
    assert len(seen) == 2 and not m.running


def test_a_stale_live_run_is_cancelled_for_a_fresh_one(qtbot, open_window, monkeypatch):
    w = open_window(cond="semantic", size=16)
    m = w.model
    m.set_param("steps", 40)
    seen = spy_generate(monkeypatch, before_step=lambda info: time.sleep(0.03))
    w.controls.live.setChecked(True)
    qtbot.waitUntil(lambda: m.running, timeout=10000)
    m.canvas.fill_labels(2)                       # the run in flight is now stale
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10000)
    qtbot.waitUntil(lambda: not m.running, timeout=20000)
    assert (np.asarray(seen[1].labels) == 2).all()
    assert m.run_state == "done" and len(m.frames) == 40   # the fresh run finished, the stale one stopped early
    assert "Cancelled" not in w.statusBar().currentMessage()


def test_generate_during_a_live_run_is_a_real_saved_run(qtbot, open_window, home, monkeypatch):
    w = open_window(cond="semantic", size=16)
    m = w.model
    m.set_param("steps", 30)
    spy_generate(monkeypatch, before_step=lambda info: time.sleep(0.05))   # a run outlasts the debounce wait
    w.controls.live.setChecked(True)
    qtbot.waitUntil(lambda: m.running and m.live_run, timeout=10000)
    assert w.controls.generate_button.isEnabled()
    w.controls.generate_button.click()
    qtbot.waitUntil(lambda: len(m.history) == 1 and not m.running, timeout=20000)
    assert len(outputs(home)) == 1
    # painting does not cancel a Generate run
    m.set_param("seed_locked", True)
    with qtbot.waitSignal(m.runningChanged, timeout=20000, check_params_cb=lambda r: r is False):
        m.generate()
        m.canvas.fill_labels(1)
        qtbot.wait(live.DEBOUNCE_MS * 2)
        assert m.running and not m.live_run
    assert len(m.history) == 2
