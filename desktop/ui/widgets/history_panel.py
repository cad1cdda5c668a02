"""The history: every result with its recipe, newest first; forks appear under the run they left.

A click restores all the entry's settings (and shows its picture); right-click for PNG info, save
as, copy, show in folder, remove.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QLabel, QMenu, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from ..caps import SAMPLER_LABELS

THUMB = 56
INDEX = Qt.ItemDataRole.UserRole


def recipe_tooltip(entry) -> str:
    r = entry.recipe
    lines = [f"<b>{entry.model_name or 'model'}</b>", entry.what if not r.get("prompt") else f"“{r['prompt']}”"]
    if entry.fork_step:
        fork = r.get("fork") or {}
        lines.append(f"a fork of seed {fork.get('parent_seed', '?')} from step {entry.fork_step}")
    sampler = SAMPLER_LABELS.get(r.get("sampler"), r.get("sampler"))
    lines.append(f"{sampler} · {r.get('steps')} steps · guidance {r.get('guidance')} · seed {r.get('seed')}")
    if entry.provider:
        lines.append(f"on {entry.provider}")
    lines.append(f"<span style='color: gray'>{entry.path}</span>")
    lines.append("<i>Click to restore these settings</i>")
    return "<br>".join(lines)


def short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


class HistoryPanel(QWidget):
    infoRequested = Signal(str)      # a PNG path: show its PNG info

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self._icons: dict[str, QIcon] = {}   # thumbnails by PNG path, decoded once
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.tree.setIndentation(14)
        self.tree.setUniformRowHeights(True)
        self.tree.setToolTip("Every picture you made; forks sit under the run they left. Click one to restore its settings; right-click for more")
        self.tree.itemClicked.connect(lambda item, _col: model.restore_history(item.data(0, INDEX)))
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self.context_menu)
        self.empty = QLabel("No pictures yet. Every picture you make is kept here with the settings that made it.")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: gray")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.empty, 1)
        lay.addWidget(self.tree, 1)
        model.historyChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.tree.clear()
        entries = self.model.history.entries
        self._icons = {e.path: self._icons[e.path] if e.path in self._icons else thumbnail(e.path) for e in entries}
        items, paths = {}, {e.path for e in entries}
        for i, e in enumerate(entries):
            item = QTreeWidgetItem([f"{short(e.title, 28)}\nseed {e.recipe.get('seed')}"])
            item.setIcon(0, self._icons[e.path])
            item.setToolTip(0, recipe_tooltip(e))
            item.setData(0, INDEX, i)
            items[e.path] = item
        for i, e in enumerate(entries):   # newest first; a fork goes under its parent when that is listed
            parent = items.get(e.parent) if e.parent in paths and e.parent != e.path else None
            (parent.addChild if parent is not None else self.tree.addTopLevelItem)(items[e.path])
        self.tree.expandAll()
        self.tree.setRootIsDecorated(any(e.parent in paths for e in entries))
        self.empty.setVisible(not entries)
        self.tree.setVisible(bool(entries))

    def items(self) -> list[QTreeWidgetItem]:
        """Every item, in display order (top level and children)."""
        out = []

        def walk(item):
            out.append(item)
            for k in range(item.childCount()):
                walk(item.child(k))
        for k in range(self.tree.topLevelItemCount()):
            walk(self.tree.topLevelItem(k))
        return out

    def item_for(self, path: str) -> QTreeWidgetItem | None:
        return next((it for it in self.items() if self.model.history.entries[it.data(0, INDEX)].path == str(path)), None)

    def context_menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        row = item.data(0, INDEX)
        entry = self.model.history.entries[row]
        menu = QMenu(self)
        menu.addAction("Restore settings", lambda: self.model.restore_history(row))
        menu.addAction("PNG info…", lambda: self.infoRequested.emit(entry.path))
        menu.addAction("Save as…", lambda: self.save_as(entry.path))
        menu.addAction("Copy image", lambda: QGuiApplication.clipboard().setImage(QImage(entry.path)))
        menu.addAction("Show in folder", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(entry.path).parent))))
        menu.addSeparator()
        menu.addAction("Remove from history (keeps the file)", lambda: self.remove(row))
        menu.exec(self.tree.viewport().mapToGlobal(pos))

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


def thumbnail(path: str) -> QIcon:
    image = QImage(path)
    if image.isNull():
        pm = QPixmap(THUMB, THUMB)
        pm.fill(Qt.GlobalColor.darkGray)
        return QIcon(pm)
    mode = Qt.TransformationMode.FastTransformation if image.width() < THUMB else Qt.TransformationMode.SmoothTransformation
    return QIcon(QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, mode)))
