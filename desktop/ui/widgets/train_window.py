"""The Train window: train a model on your images (or a built-in set), follow it, and use it.

Setup on the left (SetupPanel), the run on the right (ProgressPanel), the runs the app made in a
list at the top. Training, the data check and the export are `diffusion-studio` subprocesses
(TrainSession, docs/TRAINING.md), so this window, like the rest of the app, never imports torch.
Without the engine extra it says which command installs it.
"""
from __future__ import annotations

import html
import importlib
import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QScrollArea,
                               QSplitter, QStackedWidget, QVBoxLayout, QWidget)

from desktop.runtime import training

from ..train_session import TrainSession, format_duration, list_presets
from .train_progress import ProgressPanel
from .train_setup import SetupPanel, describe_conditioning

NEW_RUN = "New run…"


class RunSummary(QWidget):
    """The left side while a run is shown: what it trains on, with which preset, for how long, where."""

    def __init__(self, session: TrainSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.new_button = QPushButton("New run…")
        self.new_button.setToolTip("Set up another training run (this one stays in the Run list)")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.text)
        lay.addStretch(1)
        lay.addWidget(self.new_button)

    def refresh(self) -> None:
        s = self.session
        if s.run is None:
            return
        job = s.job
        data = job.get("data") or {}
        where = data.get("path") if data.get("kind") == "folder" else f"the built-in {data.get('name', '?')} set"
        budget = job.get("budget") or {}
        spend = (f"{format_duration(budget['seconds'])} of training" if budget.get("seconds")
                 else f"{int(budget.get('steps') or 0):,} steps" if budget else "—")
        check = job.get("check") or {}
        rows = [("Data", html.escape(str(where or "—"))), ("Found", html.escape(str(check.get("found") or "—"))),
                ("Preset", html.escape(str(job.get("preset") or "—"))),
                ("Learns", html.escape(str(check.get("learns") or "—"))), ("How long", spend),
                ("Run folder", html.escape(str(s.run)))]
        if job.get("model"):
            rows.append(("Model", html.escape(str(job["model"]))))
        body = "".join(f"<tr><td style='color:gray; padding-right:8px'>{k}</td><td>{v}</td></tr>" for k, v in rows)
        self.text.setText(f"<table cellspacing='3'>{body}</table>")
        self.new_button.setEnabled(not s.busy)


def found_text(data: dict) -> str:
    """The data check in one plain line, e.g. '17 images, 3 classes, 9 captions'."""
    if not data:
        return ""
    def count(n: int, word: str, words: str) -> str:
        return f"{n:,} {word if n == 1 else words}"

    parts = [count(int(data.get("images") or 0), "image", "images")]
    for key, word, words in (("classes", "class", "classes"), ("captions", "caption", "captions"),
                             ("masks", "mask", "masks"), ("label_maps", "label map", "label maps")):
        n = len(data.get(key) or {}) if key == "classes" else int(data.get(key) or 0)
        if n:
            parts.append(count(n, word, words))
    if data.get("skipped"):
        parts.append(f"{len(data['skipped'])} skipped")
    return ", ".join(parts)


def run_label(run: Path) -> str:
    """'name — paused at step 1,200' for the runs list."""
    state = training.read_run_state(run)
    job = training.read_job(run)
    cur = state.current
    if job.get("model") and state.done:
        status = "exported"
    elif state.done:
        status = "finished"
    elif state.running and training.pid_alive(state.pid):
        status = "training"
    elif cur is not None and cur.step:
        status = f"stopped at step {cur.step:,}"
    else:
        status = "not started"
    return f"{run.name} — {status}"


class RunsBox(QComboBox):
    """The runs list; its labels (training, stopped at step N, exported) are read again whenever it
    opens, so a run that stopped while no one followed it shows as stopped."""

    def __init__(self, relabel, parent=None):
        super().__init__(parent)
        self.relabel = relabel

    def showPopup(self) -> None:
        self.relabel()
        super().showPopup()


class TrainWindow(QWidget):
    def __init__(self, studio_model, session: TrainSession | None = None, parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        self.model = studio_model
        self.session = session or TrainSession(self)
        self.setWindowTitle("Diffusion Studio — Train a model")
        self.missing = training.missing_engine_modules()
        self.setup = SetupPanel()
        self.progress = ProgressPanel(self.session)
        self.runs = RunsBox(self.relabel_runs)
        self.runs.setToolTip("Runs made here: pick one to follow, resume, export or delete it")
        self.runs.activated.connect(self.on_run_chosen)
        self.presets_loaded = False
        self.notice_box = self._notice()
        scroll = QScrollArea()
        scroll.setWidget(self.setup)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(self.setup.minimumSizeHint().width() + 24)
        self.summary = RunSummary(self.session)
        self.summary.new_button.clicked.connect(self.new_run)
        self.left = QStackedWidget()
        self.left.addWidget(scroll)
        self.left.addWidget(self.summary)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.left)
        split.addWidget(self.progress)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([400, 720])      # the setup's sentences need room; the plot and grid take the rest
        split.setChildrenCollapsible(False)
        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        top.addWidget(self.runs, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.notice_box)
        lay.addWidget(split, 1)
        self.setup.startRequested.connect(self.start)
        self.progress.cancelRequested.connect(self.cancel)
        self.session.changed.connect(self.on_session)
        self.session.exported.connect(self.on_exported)
        self.session.message.connect(self.on_message)
        self.session.error.connect(self.on_message)
        self.resize(1120, 700)
        self.shown_key: tuple = ()
        self.refresh_runs()

    def _notice(self) -> QFrame:
        """The 'install the engine extra' banner: the command, a Copy button, and Check again (the
        app keeps running while the user installs it in a terminal)."""
        box = QFrame()
        box.setStyleSheet("QFrame { background: #3a3320; border-radius: 4px; } QLabel { color: #fff3d6; }")
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        copy = QPushButton("Copy command")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(training.install_command()))
        self.recheck_button = QPushButton("Check again")
        self.recheck_button.setToolTip("Look for the engine extra again (after installing it)")
        self.recheck_button.clicked.connect(self.recheck_engine)
        buttons = QVBoxLayout()
        buttons.addWidget(copy)
        buttons.addWidget(self.recheck_button)
        buttons.addStretch(1)
        lay = QHBoxLayout(box)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.notice, 1)
        lay.addLayout(buttons)
        self.show_missing(box)
        return box

    def show_missing(self, box: QFrame) -> None:
        if self.missing:
            first = sorted(self.missing, key=lambda name: (name != "torch", name))    # torch is the one people know
            named = ", ".join(first[:4]) + (f" and {len(first) - 4} more" if len(first) > 4 else "")
            self.notice.setText(
                f"<b>Training needs the engine extra</b> (PyTorch and friends); this install lacks {html.escape(named)}. "
                f"Install it in a terminal with:<br><code>{html.escape(training.install_command())}</code>"
                "<br>then press <i>Check again</i> (the app can stay open). Generating images does not need it.")
            self.setup.setEnabled(False)
            self.setup.summary.setText("Install the engine extra (above) to train.")
        box.setVisible(bool(self.missing))

    def recheck_engine(self) -> None:
        """Look for the engine extra again; once it is there, load the presets as on a first opening."""
        importlib.invalidate_caches()    # pip wrote new folders into site-packages since the app started
        self.missing = training.missing_engine_modules()
        self.show_missing(self.notice_box)
        if not self.missing and not self.presets_loaded and self.isVisible():
            self.presets_loaded = True
            self.setup.summary.setText("Choose a folder or a built-in set.")
            self.load_presets()
            self.follow_background_run()
            self.on_session()

    # --- opening -------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.missing:
            self.recheck_engine()
        elif not self.presets_loaded:
            self.presets_loaded = True
            self.load_presets()
            self.follow_background_run()

    def load_presets(self) -> None:
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            presets, problem = list_presets()
        finally:
            QGuiApplication.restoreOverrideCursor()
        if problem:
            self.setup.summary.setText(f"<span style='color:#c33'>{html.escape(problem)}</span>")
        self.setup.set_presets(presets)

    def follow_background_run(self) -> None:
        """Attach to a run an earlier app session left training in the background."""
        if self.session.run is not None:
            return
        for run in training.list_runs():
            state = training.read_run_state(run)
            if state.running and training.pid_alive(state.pid):
                self.session.attach(run)
                self.refresh_runs()
                return

    # --- runs list -----------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self.runs.blockSignals(True)
        self.runs.clear()
        self.runs.addItem(NEW_RUN, None)
        for run in training.list_runs():
            self.runs.addItem(run_label(run), str(run))
        current = self.runs.findData(str(self.session.run)) if self.session.run is not None else 0
        self.runs.setCurrentIndex(max(0, current))
        self.runs.blockSignals(False)
        self.on_session()

    def on_run_chosen(self, index: int) -> None:
        path = self.runs.itemData(index)
        if self.session.busy and (path is None or Path(path) != self.session.run):
            self.on_message("A run is active: pause it (or let it finish) before switching runs.")
            self.refresh_runs()
            return
        if path is None:
            self.new_run()
        else:
            self.session.attach(Path(path))
        self.on_session()

    def new_run(self) -> None:
        if self.session.busy:
            self.on_message("A run is active: pause it (or let it finish) before setting up another.")
            return
        self.session.detach()
        self.setup.suggest_name()
        self.refresh_runs()

    # --- actions -------------------------------------------------------------------------
    def start(self) -> None:
        setup = self.setup
        preset, data, plan = setup.current_preset(), setup.data(), setup.plan()
        if not setup.ready() or not plan:
            return
        run = setup.run_folder()
        budget = setup.budget()
        what = data["path"] if data["kind"] == "folder" else f"the built-in {data['name']} set"
        spent = format_duration(budget["seconds"]) if "seconds" in budget else f"{budget['steps']:,} steps"
        check = setup.check_result or {}
        job = {
            "name": run.name, "preset": preset["name"], "data": data, "budget": budget, "created": time.time(),
            "check": {"found": found_text(check.get("data") or {}), "learns": describe_conditioning(check.get("conditioning") or {}),
                      "device": check.get("device_name") or check.get("device") or ""},
            "stages": [s["stage"] for s in plan], "estimates": {s["stage"]: s["expected_seconds"] for s in plan},
            "argv": training.train_argv(run, preset, data, plan),
            "description": f"Trained in Diffusion Studio on {what} ({preset['name']} preset, {spent})",
        }
        self.session.start(run, job)
        self.refresh_runs()

    def ask_cancel(self) -> str | None:
        """'delete', 'keep' or None (do not cancel)."""
        box = QMessageBox(self)
        box.setWindowTitle("Cancel training")
        box.setIcon(QMessageBox.Icon.Question)
        box.setText(f"Stop training {self.session.run.name}?")
        box.setInformativeText("Keep the run to resume or export it later, or delete its folder "
                               "(checkpoints, sample grids and logs).")
        delete = box.addButton("Delete run", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep run", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Don't cancel", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return {delete: "delete", keep: "keep"}.get(box.clickedButton())

    def cancel(self) -> None:
        if self.session.run is None:
            return
        choice = self.ask_cancel()
        if choice == "delete":
            self.session.cancel(delete=True)
        elif choice == "keep":
            self.session.cancel(delete=False)
            self.session.detach()
            self.setup.suggest_name()
        self.refresh_runs()

    def ask_close(self) -> str:
        """'background', 'pause' or 'stay' when the app closes during training."""
        s = self.session
        left = s.seconds_left()
        box = QMessageBox(self)
        box.setWindowTitle("Training is running")
        box.setIcon(QMessageBox.Icon.Question)
        box.setText(f"{s.run.name} is still training" + (f" (about {format_duration(left)} left)." if left else "."))
        box.setInformativeText("Keep training in the background: it goes on after the app closes, and the Train "
                               "window follows it again next time.\nPause: write a checkpoint and stop; Resume "
                               "continues later.")
        bg = box.addButton("Keep training", QMessageBox.ButtonRole.AcceptRole)
        pause = box.addButton("Pause", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Don't quit", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        return {bg: "background", pause: "pause"}.get(box.clickedButton(), "stay")

    def confirm_app_close(self) -> bool:
        """Called by the main window before the app quits: False keeps the app open. An export goes
        on by itself in the background; a data check is stopped."""
        if not self.session.training:
            self.setup.checker.stop()
            return True
        choice = self.ask_close()
        if choice == "stay":
            return False
        if choice == "pause":
            self.session.pause()   # the trainer stops by itself, with or without the app
        self.session.detach()
        self.setup.checker.stop()
        return True

    # --- reactions -----------------------------------------------------------------------
    def on_session(self) -> None:
        s = self.session
        self.left.setCurrentIndex(0 if s.run is None else 1)
        self.setup.setEnabled(not self.missing)
        if s.run is None and not self.missing:
            self.setup.update_where()
        self.summary.refresh()
        cur = s.state.current
        key = (s.phase, cur.stage if cur else "", cur.ended if cur else "", s.state.done, bool(s.problem))
        if key != self.shown_key:    # a run started, ended or changed stage: relabel the list
            self.shown_key = key
            self.relabel_runs()

    def relabel_runs(self) -> None:
        for i in range(1, self.runs.count()):
            path = self.runs.itemData(i)
            if path:
                self.runs.setItemText(i, run_label(Path(path)))

    def on_message(self, text: str) -> None:
        bar = self.model.message if self.model is not None else None
        if bar is not None:
            bar.emit(text)

    def on_exported(self, path: str) -> None:
        self.refresh_runs()
        if self.model is None:
            return
        self.model.refresh_models()
        if not self.model.select_model(path):
            self.on_message(f"Exported {Path(path).name}; select it in the model list when the generation ends.")

    def closeEvent(self, event) -> None:
        self.setup.checker.stop()
        super().closeEvent(event)
