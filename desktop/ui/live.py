"""Live painting (as in NVIDIA Canvas): the picture regenerates on its own while the user paints.

Every change of the canvas or of a control restarts a short timer (DEBOUNCE_MS); when it runs out,
a *live* run starts with the current settings: the seed stays as it is, nothing is saved and
nothing enters the history (Generate or Save as… keep a result). A change during a live run
makes that run stale: when the timer runs out again it is cancelled (within one step) and a fresh
run follows. A run the user started with Generate is never cancelled by painting. Meant for fast
models; on a slow one the picture simply catches up when the user pauses. The switch is the
setting `live_painting`.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

DEBOUNCE_MS = 250


class LivePainter(QObject):
    enabledChanged = Signal(bool)

    def __init__(self, model, parent=None):
        super().__init__(parent or model)
        self.model = model
        self.enabled = bool(model.settings["live_painting"])
        self.pending = False         # a fresh run waits for the stale one to stop
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.kick)
        model.canvas.changed.connect(self.schedule)
        model.paramsChanged.connect(self.on_params)
        model.runningChanged.connect(self.on_running)
        model.bundleChanged.connect(self.schedule)

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        self.model.settings["live_painting"] = self.enabled
        self.model.save_settings()
        self.enabledChanged.emit(self.enabled)
        if self.enabled:
            self.schedule()
        else:
            self.timer.stop()
            self.pending = False

    def schedule(self) -> None:
        if self.enabled and self.model.bundle is not None:
            self.timer.start()

    def on_params(self, name: str) -> None:
        if name not in ("seed_locked", "batch_size"):   # neither changes the picture on screen
            self.schedule()

    def kick(self) -> None:
        """The timer ran out: start a live run, or stop the stale one and start after it."""
        m = self.model
        if not self.enabled:
            return
        if m.running:
            if m.live_run:
                self.pending = True
                m.cancel(quiet=True)
            return
        m.generate(live=True)

    def on_running(self, running: bool) -> None:
        if not running and self.pending:
            self.pending = False
            self.kick()
