"""The main window: a layout description binding the panels to one StudioModel.

Left dock: model picker and controls. Centre: input canvas | output preview. Right dock: history.
Errors appear in a banner at the top of the window, in plain words; the app keeps working.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QScrollArea,
                               QSplitter, QToolButton, QVBoxLayout, QWidget)

from .model import StudioModel
from .theme import apply_theme
from .widgets.canvas import CanvasPanel
from .widgets.controls import ControlsPanel
from .widgets.dialogs import HelpDialog, PngInfoDialog, SettingsDialog
from .widgets.models_dialog import ModelManager
from .widgets.history_panel import HistoryPanel
from .widgets.preview import PreviewPanel


class ErrorBanner(QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setStyleSheet("#errorBanner { background: #5c1f24; border-radius: 4px; } #errorBanner QLabel { color: #ffe9ea; }")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.text, 1)
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_error(self, text: str) -> None:
        self.text.setText(text)
        self.show()


class MainWindow(QMainWindow):
    def __init__(self, model: StudioModel | None = None, parent=None):
        super().__init__(parent)
        self.model = model or StudioModel()
        m = self.model
        self.setWindowTitle("Diffusion Studio")
        self.setAcceptDrops(True)

        self.controls = ControlsPanel(m)
        self.canvas = CanvasPanel(m)
        self.preview = PreviewPanel(m)
        self.history = HistoryPanel(m)
        self.banner = ErrorBanner()

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.canvas)
        split.addWidget(self.preview)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        self.splitter = split
        self.split_once = False
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 0)
        lay.addWidget(self.banner)
        lay.addWidget(split, 1)
        self.setCentralWidget(central)

        self.controls_dock = self._dock("Generate", self.controls_column(), Qt.DockWidgetArea.LeftDockWidgetArea, "controlsDock")
        self.history_dock = self._dock("History", self.history, Qt.DockWidgetArea.RightDockWidgetArea, "historyDock")
        self.history.setMinimumWidth(120)

        self.provider_label = QLabel()
        self.provider_label.setToolTip("The ONNX Runtime execution provider really in use")
        self.statusBar().addPermanentWidget(self.provider_label)

        self.train_window = None   # the Train window, made when first opened
        self._menus()
        self.controls.generateRequested.connect(m.generate)
        self.controls.cancelRequested.connect(m.cancel)
        self.history.infoRequested.connect(self.show_png_info)
        self.preview.forkRequested.connect(m.start_fork)
        m.error.connect(self.show_error)
        m.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        m.bundleChanged.connect(self.on_bundle)
        m.modelsChanged.connect(self.on_bundle)
        m.runningChanged.connect(self.on_running)
        screen = self.screen().availableGeometry() if self.screen() else None
        self.resize(min(1320, int(screen.width() * 0.92)) if screen else 1320, min(820, int(screen.height() * 0.9)) if screen else 820)
        self.resizeDocks([self.controls_dock, self.history_dock], [300, 190], Qt.Orientation.Horizontal)
        if not self.restore_layout() and self.width() < 1200:
            self.set_compact(True)           # a small screen, first start: history as a tab

    def controls_column(self) -> QWidget:
        """The controls scroll; Generate and Cancel stay in view below them at any window height."""
        scroll = QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(self.controls.minimumSizeHint().width() + 16)
        column = QWidget()
        lay = QVBoxLayout(column)
        lay.setContentsMargins(0, 0, 0, 4)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.controls.buttons)
        return column

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self.model.settings["window_state"] and not self.split_once:
            self.split_once = True   # first start: canvas and output share the middle equally
            self.splitter.setSizes([self.splitter.width() // 2] * 2)

    def _dock(self, title, widget, area, name) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text, slot, shortcut=None, tip="") -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.setToolTip(tip or text)
        a.setStatusTip(tip)
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _menus(self) -> None:
        m = self.model
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "Open image…", self.canvas.open_image, "Ctrl+O", "Load an image onto the canvas")
        self._action(f, "Open recipe…", self.open_recipe, "Ctrl+Shift+O",
                     "Show the settings stored in a PNG (made here or by another tool) and apply them")
        f.addSeparator()
        self._action(f, "Add model…", self.controls.picker.add_model, None, "Copy a model bundle folder into your models")
        self._action(f, "Manage models…", self.open_models, "Ctrl+M", "Add, rename, remove and inspect your models")
        f.addSeparator()
        self._action(f, "Settings…", self.open_settings, "Ctrl+,", "Output folder, theme, execution provider, preview frequency")
        f.addSeparator()
        self._action(f, "Quit", self.close, "Ctrl+Q")
        e = bar.addMenu("&Edit")
        self.a_undo = self._action(e, "Undo", m.canvas.undo, "Ctrl+Z", "Undo the last stroke")
        self.a_redo = self._action(e, "Redo", m.canvas.redo, [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")], "Redo")
        m.canvas.undoChanged.connect(self._update_undo)
        self._update_undo()
        g = bar.addMenu("&Generate")
        self.a_generate = self._action(g, "Generate", m.generate, [QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")], "Generate (Ctrl+Enter)")
        self.a_cancel = self._action(g, "Cancel", m.cancel, "Esc", "Stop the run within one step")
        self._action(g, "Randomise seed", m.randomize_seed, "Ctrl+R")
        t = bar.addMenu("&Train")
        self.a_train = self._action(t, "Train a model…", self.open_train, "Ctrl+T",
                                    "Train a model on your images or a built-in set, then generate with it here")
        v = bar.addMenu("&View")
        v.addAction(self.controls_dock.toggleViewAction())
        v.addAction(self.history_dock.toggleViewAction())
        self.a_compact = self._action(v, "Compact layout", self.set_compact, None,
                                      "History as a tab beside the controls, leaving more room for the pictures")
        self.a_compact.setCheckable(True)
        self._action(v, "Full screen", self.preview.show_full_screen, "F11", "Show the chosen result on the whole screen")
        self._action(v, "PNG info of the result", self.result_info, "Ctrl+I", "The settings stored in the chosen result")
        self._key_actions()
        h = bar.addMenu("&Help")
        self._action(h, "Help and models…", self.open_help, "F1")
        self._action(h, "Open log folder", self.open_log_folder, None,
                     "The folder of the app's log file (what it did and every error), for a bug report")

    def open_log_folder(self) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        from desktop.runtime.logs import log_dir

        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _key_actions(self) -> None:
        """Single keys that work wherever the pointer is, without a click first (a text box that has
        the focus still gets its letters: Qt gives typing precedence over these shortcuts)."""
        keys = [("B", lambda: self._tool_shortcut("brush")), ("E", lambda: self._tool_shortcut("eraser")),
                ("G", lambda: self._tool_shortcut("bucket")),
                ("[", lambda: self.canvas.view.set_radius(self.canvas.view.radius / 1.25)),
                ("]", lambda: self.canvas.view.set_radius(self.canvas.view.radius * 1.25))]
        self.key_actions = {}
        for key, slot in keys:
            a = QAction(self)
            a.setShortcut(QKeySequence(key))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.triggered.connect(slot)
            self.addAction(a)
            self.key_actions[key] = a

    def set_compact(self, on: bool) -> None:
        """History shares the left dock with the controls as a tab (on), or has its own column."""
        self.a_compact.setChecked(on)
        if on:
            self.tabifyDockWidget(self.controls_dock, self.history_dock)
            self.controls_dock.raise_()
        else:
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.history_dock)
            self.resizeDocks([self.history_dock], [190], Qt.Orientation.Horizontal)

    def _tool_shortcut(self, name: str) -> None:
        mode = self.canvas.view.mode
        key = {"inpaint": {"brush": "brush", "eraser": "eraser"},
               "semantic": {"brush": "labels", "eraser": "label_eraser", "bucket": "bucket"}}.get(mode, {}).get(name)
        if key:
            self.canvas.set_tool(key)

    def _update_undo(self) -> None:
        self.a_undo.setEnabled(self.model.canvas.can_undo())
        self.a_redo.setEnabled(self.model.canvas.can_redo())

    # --- reactions ------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        self.banner.show_error(text)
        self.statusBar().showMessage("Error — see the message at the top", 8000)

    def on_bundle(self) -> None:
        m = self.model
        if m.caps is None:
            self.provider_label.setText("no model")
            if not m.models:
                self.preview.view.set_placeholder("No model found — add one with “Add model…” (a folder with studio.json).")
        else:
            self.banner.hide()
            self.provider_label.setText(f"{m.caps.name} · {m.provider}")
            self.preview.view.set_placeholder("Press Generate (Ctrl+Enter): each denoising step appears here")
            self.setWindowTitle(f"Diffusion Studio — {m.caps.name}")

    def on_running(self, running: bool) -> None:
        self.a_generate.setEnabled(not running or self.model.live_run)
        self.a_cancel.setEnabled(running)
        if running:
            self.banner.hide()

    # --- dialogs --------------------------------------------------------------------------
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.model.settings, self)
        accepted = dialog.exec()
        dialog.deleteLater()  # a modal dialog parented to the window would otherwise live as long as it
        if accepted:
            provider_changed = dialog.apply()
            apply_theme(self.model.settings["theme"])
            self.model.save_settings()
            if provider_changed and self.model.entry is not None and not self.model.running:
                self.model.select_model(self.model.entry.path)

    def open_help(self) -> None:
        dialog = HelpDialog(self.model, self)
        dialog.exec()
        dialog.deleteLater()

    def open_train(self) -> None:
        from .widgets.train_window import TrainWindow

        if self.train_window is None:
            self.train_window = TrainWindow(self.model, parent=self)
        self.train_window.show()
        self.train_window.raise_()
        self.train_window.activateWindow()

    def open_recipe(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open recipe (a PNG with its settings)", str(self.model.settings.output_dir()),
                                              "PNG images (*.png)")
        if path:
            self.show_png_info(path)

    def show_png_info(self, path) -> PngInfoDialog | None:
        dialog = PngInfoDialog(self.model, Path(path), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def result_info(self) -> None:
        path = self.model.selected_path()
        if path is not None:
            self.show_png_info(path)

    def open_models(self) -> ModelManager:
        dialog = ModelManager(self.model, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    # --- drag and drop onto the whole window ------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = url.toLocalFile()
                if Path(path).is_dir():
                    self.model.add_model(path)
                else:
                    self.canvas.on_file_dropped(path)
                event.acceptProposedAction()
                return

    # --- layout persistence ---------------------------------------------------------------
    def restore_layout(self) -> bool:
        """The stored window layout; False when there is none (or it is unreadable)."""
        s = self.model.settings
        try:
            if s["window_geometry"]:
                self.restoreGeometry(QByteArray.fromBase64(s["window_geometry"].encode()))
            if s["window_state"]:
                restored = self.restoreState(QByteArray.fromBase64(s["window_state"].encode()))
                self.a_compact.setChecked(self.history_dock in self.tabifiedDockWidgets(self.controls_dock))
                return bool(restored)
        except Exception:  # noqa: BLE001 - a bad stored layout falls back to the default one
            pass
        return False

    def save_layout(self) -> None:
        s = self.model.settings
        s["window_geometry"] = bytes(self.saveGeometry().toBase64()).decode()
        s["window_state"] = bytes(self.saveState().toBase64()).decode()
        self.model.save_settings()

    def closeEvent(self, event) -> None:
        if self.train_window is not None and not self.train_window.confirm_app_close():
            event.ignore()   # the user chose to stay while a model trains
            return
        if self.model.running:
            self.model.cancel()
            self.model.wait(10000)
        self.save_layout()
        super().closeEvent(event)

    def load_default_model(self) -> None:
        """Find the models and open the default one (the last used, else the first bundled)."""
        self.model.refresh_models()
        path = self.model.default_model_path()
        if path is not None:
            self.model.select_model(path)
        self.on_bundle()
