"""Fixtures and helpers for the app's tests: tiny ONNX bundles, a user home inside tmp_path, running
and spying on generations, image coordinates on a view."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint

from desktop.runtime import pipeline
from tests.helpers.tiny_bundles import make_bundle


@pytest.fixture(autouse=True)
def every_step_live(monkeypatch):
    """The live view shows every step here (a tiny model's steps take a millisecond; the app paces them
    at LIVE_INTERVAL): tests that count frames count steps. test_live_pacing.py runs the real pacing."""
    from desktop.ui import worker

    monkeypatch.setattr(worker, "LIVE_INTERVAL", 0.0)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """DIFFUSION_STUDIO_HOME in tmp_path (data, config, outputs, history), and an empty bundled folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(home))
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    from desktop.runtime import paths

    monkeypatch.setattr(paths, "bundled_models_dir", lambda: bundled)
    return {"home": home, "bundled": bundled, "tmp": tmp_path}


@pytest.fixture
def open_window(qtbot, home):
    """open_window(cond=..., kind=...) -> MainWindow with that tiny bundle bundled and loaded."""
    from desktop.ui.window import MainWindow

    windows = []

    def _open(cond="class", kind="pixel", size=8, name=None, make=True):
        if make:
            name = name or f"tiny-{kind}-{cond}"
            if not (home["bundled"] / name).exists():
                make_bundle(home["bundled"] / name, kind=kind, cond=cond, size=size)
        w = MainWindow()
        qtbot.addWidget(w)
        w.show()
        w.load_default_model()
        windows.append(w)
        return w

    yield _open
    for w in windows:
        w.model.cancel()
        w.model.wait()


def run_and_wait(qtbot, model, start=None, timeout=30000):
    """Start a run (default: model.generate) and wait until the UI is idle again."""
    with qtbot.waitSignal(model.runningChanged, timeout=timeout, check_params_cb=lambda r: r is False):
        (start or model.generate)()


def widget_pos(view, x: float, y: float) -> QPoint:
    """The widget position of image pixel (x, y)."""
    r = view.image_rect()
    s = view.scale()
    return QPoint(int(r.x() + x * s), int(r.y() + y * s))


def spy_generate(monkeypatch, before_step=None):
    """Wrap pipeline.generate; returns the list of requests it received."""
    seen = []
    real = pipeline.generate

    def wrapper(bundle, request, on_step=None, cancel=None):
        seen.append(request)

        def step(info):
            if before_step:
                before_step(info)
            on_step(info)

        return real(bundle, request, on_step=step if on_step else None, cancel=cancel)

    monkeypatch.setattr(pipeline, "generate", wrapper)
    return seen
