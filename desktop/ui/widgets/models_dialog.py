"""The model manager (File ▸ Manage models…): every model with what it accepts, where it lives, and
Add, Rename, Remove, Show in folder and Use for the user's own models (bundled ones are read-only).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QFileDialog, QHBoxLayout, QHeaderView, QMessageBox,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout)

from ..caps import accepts
from ..library import USER

COLUMNS = ("Name", "Kind", "Accepts", "From", "Folder")


class ModelManager(QDialog):
    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.setWindowTitle("Models")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Your models and the ones that ship with the app; double-click a name of yours to rename it")
        self.table.itemSelectionChanged.connect(self.update_buttons)
        self.table.itemChanged.connect(self.on_edited)
        self.buttons = {}
        row = QHBoxLayout()
        for key, text, tip, slot in (
            ("add", "Add…", "Copy a model folder (studio.json or an SD-style ONNX folder) into your models", self.add),
            ("use", "Use", "Generate with this model", self.use),
            ("rename", "Rename", "Give one of your models another name (the files stay as they are)", self.rename),
            ("remove", "Remove…", "Delete one of your models from disk (models that ship with the app stay)", self.remove),
            ("reveal", "Show in folder", "Open the model's folder in your file manager", self.reveal),
        ):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            row.addWidget(b)
            self.buttons[key] = b
        row.addStretch(1)
        close = QPushButton("Close")
        close.setToolTip("Close this window")
        close.clicked.connect(self.accept)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addLayout(row)
        model.modelsChanged.connect(self.refresh)
        self.refresh()
        self.resize(820, 360)

    def refresh(self) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for e in self.model.models:
            r = self.table.rowCount()
            self.table.insertRow(r)
            c = e.caps
            what = f"{c.kind} · {c.width}×{c.height}" if c else e.error
            cells = (e.name, what, accepts(c) if c else "cannot be used", "yours" if e.source == USER else "ships with the app",
                     str(e.path))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(c.description or text if (c and col < 2) else text)
                flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                if col == 0 and e.source == USER:
                    flags |= Qt.ItemFlag.ItemIsEditable
                item.setFlags(flags)
                self.table.setItem(r, col, item)
            if self.model.entry is not None and e.path == self.model.entry.path:
                self.table.selectRow(r)
        self.table.blockSignals(False)
        self.update_buttons()

    def entry(self):
        rows = self.table.selectionModel().selectedRows()
        return self.model.models[rows[0].row()] if rows and rows[0].row() < len(self.model.models) else None

    def update_buttons(self) -> None:
        e = self.entry()
        mine = e is not None and e.source == USER
        self.buttons["rename"].setEnabled(mine)
        self.buttons["remove"].setEnabled(mine and not self.model.running)
        self.buttons["reveal"].setEnabled(e is not None)
        self.buttons["use"].setEnabled(e is not None and e.caps is not None and not self.model.running)

    def add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (with studio.json or model_index.json)")
        if folder:
            self.model.add_model(folder)

    def use(self) -> None:
        e = self.entry()
        if e is not None:
            self.model.select_model(e.path)

    def rename(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.table.editItem(self.table.item(rows[0].row(), 0))

    def on_edited(self, item: QTableWidgetItem) -> None:
        if item.column() == 0 and item.row() < len(self.model.models):
            e = self.model.models[item.row()]
            if item.text().strip() != e.name:
                self.model.rename_model(e.path, item.text())

    def remove(self, *, confirm: bool = True) -> None:
        e = self.entry()
        if e is None or e.source != USER:
            return
        if confirm and QMessageBox.question(
                self, "Remove model", f"Delete {e.name} and its folder\n{e.path}?\nThis cannot be undone.") \
                != QMessageBox.StandardButton.Yes:
            return
        self.model.remove_model(e.path)

    def reveal(self) -> None:
        e = self.entry()
        if e is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(e.path)))
