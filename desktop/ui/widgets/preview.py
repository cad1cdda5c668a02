"""The output panel: the live denoising preview, progress (step, it/s, ETA), the trajectory slider
over the stored per-step previews, and the result's actions.

A batch shows as a grid of separate images; a click selects one, and Use as input, Save as…, Copy
and Show in folder act on the selected image (each is disabled when it has nothing to act on: no
result, a cancelled run, an image that was never saved). The zoom box and F11 (full screen) show
the result large. Binds to StudioModel's frame/progress/trajectory/result/selection signals.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QSlider,
                               QToolButton, QVBoxLayout, QWidget)

from desktop.runtime.pngmeta import output_stem

from .. import images
from .flow import FlowLayout
from .imageview import ImageView, zoom_box

STATE_TEXT = {"idle": "idle", "running": "", "done": "done", "cancelled": "cancelled — nothing saved",
              "failed": "failed"}


def format_eta(seconds: float) -> str:
    if seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


class ClosingView(ImageView):
    """The full-screen view: a double-click closes its window."""

    def mouseDoubleClickEvent(self, event) -> None:
        self.window().close()


class FullScreenView(QWidget):
    """One image on the whole screen; Esc, F11 or a double-click closes it."""

    closed = Signal()

    def __init__(self, image, parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Diffusion Studio — full screen")
        self.view = ClosingView()
        self.view.set_image(image)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_F11):
            self.close()
        else:
            super().keyPressEvent(event)

    def closeEvent(self, event) -> None:
        self.closed.emit()
        super().closeEvent(event)


class PreviewPanel(QWidget):
    forkRequested = Signal(int)     # the trajectory step to fork from

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.full_screen: FullScreenView | None = None
        self.view = ImageView()
        self.view.set_placeholder("Press Generate (Ctrl+Enter): each denoising step appears here")
        self.view.setToolTip("The picture taking shape, step by step; a batch shows each picture separately "
                             "(click one to choose it). Math: the model's guess of the clean image, x̂₀")
        self.view.selected.connect(model.select)
        self.view.activated.connect(lambda i: (model.select(i), self.show_full_screen()))
        self._make_progress()
        self._make_trajectory()
        self._make_actions()
        self._layout()
        model.frameChanged.connect(self.show_frame)
        model.progressChanged.connect(self.on_progress)
        model.trajectoryChanged.connect(self.on_trajectory)
        model.displayChanged.connect(lambda: self.show_step(self.slider.value()))
        model.resultChanged.connect(self.on_result)
        model.selectionChanged.connect(self.on_selection)
        model.runningChanged.connect(self.on_running)
        model.runStateChanged.connect(self.on_state)
        self.update_actions()

    def _make_progress(self) -> None:
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.progress.setToolTip("Denoising progress")
        self.stats = QLabel("")
        self.stats.setToolTip("Steps per second and the estimated time left")

    def _make_trajectory(self) -> None:
        self.noisy = QCheckBox("Show noisy x_t")
        self.noisy.setToolTip("Show the noisy picture the sampler holds at each step instead of its guess of "
                              "the clean one. Math: x_t instead of x̂₀")
        self.noisy.setChecked(self.model.show_noisy)
        self.noisy.toggled.connect(self.model.set_show_noisy)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Trajectory: drag to watch the picture emerge from noise, step by step")
        self.slider.setEnabled(False)
        self.slider.setMinimumWidth(80)
        self.slider.valueChanged.connect(self.show_step)
        self.step_label = QLabel("")
        self.b_fork = QToolButton()
        self.b_fork.setText("Fork here")
        self.b_fork.setToolTip("Fork from this step: keep the picture as it is at this step, change the seed, "
                               "prompt, guidance or map, and let Generate finish it differently. The fork "
                               "appears under this run in the history")
        self.b_fork.clicked.connect(self.fork_here)

    def _make_actions(self) -> None:
        def tool(text, tip, slot):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            b.setAutoRaise(True)
            return b

        self.b_input = tool("Use as input", "Put the chosen picture on the canvas as the start image "
                                            "(then paint a mask to change part of it, or lower the strength)",
                            lambda: self.model.use_result_as_input())
        self.b_save = tool("Save as…", "Save the chosen picture (with its recipe) where you choose", self.save_as)
        self.b_copy = tool("Copy", "Copy the chosen picture to the clipboard", self.copy)
        self.b_folder = tool("Show in folder", "Open the folder that holds the chosen picture's PNG", self.show_in_folder)
        self.b_full = tool("Full screen", "Show the chosen picture on the whole screen (F11; Esc closes)",
                           self.show_full_screen)
        self.zoom = zoom_box(self.view)

    def _layout(self) -> None:
        top = FlowLayout(spacing=2)
        title = QLabel("<b>Output</b>")
        title.setMinimumWidth(70)
        top.addWidget(title)
        for w in (self.b_input, self.b_save, self.b_copy, self.b_folder, self.b_full, self.zoom):
            top.addWidget(w)
        traj = QHBoxLayout()
        traj.addWidget(self.step_label, 1)
        traj.addWidget(self.b_fork)
        traj.addWidget(self.noisy)
        prog = QHBoxLayout()
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.stats)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addLayout(top)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.slider)
        lay.addLayout(traj)
        lay.addLayout(prog)

    # --- live -----------------------------------------------------------------------------
    def frame_images(self, frame) -> list:
        arrays = frame.x_t if (self.model.show_noisy and frame.x_t is not None) else frame.x0
        return [images.qimage_from_array(a) for a in arrays]

    def show_frame(self, frame) -> None:
        self.view.set_images(self.frame_images(frame))
        self.step_label.setText(f"step {frame.step} / {frame.steps}")

    def on_progress(self, step: int, steps: int, it_s: float, eta: float) -> None:
        self.progress.setRange(0, max(steps, 1))
        self.progress.setValue(step)
        self.progress.setFormat(f"step {step} / {steps}")
        self.stats.setText(f"{it_s:.1f} it/s · ETA {format_eta(eta)}" if it_s > 0 else "starting…")

    def on_running(self, running: bool) -> None:
        self.slider.setEnabled(not running and len(self.model.frames) > 1)
        if not running:
            self.stats.setText("")
        self.update_actions()

    def on_state(self, state: str) -> None:
        if state != "running":
            self.progress.setFormat(STATE_TEXT.get(state, state))
        if state == "cancelled":
            self.progress.setValue(0)
        self.update_actions()

    # --- trajectory -----------------------------------------------------------------------
    def on_trajectory(self) -> None:
        frames = self.model.frames
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(frames)))   # the last position is the final result
        self.slider.setValue(len(frames))
        self.slider.blockSignals(False)
        self.slider.setEnabled(not self.model.running and len(frames) > 1)

    def show_step(self, index: int) -> None:
        frames, m = self.model.frames, self.model
        if index >= len(frames) and m.result_images:
            self.view.set_images([images.qimage_from_array(a) for a in m.result_images])
            self.view.current = m.selected
            self.step_label.setText(f"final ({len(frames)} steps)" if frames else "result")
        elif frames:
            self.show_frame(frames[min(index, len(frames) - 1)])
        self.update_actions()

    def on_result(self) -> None:
        if self.model.result_images:
            self.on_trajectory()
            self.show_step(len(self.model.frames))
        self.update_actions()

    def on_selection(self, index: int) -> None:
        if self.view.current != index and index < len(self.view.images):
            self.view.current = index
            self.view.update()
        self.update_actions()

    # --- actions --------------------------------------------------------------------------
    def showing_result(self) -> bool:
        """The final images are on screen (not a trajectory step or a live frame)."""
        m = self.model
        return bool(m.result_images) and not m.running and self.slider.value() >= len(m.frames)

    def fork_step(self) -> int:
        """The step the trajectory slider shows, when the chosen result can be forked there; else 0."""
        m, i = self.model, self.slider.value()
        if m.running or not m.result_images or m.selected_recipe() is None or not m.frames or i >= len(m.frames):
            return 0
        step = m.frames[i].step
        return step if 1 <= step < m.frames[i].steps else 0

    def fork_here(self) -> None:
        if self.fork_step():
            self.forkRequested.emit(self.fork_step())

    def update_actions(self) -> None:
        has = bool(self.model.result_images) and not self.model.running
        for b in (self.b_copy, self.b_input, self.b_save, self.b_full):
            b.setEnabled(has)
        self.b_folder.setEnabled(has and self.model.selected_path() is not None)
        k = self.fork_step()
        self.b_fork.setEnabled(bool(k))
        self.b_fork.setText(f"Fork at step {k}" if k else "Fork here")

    def save_as(self) -> None:
        m = self.model
        path = m.selected_path()
        name = path.name if path else output_stem(m.caps.name if m.caps else "image",
                                                  m.last_request.seed if m.last_request else 0) + ".png"
        target, _ = QFileDialog.getSaveFileName(self, "Save image as", str(m.settings.output_dir() / name), "PNG images (*.png)")
        if target:
            m.save_selected_as(target if target.lower().endswith(".png") else target + ".png")

    def copy(self) -> None:
        image = self.model.selected_image()
        if image is not None:
            QGuiApplication.clipboard().setImage(images.qimage_from_array(image))
            self.model.message.emit("Copied the picture to the clipboard.")

    def show_in_folder(self) -> None:
        src = self.model.selected_path()
        if src is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(src.parent)))

    def show_full_screen(self) -> None:
        image = self.view.image
        if image is None:
            return
        if self.full_screen is not None:
            self.full_screen.close()
        self.full_screen = FullScreenView(image)
        self.full_screen.closed.connect(lambda: setattr(self, "full_screen", None))
        self.full_screen.showFullScreen()
