"""The Train window's right side: the stages, progress with ETA, images/s and device, the live loss
plot, the latest sample grid, and Pause / Resume / Cancel / Export. Reads a TrainSession."""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSplitter, QVBoxLayout, QWidget

from ..train_session import TrainSession, format_duration
from .imageview import ImageView
from .loss_plot import LossPlot

STAGE_TITLES = {"vae": "Autoencoder", "diffusion": "Diffusion model", "export": "Export"}
MARKS = {"done": "✓", "active": "●", "waiting": "○", "paused": "❚❚", "failed": "✕"}
COLORS = {"done": "#3d9a50", "active": "#2f7fd0", "waiting": "gray", "paused": "#b26a00", "failed": "#c33"}


def stage_marks(session: TrainSession) -> list[tuple[str, str]]:
    """(title, state) for every stage of the run and the export step."""
    s, job = session.state, session.job
    names = list(job.get("stages") or [st.stage for st in s.stages] or ["diffusion"])
    out = []
    for name in names:
        st = next((x for x in s.stages if x.stage == name), None)
        if st is None:
            state = "waiting"
        elif st.finished:
            state = "done"
        elif session.training and st is s.current:
            state = "active"
        elif session.problem and st is s.current:
            state = "failed"
        else:
            state = "paused" if st.ended == "paused" or st.step else "waiting"
        out.append((STAGE_TITLES.get(name, name), state))
    if job.get("model") and s.done:
        export = "done"
    elif session.phase == "exporting":
        export = "active"
    elif s.done and session.problem:
        export = "failed"
    else:
        export = "waiting"
    return out + [(STAGE_TITLES["export"], export)]


class ProgressPanel(QWidget):
    cancelRequested = Signal()

    def __init__(self, session: TrainSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.title = QLabel("<b>No run yet</b>")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.stages = QLabel()
        self.stages.setTextFormat(Qt.TextFormat.RichText)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem.setStyleSheet("QLabel { background: #5c1f24; color: #ffe9ea; border-radius: 4px; padding: 6px; }")
        self.problem.hide()
        self.plot = LossPlot()
        self.sample = ImageView()
        self.sample.set_placeholder("Sample grids appear here as training goes.")
        self.sample.setToolTip("The latest sample grid, made with the model's averaged (EMA) weights")
        self.sample_caption = QLabel()
        self.shown_sample = ""
        self.sample_caption.setStyleSheet("color: gray")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.title, self.stages, self.bar, self.stats, self.problem):
            lay.addWidget(w)
        lay.addWidget(self._views(), 1)
        lay.addLayout(self._buttons())
        session.changed.connect(self.refresh)
        self.refresh()

    def _views(self) -> QSplitter:
        right = QWidget()
        v = QVBoxLayout(right)
        v.setContentsMargins(0, 0, 0, 0)
        v.addWidget(self.sample, 1)
        v.addWidget(self.sample_caption)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([1000, 1000])
        split.setChildrenCollapsible(False)
        return split

    def _buttons(self) -> QHBoxLayout:
        s = self.session
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Write a checkpoint and stop; Resume continues exactly from there")
        self.pause_button.clicked.connect(s.pause)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue from the last checkpoint")
        self.resume_button.clicked.connect(s.resume)
        self.cancel_button = QPushButton("Cancel…")
        self.cancel_button.setToolTip("Stop this run; you choose whether to keep it (to resume later) or delete it")
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.export_button = QPushButton("Export now")
        self.export_button.setToolTip("Make a model for the model list from the last checkpoint (training can resume after)")
        self.export_button.clicked.connect(s.export)
        self.folder_button = QPushButton("Open folder")
        self.folder_button.setToolTip("The run folder: checkpoints, sample grids, metrics.jsonl, logs")
        self.folder_button.clicked.connect(self.open_folder)
        row = QHBoxLayout()
        for b in (self.pause_button, self.resume_button, self.cancel_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.export_button)
        row.addWidget(self.folder_button)
        return row

    def open_folder(self) -> None:
        if self.session.run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.session.run)))

    # --- refresh -------------------------------------------------------------------------
    def refresh(self) -> None:
        s = self.session
        self.title.setText(self._title())
        marks = stage_marks(s) if s.run is not None else []
        self.stages.setText("  →  ".join(
            f"<span style='color:{COLORS[state]}'>{MARKS[state]} {html.escape(title)}</span>" for title, state in marks))
        self._progress()
        self.problem.setText(html.escape(s.problem))
        self.problem.setVisible(bool(s.problem))
        cur = s.state.current
        if cur is not None:
            self.plot.set_points(cur.losses, f"{STAGE_TITLES.get(cur.stage, cur.stage).lower()} loss")
            self._sample(cur)
        else:
            self.plot.set_points([])
            self.sample.set_image(None)
            self.sample_caption.setText("")
        self.pause_button.setEnabled(s.training)
        self.resume_button.setEnabled(s.can_resume() and bool(s.state.stages))
        self.cancel_button.setEnabled(s.run is not None and s.phase in ("idle", "training") and not bool(s.job.get("model") and s.state.done))
        self.export_button.setEnabled(s.can_export() and not (s.state.done and s.job.get("model")))
        self.folder_button.setEnabled(s.run is not None)

    def _title(self) -> str:
        s = self.session
        if s.run is None:
            return "<b>No run yet</b> — choose data and a preset, then Start training."
        st = s.state
        if s.phase == "exporting":
            status = "exporting"
        elif s.phase == "finalizing":
            status = "writing the model from the checkpoint"
        elif s.training:
            status = "training"
        elif st.done and s.job.get("model"):
            status = f"done — exported as <b>{html.escape(Path(s.job['model']).name)}</b>"
        elif st.done:
            status = "finished training"
        elif s.problem:
            status = "stopped"
        elif st.paused:
            status = "paused"
        else:
            status = "not started"
        return f"<b>{html.escape(s.run.name)}</b> · {status}"

    def _progress(self) -> None:
        s = self.session
        cur = s.state.current
        self.bar.setVisible(s.run is not None)
        if cur is None:
            self.bar.setValue(0)
            self.bar.setFormat("waiting for the trainer to start…" if s.training else "")
            self.stats.setText("")
            return
        self.bar.setValue(int(cur.fraction() * 1000))
        done = (f"step {cur.step:,} · {format_duration(cur.train_seconds)} of {format_duration(cur.max_seconds)}"
                if cur.max_seconds else f"step {cur.step:,} / {cur.steps:,}")
        self.bar.setFormat(f"{STAGE_TITLES.get(cur.stage, cur.stage)}: {done}")
        bits = []
        if s.training:
            left = s.seconds_left()
            bits.append(f"<b>{format_duration(left)} left</b>" if left is not None else "measuring speed…")
        if cur.images_per_s:
            bits.append(f"{cur.images_per_s:,.1f} images/s")
        if s.state.device:
            name = s.state.device_name or s.state.device
            bits.append(f"on {html.escape(name)}")
        if cur.loss is not None:
            bits.append(f"loss {cur.loss:.4g}")
        self.stats.setText(" · ".join(bits))

    def _sample(self, cur) -> None:
        if not cur.sample or not Path(cur.sample).is_file():
            self.shown_sample = ""
            self.sample.set_image(None)
            self.sample_caption.setText("")
            return
        if cur.sample == self.shown_sample:
            return
        self.shown_sample = cur.sample
        image = QImage(cur.sample)
        if image.isNull():
            return
        self.sample.set_image(image)
        what = "originals (top) and their reconstructions (bottom)" if cur.stage == "vae" else "samples (EMA weights)"
        self.sample_caption.setText(f"Step {cur.sample_step:,}: {what}")
