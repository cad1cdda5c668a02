"""The Train window end to end: the real `diffusion-studio train` / `export` subprocesses on a small
generated image folder, driven through the window's widgets, while the app process never imports
torch (every flow runs inside `app_process_guard`).

Covered: the data check (counts, classes, skipped files and why, an unusable folder as a sentence)
and the measured expected time; tiny-pixel trained, paused, exported from its checkpoint, resumed,
killed (reported, then resumed from its checkpoint), exported again and generated from (selected,
provenance in its info card); tiny-latent with its VAE stage visible; cancelling keeps the run
(paused, resumable); closing the app keeps training in the background, a new window follows the
run, pauses on close, and cancels (deleting the run); without the engine extra, the window says
what to install, copies the command, and trains once it is there (Check again).
"""
from __future__ import annotations

import contextlib
import html
import importlib.abc
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextDocument
from PySide6.QtWidgets import QPushButton

from desktop.runtime import paths, training
from desktop.ui.caps import describe_html
from tests.ui.conftest import run_and_wait

APP_FORBIDDEN = ("torch", "engine", "export", "diffusers", "transformers", "accelerate", "safetensors")
LONG = 300_000   # ms: generous waits for subprocesses on a busy shared CPU (no timing is asserted)


@contextlib.contextmanager
def app_process_guard():
    """Inside: importing torch, engine, export… in this (the app's) process raises ImportError and is
    recorded, even if an earlier test imported them (they are set aside and restored after)."""
    stashed = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in APP_FORBIDDEN}
    tried: list[str] = []

    class Refuse(importlib.abc.Loader):
        def create_module(self, spec):
            tried.append(spec.name)
            raise ImportError(f"the app process imported {spec.name}")

        def exec_module(self, module):
            raise ImportError(f"the app process imported {module.__name__}")

    class Block(importlib.abc.MetaPathFinder):
        """Finds forbidden modules as usual (importlib.util.find_spec still works) but refuses to load them."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in APP_FORBIDDEN:
                return None
            for finder in sys.meta_path:
                spec = finder.find_spec(name, path, target) if finder is not self and hasattr(finder, "find_spec") else None
                if spec is not None:
                    spec.loader = Refuse()
                    return spec
            return None

    blocker = Block()
    sys.meta_path.insert(0, blocker)
    try:
        yield tried
        leaked = sorted({k.split(".")[0] for k in sys.modules} & set(APP_FORBIDDEN))
        assert not tried and not leaked, f"the app process imported {tried or leaked}"
    finally:
        sys.meta_path.remove(blocker)
        for k in [k for k in sys.modules if k.split(".")[0] in APP_FORBIDDEN]:
            del sys.modules[k]
        sys.modules.update(stashed)


def test_the_guard_catches_an_import_of_torch():
    with pytest.raises(AssertionError, match="torch"):
        with app_process_guard():
            with pytest.raises(ImportError):
                import torch  # noqa: F401


def make_folder(root: Path, captions: bool) -> Path:
    """3 classes of 16x20 images (6 each), a mask, an unnamed label map, and two
    files training must skip: a truncated PNG and a mask of the wrong size."""
    for ci, cls in enumerate(("red", "green", "blue")):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            a = np.full((16, 20, 3), 40, np.uint8)
            a[..., ci] = 140 + 15 * i
            a[4:12, 5 + i:13 + i] = 250
            Image.fromarray(a).save(root / cls / f"{i}.png")
            if captions and i % 2 == 0:
                (root / cls / f"{i}.txt").write_text(f"a {cls} picture with a white square", encoding="utf-8")
    Image.fromarray(np.where(np.arange(20) < 10, 255, 0).astype(np.uint8)[None].repeat(16, 0)).save(root / "red" / "0.mask.png")
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(root / "red" / "1.labels.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "green" / "2.mask.png")
    (root / "blue" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "notes.md").write_text("not an image")
    return root


@pytest.fixture
def quiet_torch(monkeypatch):
    """One torch thread per subprocess: the shared 2-core CI runs them faster and steadier."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def never_ask(monkeypatch):
    """No modal question may block a test: a window closed while training (also at teardown) pauses
    the run, which then stops by itself; cancelling keeps the run unless a test says otherwise."""
    from desktop.ui.widgets.train_window import TrainWindow

    monkeypatch.setattr(TrainWindow, "ask_close", lambda self: "pause")
    monkeypatch.setattr(TrainWindow, "ask_cancel", lambda self: "keep")


def open_train(qtbot, window):
    window.open_train()
    tw = window.train_window
    qtbot.waitExposed(tw)
    assert tw.setup.presets, tw.setup.summary.text()
    return tw


def choose(qtbot, tw, preset: str, folder: Path | None = None, generated: str | None = None) -> None:
    """Pick the preset and the data, and wait for the check subprocess to report."""
    setup = tw.setup
    with qtbot.waitSignal(setup.checker.finished, timeout=LONG):
        setup.preset.setCurrentIndex(setup.preset.findData(preset))
        if folder is not None:
            setup.use_folder.setChecked(True)
            setup.folder.setText(str(folder))
        else:
            setup.use_generated.setChecked(True)
            setup.generated.setCurrentIndex(setup.generated.findData(generated))
        setup.data_changed()


def skipped_lines(setup) -> list[str]:
    return [setup.skipped.item(i).text() for i in range(setup.skipped.count())]


def wait_idle(qtbot, session) -> None:
    qtbot.waitUntil(lambda: not session.busy, timeout=LONG)


def start_and_wait_for_export(qtbot, session, button) -> None:
    """Click, then wait until the run is exported; a failure on the way fails at once with its sentence."""
    done = []
    session.exported.connect(done.append)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(done or (session.problem and not session.busy)), timeout=LONG)
    assert done and not session.problem, session.problem


@pytest.mark.slow
def test_train_pause_kill_resume_export_then_generate(qtbot, open_window, tmp_path, quiet_torch):
    folder = make_folder(tmp_path / "pictures", captions=False)
    (tmp_path / "empty").mkdir()
    w = open_window()
    with app_process_guard():
        tw = open_train(qtbot, w)
        setup, session, progress = tw.setup, tw.session, tw.progress
        choose(qtbot, tw, "tiny-pixel", tmp_path / "empty")
        assert "no usable image in this folder" in setup.summary.text() and not setup.start_button.isEnabled()

        choose(qtbot, tw, "tiny-pixel", folder)
        summary = setup.summary.text()
        assert "17 images" in summary and "3 classes" in summary and "blue 6" in summary and "green 5" in summary
        assert "masks 1" in summary and "label maps 1" in summary and "not used" in summary
        lines = skipped_lines(setup)
        assert any(l.startswith("broken.png") and "unreadable" in l for l in lines), lines
        assert any(l.startswith("2.png") and "8x8" in l for l in lines), lines
        assert "class" in setup.conditioning.text() and "Expected: about" in setup.expected.text()

        setup.steps.setValue(100)
        setup.name.setText("mine")
        setup.update_where()
        assert setup.start_button.isEnabled()
        qtbot.mouseClick(setup.start_button, Qt.MouseButton.LeftButton)
        run = training.runs_dir() / "mine"
        assert session.run == run and session.training and tw.left.currentWidget() is tw.summary
        assert "17 images, 3 classes, 1 mask, 1 label map, 2 skipped" in tw.summary.text.text()

        qtbot.waitUntil(lambda: session.state.current is not None and session.state.current.step >= 3, timeout=LONG)
        qtbot.mouseClick(progress.pause_button, Qt.MouseButton.LeftButton)
        wait_idle(qtbot, session)
        cur = session.state.current
        assert session.state.paused and "paused" in progress.title.text() and cur.checkpoint_step == cur.step >= 3
        assert progress.resume_button.isEnabled() and progress.export_button.isEnabled()

        start_and_wait_for_export(qtbot, session, progress.export_button)   # a model from the checkpoint
        assert w.model.caps.name == "mine" and w.model.caps.provenance["steps"] == cur.step
        assert session.state.current.ended == "finalized" and progress.resume_button.isEnabled()

        qtbot.mouseClick(progress.resume_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: session.state.current.checkpoint_step >= 25, timeout=LONG)
        killed_after = session.state.current.checkpoint_step
        os.kill(session.proc.pid, signal.SIGKILL)
        wait_idle(qtbot, session)
        assert "stopped unexpectedly" in session.problem and "SIGKILL" in session.problem, session.problem
        assert f"step {killed_after:,}" in session.problem and progress.problem.isVisible()
        assert progress.resume_button.isEnabled()

        start_and_wait_for_export(qtbot, session, progress.resume_button)   # replaces the early export
        m = w.model
        assert m.entry.path == paths.user_models_dir() / "mine" and m.caps.name == "mine"
        assert m.caps.class_names == ["blue", "green", "red"]
        prov = m.caps.provenance
        assert prov["steps"] == 100 and str(folder) in prov["data"] and prov["train_seconds"] > 0
        card = describe_html(m.caps)          # the model's info (Help and models)
        assert "Provenance: data" in card and "Provenance: steps</b></td><td>100<" in card and "train_seconds" in card
        steps = [s for s, _ in session.state.current.losses]
        assert steps == sorted(set(steps)) and steps[-1] == 100     # resumed runs redo lost steps once
        assert "exported as" in progress.title.text() and progress.sample.image is not None
        assert not session.problem and not progress.problem.isVisible()

        m.set_param("class_name", "red")
        run_and_wait(qtbot, m)
        assert m.result_images and m.history.entries[0].model_name == "mine"


@pytest.mark.slow
def test_latent_preset_trains_its_vae_first_with_the_stages_visible(qtbot, open_window, tmp_path, quiet_torch):
    folder = make_folder(tmp_path / "pictures", captions=True)
    w = open_window()
    with app_process_guard():
        tw = open_train(qtbot, w)
        setup, session, progress = tw.setup, tw.session, tw.progress
        choose(qtbot, tw, "tiny-latent", folder)
        assert "captions 8" in setup.summary.text()    # 3 per class; green/2 is skipped
        assert "text (scratch)" in setup.conditioning.text() and "class" in setup.conditioning.text()
        assert [s["stage"] for s in setup.plan()] == ["vae", "diffusion"]
        assert "Autoencoder" in setup.expected.text() and "Diffusion model" in setup.expected.text()
        setup.steps.setValue(12)
        setup.name.setText("latent")
        setup.update_where()
        marks_seen = []
        session.changed.connect(lambda: marks_seen.append(progress.stages.text()))
        start_and_wait_for_export(qtbot, session, setup.start_button)
        assert any("● Autoencoder" in t and "○ Diffusion model" in t for t in marks_seen)
        assert any("✓ Autoencoder" in t and "● Diffusion model" in t for t in marks_seen)
        assert "✓ Autoencoder" in progress.stages.text() and "✓ Export" in progress.stages.text()
        assert (session.run / "vae" / "model").is_dir()
        m = w.model
        assert m.caps.name == "latent" and m.caps.kind == "latent" and m.caps.text
        m.set_param("prompt", "a red picture with a white square")
        run_and_wait(qtbot, m)
        assert m.result_images


@pytest.mark.slow
def test_closing_keeps_training_in_the_background_and_the_next_window_follows_it(qtbot, open_window, monkeypatch, quiet_torch):
    from desktop.ui.widgets.train_window import TrainWindow

    w = open_window()
    with app_process_guard():
        tw = open_train(qtbot, w)
        choose(qtbot, tw, "tiny-pixel", generated="shapes")
        tw.setup.steps.setValue(100_000)
        qtbot.mouseClick(tw.setup.start_button, Qt.MouseButton.LeftButton)
        run = tw.session.run
        qtbot.waitUntil(lambda: tw.session.state.current is not None and tw.session.state.current.step >= 1, timeout=LONG)
        first = tw.session.state.pid

        qtbot.mouseClick(tw.progress.cancel_button, Qt.MouseButton.LeftButton)    # Cancel -> Keep run: it pauses
        assert tw.session.run is None and tw.left.currentWidget() is not tw.summary
        qtbot.waitUntil(lambda: not training.pid_alive(first), timeout=LONG)
        kept = training.read_run_state(run)
        assert kept.paused and kept.current.checkpoint_step == kept.current.step >= 1 and run.is_dir()
        index = tw.runs.findData(str(run))
        tw.runs.showPopup()         # the list reads the runs' state again when it opens
        tw.runs.hidePopup()
        assert "stopped at step" in tw.runs.itemText(index)
        tw.runs.setCurrentIndex(index)
        tw.on_run_chosen(index)
        qtbot.mouseClick(tw.progress.resume_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: tw.session.state.pid != first and tw.session.state.current.step > kept.current.step, timeout=LONG)
        pid = tw.session.state.pid

        monkeypatch.setattr(TrainWindow, "ask_close", lambda self: "stay")
        assert not w.close() and w.isVisible()
        monkeypatch.setattr(TrainWindow, "ask_close", lambda self: "background")
        assert w.close()
        assert training.pid_alive(pid)

        w2 = open_window(make=False)
        tw2 = open_train(qtbot, w2)
        assert tw2.session.run == run and tw2.session.training and tw2.runs.currentText().startswith(run.name)
        step = tw2.session.state.current.step
        qtbot.waitUntil(lambda: tw2.session.state.current.step > step, timeout=LONG)

        monkeypatch.setattr(TrainWindow, "ask_close", lambda self: "pause")
        assert w2.close()
        qtbot.waitUntil(lambda: not training.pid_alive(pid), timeout=LONG)
        assert training.read_run_state(run).paused

        w3 = open_window(make=False)
        tw3 = open_train(qtbot, w3)
        assert tw3.session.run is None and "stopped at step" in tw3.runs.itemText(1)
        tw3.runs.setCurrentIndex(1)
        tw3.on_run_chosen(1)
        assert tw3.session.run == run and tw3.progress.resume_button.isEnabled()
        monkeypatch.setattr(TrainWindow, "ask_cancel", lambda self: "delete")
        qtbot.mouseClick(tw3.progress.cancel_button, Qt.MouseButton.LeftButton)
        assert not run.exists() and tw3.session.run is None and tw3.runs.count() == 1


def test_without_the_engine_the_train_window_says_what_to_install(qtbot, open_window, monkeypatch):
    monkeypatch.setattr(training, "missing_engine_modules", lambda: ["diffusers", "onnx", "safetensors", "sklearn", "torch"])
    w = open_window()
    with app_process_guard():
        tw = open_train_without_engine(qtbot, w)
        assert tw.notice_box.isVisible() and "torch, diffusers, onnx, safetensors and 1 more" in tw.notice.text()
        assert html.escape(training.install_command()) in tw.notice.text()
        assert not tw.setup.isEnabled() and not tw.setup.start_button.isEnabled() and not tw.setup.presets
        copy = next(b for b in tw.notice_box.findChildren(QPushButton) if b.text() == "Copy command")
        qtbot.mouseClick(copy, Qt.MouseButton.LeftButton)
        assert QGuiApplication.clipboard().text() == training.install_command()

        qtbot.mouseClick(tw.recheck_button, Qt.MouseButton.LeftButton)      # still missing: nothing changes
        assert tw.notice_box.isVisible() and not tw.setup.isEnabled()
        monkeypatch.setattr(training, "missing_engine_modules", lambda: [])  # the user installed it meanwhile
        qtbot.mouseClick(tw.recheck_button, Qt.MouseButton.LeftButton)
        assert not tw.notice_box.isVisible() and tw.setup.isEnabled() and tw.setup.presets
        names = [p["name"] for p in tw.setup.presets]       # the quickest first try comes first, selected
        assert names[:2] == ["tiny-pixel", "tiny-latent"] and tw.setup.current_preset()["name"] == "tiny-pixel"
        tw.setup.preset.setCurrentIndex(tw.setup.preset.findData("digits"))   # no data chosen: no check starts
        shown = QTextDocument()
        shown.setHtml(tw.setup.preset_text.text())
        assert tw.setup.preset_text.textFormat() == Qt.TextFormat.RichText and "sub-folder's look" in shown.toPlainText()


def test_install_command_names_this_python_and_the_checkout():
    cmd = training.install_command()
    assert sys.executable in cmd and "-m pip install" in cmd and "[engine]" in cmd
    root = training.source_checkout()
    assert root is not None and str(root) in cmd and "-c constraints-cpu.txt" in cmd


def open_train_without_engine(qtbot, window):
    window.open_train()
    qtbot.waitExposed(window.train_window)
    return window.train_window


def test_loss_plot_step_ticks_are_whole_round_steps():
    from hypothesis import given, strategies as st

    from desktop.ui.widgets.loss_plot import nice_ticks

    @given(st.integers(0, 10**7), st.integers(1, 10**6))
    def check(first, span):
        ticks = nice_ticks(first, first + span, 5, least=1)
        assert ticks and all(t == int(t) for t in ticks) and len(set(ticks)) == len(ticks)
        assert all(first <= t <= first + span for t in ticks) and len(ticks) <= 11

    check()
    assert nice_ticks(1, 2, 5, least=1) == [1, 2]      # a 2-step run: not 1, 1, 1, 1, 1, 2
    assert nice_ticks(0.5, 0.9) == [0.5, 0.6, 0.7, 0.8, 0.9]
