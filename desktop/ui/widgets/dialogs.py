"""Settings and Help dialogs."""
from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                               QPushButton, QSpinBox, QTabWidget, QTextBrowser, QVBoxLayout)

from ..caps import describe_html
from ..settings import PROVIDERS

SHORTCUTS = (
    ("Ctrl+Enter", "Generate"),
    ("Esc", "Cancel the run (stops within one step)"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo painting"),
    ("[ and ]  or the mouse wheel", "Smaller / bigger brush"),
    ("B / E / G", "Brush / eraser / bucket fill"),
    ("Ctrl+wheel, + / −, 0", "Zoom, fit"),
    ("Middle button or Space+drag", "Pan"),
    ("Ctrl+O", "Open an image onto the canvas"),
    ("Ctrl+R", "Randomise the seed"),
    ("Ctrl+,", "Settings"),
    ("F1", "This help"),
)


class SettingsDialog(QDialog):
    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.output = QLineEdit(str(settings.output_dir()))
        self.output.setToolTip("Where generated PNGs are saved (each with its recipe)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.addWidget(self.output, 1)
        row.addWidget(browse)
        self.provider = QComboBox()
        self.provider.addItems(PROVIDERS)
        self.provider.setCurrentText(settings["provider"])
        self.provider.setToolTip("ONNX Runtime execution provider; auto tries CUDA, DirectML, CoreML then CPU. Applies when a model is (re)loaded")
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 100)
        self.preview_every.setValue(int(settings["preview_every"]))
        self.preview_every.setSuffix(" step(s)")
        self.preview_every.setToolTip("Refresh the live preview every N steps (the trajectory keeps every step)")
        form = QFormLayout()
        form.addRow("Output folder", row)
        form.addRow("Execution provider", self.provider)
        form.addRow("Preview every", self.preview_every)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)
        self.resize(520, self.sizeHint().height())

    def browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output.text())
        if folder:
            self.output.setText(folder)

    def apply(self) -> bool:
        """Write the dialog's values into settings; True if the provider changed."""
        changed = self.settings["provider"] != self.provider.currentText()
        self.settings["output_dir"] = self.output.text().strip()
        self.settings["provider"] = self.provider.currentText()
        self.settings["preview_every"] = int(self.preview_every.value())
        return changed


PRIVACY = ("Diffusion Studio never uses the network. ONNX Runtime's telemetry is switched off: on Linux and "
           "macOS by ORT_DISABLE_TELEMETRY=1 (proven on Linux by a test that sees no name lookup and no "
           "connection), on Windows by turning its ETW events off, which we could not test; what Windows itself "
           "reports is set in its own privacy settings.")


class HelpDialog(QDialog):
    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Diffusion Studio — Help")
        tabs = QTabWidget()
        keys = QTextBrowser()
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        keys.setHtml(
            "<h3>Keyboard shortcuts</h3>"
            f"<table cellspacing='6'>{rows}</table>"
            "<h3>How it works</h3><p>Generation starts from pure noise x_T (fixed by the seed) and "
            "removes a little noise per step; the preview shows the model's guess of the clean image at each step. "
            "Paint on the canvas where the model should generate (inpainting) or which region is what (label maps). "
            "Drop a PNG made here on the canvas to restore its settings.</p>"
            f"<h3>Privacy</h3><p>{PRIVACY}</p>"
        )
        tabs.addTab(keys, "Shortcuts")
        models = QTextBrowser()
        parts = []
        for e in model.models:
            if e.caps is not None:
                provider = model.provider if model.entry is not None and e.path == model.entry.path else ""
                parts.append(f"<h3>{e.caps.name}</h3>{describe_html(e.caps, e.path, provider)}")
            else:
                parts.append(f"<h3>{e.path.name}</h3><p style='color: #c33'>{e.error}</p>")
        models.setHtml("".join(parts) or "<p>No models yet. Use <b>Add model…</b> to add a model bundle folder.</p>")
        tabs.addTab(models, "Models")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(tabs)
        lay.addWidget(buttons)
        self.resize(620, 520)
