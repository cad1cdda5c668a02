"""The output panel: live denoising preview, progress (step, it/s, ETA), the trajectory slider
over the stored per-step previews, and the result's actions (save as, copy, show in folder, use
as input). Binds to StudioModel's frame/progress/trajectory/result signals.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QSlider, QToolButton,
                               QVBoxLayout, QWidget)

from .. import images
from .imageview import ImageView


def format_eta(seconds: float) -> str:
    if seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


class PreviewPanel(QWidget):
    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.view = ImageView()
        self.view.set_placeholder("Press Generate (Ctrl+Enter): each denoising step appears here")
        self.view.setToolTip("The predicted image x̂₀ at each step (or the noisy x_t); Ctrl+wheel zooms, double-click fits")

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.progress.setToolTip("Denoising progress")
        self.stats = QLabel("")
        self.stats.setToolTip("Steps per second and the estimated time left")
        self.stats.setMinimumWidth(170)

        self.noisy = QCheckBox("Show noisy x_t")
        self.noisy.setToolTip("Show the noisy sample x_t instead of the model's prediction of the clean image x̂₀")
        self.noisy.setChecked(model.show_noisy)
        self.noisy.toggled.connect(model.set_show_noisy)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Trajectory: step through the stored previews to see the image emerge from noise")
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self.show_step)
        self.step_label = QLabel("")
        self.step_label.setMinimumWidth(110)

        def tool(text, tip, slot):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            b.setAutoRaise(True)
            return b

        self.b_save = tool("Save as…", "Save the result (with its recipe) to a file of your choice", self.save_as)
        self.b_copy = tool("Copy", "Copy the result to the clipboard", self.copy)
        self.b_folder = tool("Show in folder", "Open the folder that holds the saved PNG", self.show_in_folder)
        self.b_input = tool("Use as input", "Put the result on the canvas as the init image (img2img, inpainting)", lambda: model.use_result_as_input(0))

        top = QHBoxLayout()
        title = QLabel("<b>Output</b>")
        top.addWidget(title)
        top.addStretch(1)
        for b in (self.b_input, self.b_save, self.b_copy, self.b_folder):
            top.addWidget(b)
        prog = QHBoxLayout()
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.stats)
        traj = QHBoxLayout()
        traj.addWidget(QLabel("Trajectory"))
        traj.addWidget(self.slider, 1)
        traj.addWidget(self.step_label)
        traj.addWidget(self.noisy)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addLayout(top)
        lay.addWidget(self.view, 1)
        lay.addLayout(traj)
        lay.addLayout(prog)

        model.frameChanged.connect(self.show_frame)
        model.progressChanged.connect(self.on_progress)
        model.trajectoryChanged.connect(self.on_trajectory)
        model.resultChanged.connect(self.on_result)
        model.runningChanged.connect(self.on_running)
        self.update_actions()

    # --- live -----------------------------------------------------------------------------
    def show_frame(self, frame) -> None:
        image = frame.x_t if (self.model.show_noisy and frame.x_t is not None) else frame.x0
        self.view.set_image(images.qimage_from_array(image))
        self.step_label.setText(f"step {frame.step} / {frame.steps}")

    def on_progress(self, step: int, steps: int, it_s: float, eta: float) -> None:
        self.progress.setRange(0, max(steps, 1))
        self.progress.setValue(step)
        self.progress.setFormat(f"step {step} / {steps}")
        self.stats.setText(f"{it_s:.1f} it/s · ETA {format_eta(eta)}" if it_s > 0 else "starting…")

    def on_running(self, running: bool) -> None:
        self.slider.setEnabled(not running and len(self.model.frames) > 1)
        if not running:
            self.progress.setFormat("idle" if not self.model.result_images else "done")
            self.stats.setText("")
        self.update_actions()

    # --- trajectory -----------------------------------------------------------------------
    def on_trajectory(self) -> None:
        frames = self.model.frames
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(frames)))   # the last position is the final result
        self.slider.setValue(len(frames))
        self.slider.blockSignals(False)
        self.slider.setEnabled(not self.model.running and len(frames) > 1)
        if frames and not self.model.running:
            self.show_step(self.slider.value())

    def show_step(self, index: int) -> None:
        frames = self.model.frames
        if index >= len(frames) and self.model.result_images:
            self.view.set_image(images.qimage_from_array(images.tile(self.model.result_images)))
            self.step_label.setText(f"final ({len(frames)} steps)" if frames else "result")
        elif frames:
            self.show_frame(frames[min(index, len(frames) - 1)])

    def on_result(self) -> None:
        self.on_trajectory()
        if self.model.result_images:
            self.show_step(len(self.model.frames))
        self.update_actions()

    # --- actions --------------------------------------------------------------------------
    def current_path(self) -> Path | None:
        paths = [p for p in self.model.result_paths if p]
        return Path(paths[0]) if paths else None

    def update_actions(self) -> None:
        has = bool(self.model.result_images) and not self.model.running
        for b in (self.b_copy, self.b_input):
            b.setEnabled(has)
        for b in (self.b_save, self.b_folder):
            b.setEnabled(has and self.current_path() is not None)

    def save_as(self) -> None:
        src = self.current_path()
        if src is None:
            return
        target, _ = QFileDialog.getSaveFileName(self, "Save image as", str(Path.home() / src.name), "PNG images (*.png)")
        if target:
            try:
                tmp = Path(target).with_name(Path(target).name + ".partial")
                shutil.copyfile(src, tmp)
                tmp.replace(target)
                self.model.message.emit(f"Saved {Path(target).name}")
            except OSError as exc:
                self.model.error.emit(f"Could not save to {target}: {exc}")

    def copy(self) -> None:
        if self.model.result_images:
            QGuiApplication.clipboard().setImage(images.qimage_from_array(images.tile(self.model.result_images)))
            self.model.message.emit("Copied the image to the clipboard.")

    def show_in_folder(self) -> None:
        src = self.current_path()
        if src is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(src.parent)))
