"""Settings, Help and PNG info dialogs."""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPlainTextEdit, QPushButton, QSpinBox, QTabWidget, QTextBrowser, QVBoxLayout)

from .. import images
from ..caps import SAMPLER_LABELS, describe_html
from ..settings import PROVIDERS
from ..theme import THEME_LABELS
from ..worker import friendly_error
from .imageview import ImageView

SHORTCUTS = (
    ("Ctrl+Enter", "Generate"),
    ("Esc", "Cancel the run (stops within one step)"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo painting"),
    ("[ and ]  or the mouse wheel", "Smaller / bigger brush"),
    ("B / E / G", "Brush / eraser / bucket fill"),
    ("Ctrl+wheel, + / −, 0", "Zoom, fit"),
    ("Middle button or Space+drag", "Pan"),
    ("Ctrl+O", "Open an image onto the canvas"),
    ("Ctrl+Shift+O", "Open a recipe (the settings stored in a PNG)"),
    ("Ctrl+I", "PNG info of the chosen result"),
    ("F11", "The chosen result on the whole screen"),
    ("Ctrl+M", "Manage models"),
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
        self.preview_every.setToolTip("Refresh the live preview every N steps (a fast model's steps, a few times "
                                      "a second); the trajectory keeps every step")
        self.theme = QComboBox()
        for key, label in THEME_LABELS.items():
            self.theme.addItem(label, key)
        self.theme.setCurrentIndex(max(0, self.theme.findData(settings["theme"])))
        self.theme.setToolTip("Light or dark windows; “Follow the system” switches with your desktop")
        form = QFormLayout()
        form.addRow("Output folder", row)
        form.addRow("Theme", self.theme)
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
        self.settings["theme"] = self.theme.currentData()
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


def recipe_rows(recipe: dict) -> list[tuple[str, str]]:
    """A recipe (pngmeta's dict) as (what, value) rows in plain words."""
    r, model = recipe.get("request") or {}, recipe.get("model") or {}
    rows = [("Model", str(model.get("name") or r.get("model") or "unknown"))]
    if model.get("hash"):
        rows.append(("Model hash", str(model["hash"])[:10]))
    for key, label in (("prompt", "Prompt"), ("negative_prompt", "Negative prompt"), ("class_name", "Class")):
        if r.get(key) not in (None, ""):
            rows.append((label, str(r[key])))
    sampler = SAMPLER_LABELS.get(r.get("sampler"), r.get("sampler") or "the model's default")
    rows += [("Sampler", f"{sampler}, {r.get('steps', 'default')} steps" + (f", {r['spacing']} spacing" if r.get("spacing") else "")),
             ("Guidance", str(r.get("guidance", "default"))), ("Seed", str(r.get("seed", "?"))),
             ("Size", f"{r.get('width', '?')} × {r.get('height', '?')}")]
    inputs = [name for key, name in (("init_image", "start image"), ("mask", "inpainting mask"), ("labels", "label map"))
              if r.get(key) is not None]
    if inputs:
        rows.append(("Painted inputs", ", ".join(inputs)))
    if r.get("init_image") is not None and r.get("mask") is None:
        rows.append(("Strength", str(r.get("strength"))))
    fork = r.get("fork")
    if isinstance(fork, dict):
        parent = (fork.get("parent") or {})
        rows.append(("Fork", f"of seed {parent.get('seed', '?')} at step {fork.get('step', '?')}"))
    if recipe.get("provider"):
        rows.append(("Made on", str(recipe["provider"])))
    if recipe.get("notes"):
        rows.append(("Not applied here", "; ".join(recipe["notes"])))
    return rows


class PngInfoDialog(QDialog):
    """What a PNG's recipe says, with Apply and Apply except seed (File ▸ Open recipe…)."""

    def __init__(self, model, path: Path, parent=None):
        super().__init__(parent)
        self.model, self.path = model, Path(path)
        self.setWindowTitle(f"PNG info — {self.path.name}")
        self.recipe, problem = None, ""
        try:
            from desktop.runtime.pngmeta import read_recipe_dict

            self.recipe = read_recipe_dict(self.path)
        except Exception as exc:  # noqa: BLE001 - shown in the dialog in plain words
            problem = friendly_error(exc)
        self.view = ImageView()
        self.view.setMinimumSize(180, 180)
        try:
            self.view.set_image(images.qimage_from_array(images.load_image(self.path)))
        except Exception:  # noqa: BLE001 - no picture: the recipe (or the problem) still shows
            self.view.set_placeholder("The picture cannot be shown.")
        self.table = QLabel(self.rows_html() if self.recipe else f"<p>{html.escape(problem)}</p>")
        self.table.setWordWrap(True)
        self.table.setMinimumWidth(280)
        self.raw = QPlainTextEdit(self.parameters_text())
        self.raw.setReadOnly(True)
        self.raw.setToolTip("The recipe as other tools (AUTOMATIC1111 and friends) read it")
        self.raw.setMaximumHeight(90)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.apply_button = self.buttons.addButton("Apply", QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_button.setToolTip("Set every control (and the canvas) from this recipe; the seed gets locked")
        self.apply_seedless = self.buttons.addButton("Apply except seed", QDialogButtonBox.ButtonRole.AcceptRole)
        self.apply_seedless.setToolTip("Set every control from this recipe but keep your current seed")
        for b in (self.apply_button, self.apply_seedless):
            b.setEnabled(self.recipe is not None)
        self.apply_button.clicked.connect(lambda: self.apply(keep_seed=False))
        self.apply_seedless.clicked.connect(lambda: self.apply(keep_seed=True))
        self.buttons.rejected.connect(self.reject)
        top = QHBoxLayout()
        top.addWidget(self.view, 1)
        top.addWidget(self.table, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top, 1)
        lay.addWidget(self.raw)
        lay.addWidget(self.buttons)
        self.resize(640, 420)

    def rows_html(self) -> str:
        body = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in recipe_rows(self.recipe))
        return f"<table cellspacing='4'>{body}</table>"

    def parameters_text(self) -> str:
        try:
            from PIL import Image

            with Image.open(self.path) as im:
                return str((getattr(im, "text", {}) or {}).get("parameters", ""))
        except Exception:  # noqa: BLE001
            return ""

    def apply(self, *, keep_seed: bool) -> None:
        if self.model.restore_png(self.path, keep_seed=keep_seed):
            self.accept()
