"""The live view's pacing: which steps the worker renders for it, and the trajectory rendering the
others only when they are looked at (desktop/ui/worker.py, LivePacing)."""
from __future__ import annotations

import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop.ui import images, worker
from desktop.ui.worker import LivePacing
from tests.ui.conftest import run_and_wait, spy_generate


@settings(max_examples=200, deadline=None)
@given(every=st.integers(1, 5), interval=st.floats(0.0, 1.0),
       gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=60))
def test_pacing_shows_the_last_step_and_no_two_steps_closer_than_the_interval(every, interval, gaps):
    pacing, now, shown = LivePacing(every, interval), 0.0, []
    steps = len(gaps)
    for step, gap in enumerate(gaps, start=1):
        now += gap
        if pacing.due(step, steps, now):
            shown.append((step, now))
    assert shown[-1][0] == steps                                        # the final step is always shown
    assert all(s % every == 0 for s, _ in shown[:-1])                   # only every N-th step before it
    assert all(b - a >= interval for (_, a), (_, b) in zip(shown[:-1], shown[1:-1]))
    if every == 1 and interval == 0.0:
        assert [s for s, _ in shown] == list(range(1, steps + 1))       # no pacing: every step


def test_pacing_at_a_steady_rate_shows_about_one_step_per_interval():
    pacing = LivePacing(1, 1.0)
    shown = [step for step in range(1, 101) if pacing.due(step, 100, step * 0.125)]   # 8 steps per interval
    assert shown == list(range(1, 100, 8)) + [100]


def test_the_app_renders_only_the_paced_steps_and_the_trajectory_renders_the_rest_on_demand(
        qtbot, open_window, monkeypatch):
    monkeypatch.setattr(worker, "LIVE_INTERVAL", 0.1)
    renders = []

    def slow_step(info):   # 30 ms a step; count the previews the runtime renders
        time.sleep(0.03)
        real = info.render
        info.render = lambda: renders.append(info.step) or real()
    spy_generate(monkeypatch, before_step=slow_step)
    w = open_window(cond="text", kind="latent", size=16)
    m = w.model
    m.set_param("prompt", "a dog")
    m.set_param("steps", 12)
    shown = []
    m.frameChanged.connect(lambda f: shown.append((f.step, f.elapsed)))
    run_and_wait(qtbot, m)
    steps = [s for s, _ in shown]
    assert len(m.frames) == 12 and steps[-1] == 12 and 2 <= len(steps) < 12
    assert all(b - a >= 0.1 for (_, a), (_, b) in zip(shown[:-1], shown[1:-1]))
    assert sorted(renders) == steps                                     # nothing else was rendered
    hidden = next(f for f in m.frames if not f.live)
    w.preview.slider.setValue(hidden.step - 1)                          # look at a step the run skipped
    assert renders.count(hidden.step) == 1                              # rendered now, once
    on_screen = images.array_from_qimage(w.preview.view.images[0])
    assert np.array_equal(on_screen, hidden.x0[0]) and np.array_equal(on_screen, hidden.info.render()[0])
    w.preview.slider.setValue(hidden.step)
    w.preview.slider.setValue(hidden.step - 1)
    assert renders.count(hidden.step) == 2                              # the explicit render() above, no more
