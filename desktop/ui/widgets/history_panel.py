"""The history list: every result with its recipe; a click restores all its parameters."""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QLabel, QListWidget, QListWidgetItem, QMenu, QVBoxLayout, QWidget

THUMB = 72


def recipe_tooltip(entry) -> str:
    r = entry.recipe
    lines = [f"<b>{entry.model_name or 'model'}</b>", entry.title if not r.get("prompt") else f"“{r['prompt']}”"]
    lines.append(f"{r.get('sampler')} · {r.get('steps')} steps · guidance {r.get('guidance')} · seed {r.get('seed')}")
    if entry.provider:
        lines.append(f"on {entry.provider}")
    lines.append(f"<span style='color: gray'>{entry.path}</span>")
    lines.append("<i>Click to restore these settings</i>")
    return "<br>".join(lines)


class HistoryPanel(QWidget):
    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self._icons: dict[str, QIcon] = {}   # thumbnails by PNG path, decoded once
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 14, THUMB + 30))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(True)
        self.list.setToolTip("Every image you made. Click one to restore its settings; right-click for more")
        self.list.itemClicked.connect(lambda item: model.restore_history(self.list.row(item)))
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self.context_menu)
        self.empty = QLabel("No images yet. Every image you make is kept here with the settings that made it.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: gray")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.empty, 1)
        lay.addWidget(self.list, 1)
        model.historyChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        entries = self.model.history.entries
        self._icons = {e.path: self._icons[e.path] if e.path in self._icons else _thumb(e.path) for e in entries}
        for e in entries:
            item = QListWidgetItem(self._icons[e.path], short(e.title, 18))
            item.setToolTip(recipe_tooltip(e))
            self.list.addItem(item)
        self.empty.setVisible(not self.model.history.entries)
        self.list.setVisible(bool(self.model.history.entries))

    def context_menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        row = self.list.row(item)
        entry = self.model.history.entries[row]
        menu = QMenu(self)
        menu.addAction("Restore settings", lambda: self.model.restore_history(row))
        menu.addAction("Save as…", lambda: self.save_as(entry.path))
        menu.addAction("Copy image", lambda: QGuiApplication.clipboard().setImage(QImage(entry.path)))
        menu.addAction("Show in folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(entry.path).parent))))
        menu.addSeparator()
        menu.addAction("Remove from history (keeps the file)", lambda: self.remove(row))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def save_as(self, path: str) -> None:
        target, _ = QFileDialog.getSaveFileName(self, "Save image as", str(Path.home() / Path(path).name), "PNG images (*.png)")
        if target:
            try:
                shutil.copyfile(path, target)
            except OSError as exc:
                self.model.error.emit(f"Could not save to {target}: {exc}")

    def remove(self, row: int) -> None:
        self.model.history.remove(row)
        self.model.historyChanged.emit()


def short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _thumb(path: str) -> QIcon:
    image = QImage(path)
    if image.isNull():
        pm = QPixmap(THUMB, THUMB)
        pm.fill(Qt.GlobalColor.darkGray)
        return QIcon(pm)
    mode = Qt.TransformationMode.FastTransformation if image.width() < THUMB else Qt.TransformationMode.SmoothTransformation
    return QIcon(QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, mode)))
