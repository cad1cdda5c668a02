"""The left panel: model picker and generation controls, bound to StudioModel.params.

Each control writes through `model.set_param` and is refreshed from `paramsChanged`; controls a
model cannot use are hidden (no prompt for a class model, no class picker for a text model...).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout,
                               QLabel, QMenu, QPlainTextEdit, QPushButton, QSizePolicy, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from ..caps import SAMPLER_LABELS, describe
from ..model import MAX_SEED, SAMPLERS

ANY_CLASS = "any (as the prompt says)"


class PromptEdit(QPlainTextEdit):
    """Multi-line prompt; Ctrl+Enter is left to the window's Generate shortcut."""

    def __init__(self, placeholder: str, lines: int, parent=None):
        super().__init__(parent)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)
        h = QFontMetrics(self.font()).lineSpacing() * lines + 14
        self.setFixedHeight(h)

    def keyPressEvent(self, event):
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            event.ignore()
            return
        super().keyPressEvent(event)


class ModelPicker(QWidget):
    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.combo = QComboBox()
        self.combo.setToolTip("The model that generates: bundled models and the ones you added")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(12)
        self.combo.activated.connect(self.on_activated)
        self.add_button = QPushButton("Add model…")
        self.add_button.setToolTip("Choose a model bundle folder (studio.json) or an SD-style ONNX folder; it is checked, then copied into your models folder")
        self.add_button.clicked.connect(self.add_model)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setToolTip("What this model accepts, and the execution provider it runs on")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.add_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.info)
        model.modelsChanged.connect(self.refresh)
        model.bundleChanged.connect(self.refresh)
        model.runningChanged.connect(lambda r: self.setEnabled(not r))
        self.refresh()

    def refresh(self) -> None:
        m = self.model
        self.combo.blockSignals(True)
        self.combo.clear()
        for e in m.models:
            label = e.name + ("" if e.source == "bundled" else "  (yours)")
            if e.caps is None:
                label += "  — cannot be used"
            self.combo.addItem(label, str(e.path))
            self.combo.setItemData(self.combo.count() - 1, e.error or (describe(e.caps) if e.caps else ""), Qt.ItemDataRole.ToolTipRole)
        if not m.models:
            self.combo.addItem("No model found — add one…", None)
        if m.entry is not None:
            i = self.combo.findData(str(m.entry.path))
            if i >= 0:
                self.combo.setCurrentIndex(i)
        self.combo.blockSignals(False)
        if m.caps is None:
            self.info.setText("<i>No model loaded.</i> Use <b>Add model…</b> to choose a model folder." if not m.models
                              else "<i>Choose a model.</i>")
        else:
            self.info.setText(f"{describe(m.caps)}<br><span style='color: gray'>running on</span> <b>{m.provider or '?'}</b>")

    def on_activated(self, index: int) -> None:
        path = self.combo.itemData(index)
        if path is None:
            self.add_model()
            return
        if self.model.entry is None or str(self.model.entry.path) != path:
            if not self.model.select_model(path):
                self.refresh()

    def add_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (with studio.json or model_index.json)")
        if folder:
            self.model.add_model(folder)


class ControlsPanel(QWidget):
    generateRequested = Signal()
    cancelRequested = Signal()

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.picker = ModelPicker(model)

        self.prompt = PromptEdit("Describe the image…", 3)
        self.prompt.setToolTip("What the image should show (Ctrl+Enter generates)")
        self.prompt.textChanged.connect(lambda: model.set_param("prompt", self.prompt.toPlainText()))
        self.recent = QToolButton()
        self.recent.setText("Recent ▾")
        self.recent.setToolTip("Prompts you used recently")
        self.recent.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self)
        self.recent_menu.aboutToShow.connect(self.fill_recent)
        self.recent.setMenu(self.recent_menu)
        self.negative = PromptEdit("What to avoid (optional)", 2)
        self.negative.setToolTip("Negative prompt: guidance steers away from this text")
        self.negative.textChanged.connect(lambda: model.set_param("negative_prompt", self.negative.toPlainText()))

        self.class_combo = QComboBox()
        self.class_combo.setToolTip("Which class of image the model makes")
        self.class_combo.currentIndexChanged.connect(lambda i: i >= 0 and model.set_param("class_name", self.class_combo.itemData(i)))

        self.sampler = QComboBox()
        for s in SAMPLERS:
            self.sampler.addItem(SAMPLER_LABELS.get(s, s), s)
        self.sampler.setToolTip("The sampler: DDPM is the lecture's ancestral sampler (needs many steps); DDIM and DPM-Solver++ reach good images in 10-30 steps")
        self.sampler.currentIndexChanged.connect(lambda i: model.set_param("sampler", self.sampler.itemData(i)))

        self.steps = QSpinBox()
        self.steps.setRange(1, 1000)
        self.steps.setToolTip("Number of denoising steps (network evaluations per image, twice with guidance)")
        self.steps.valueChanged.connect(lambda v: model.set_param("steps", v))

        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(2)
        self.guidance.setToolTip("Classifier-free guidance scale s: ε = ε_uncond + s·(ε_cond − ε_uncond); 1 = no guidance, higher follows the condition more closely")
        self.guidance.valueChanged.connect(lambda v: model.set_param("guidance", float(v)))

        self.seed = QSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed.setToolTip("Seed of the starting noise x_T; the same seed and settings make the same image (image i of a batch uses seed + i)")
        self.seed.valueChanged.connect(lambda v: model.set_param("seed", v))
        self.dice = QToolButton()
        self.dice.setText("Random")
        self.dice.setToolTip("Pick a random seed now")
        self.dice.clicked.connect(model.randomize_seed)
        self.lock = QCheckBox("Lock")
        self.lock.setToolTip("Keep this seed for the next runs; unlocked, every Generate picks a new random seed")
        self.lock.toggled.connect(lambda on: model.set_param("seed_locked", on))

        self.batch = QSpinBox()
        self.batch.setRange(1, 16)
        self.batch.setToolTip("How many images one Generate makes")
        self.batch.valueChanged.connect(lambda v: model.set_param("batch_size", v))

        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, name in ((self.width_box, "width"), (self.height_box, "height")):
            box.setRange(64, 2048)
            box.setSingleStep(64)
            box.setToolTip(f"Image {name} in pixels (a multiple of 8)")
            box.valueChanged.connect(lambda v, n=name: model.set_param(n, v))
        self.size_fixed = QLabel()
        self.size_fixed.setToolTip("This model makes images of one size only")

        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setToolTip("img2img strength: how much noise is added to the init image (0 keeps it, 1 ignores it)")
        self.strength.valueChanged.connect(lambda v: model.set_param("strength", float(v)))

        self.seamless = QCheckBox("Blend seams")
        self.seamless.setToolTip("Inpainting: blend the regenerated region into the kept pixels so the mask's "
                                 "border leaves no seam (Poisson blending); off keeps the raw composite")
        self.seamless.toggled.connect(lambda v: model.set_param("seamless", bool(v)))

        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(34)
        self.generate_button.clicked.connect(self.generateRequested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run (Esc); it stops within one step and nothing is saved")
        self.cancel_button.setMinimumHeight(34)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.cancel_button.setEnabled(False)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        prompt_head = QHBoxLayout()
        self.prompt_label = QLabel("Prompt")
        prompt_head.addWidget(self.prompt_label)
        prompt_head.addStretch(1)
        prompt_head.addWidget(self.recent)
        self.negative_label = QLabel("Negative prompt")
        self.class_label = QLabel("Class")
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        seed_row.addWidget(self.lock)
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_box)
        self.times = QLabel("×")
        size_row.addWidget(self.times)
        size_row.addWidget(self.height_box)
        size_row.addWidget(self.size_fixed, 1)
        self.strength_label = QLabel("Strength")
        form.addRow(self.class_label, self.class_combo)
        form.addRow("Sampler", self.sampler)
        form.addRow("Steps", self.steps)
        self.guidance_label = QLabel("Guidance")
        form.addRow(self.guidance_label, self.guidance)
        form.addRow("Seed", seed_row)
        form.addRow("Batch", self.batch)
        form.addRow("Size", size_row)
        form.addRow(self.strength_label, self.strength)
        form.addRow("", self.seamless)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>Model</b>"))
        lay.addWidget(self.picker)
        lay.addWidget(line)
        lay.addLayout(prompt_head)
        lay.addWidget(self.prompt)
        lay.addWidget(self.negative_label)
        lay.addWidget(self.negative)
        lay.addLayout(form)
        lay.addStretch(1)
        lay.addLayout(buttons)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

        model.paramsChanged.connect(self.refresh)
        model.bundleChanged.connect(self.on_bundle)
        model.runningChanged.connect(self.on_running)
        model.canvas.changed.connect(self.update_visibility)
        self.on_bundle()

    def fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.model.settings["recent_prompts"]
        if not recent:
            self.recent_menu.addAction("(no recent prompts)").setEnabled(False)
        for text in recent:
            label = text if len(text) < 70 else text[:67] + "…"
            self.recent_menu.addAction(label.replace("\n", " "), lambda t=text: self.prompt.setPlainText(t))

    def on_bundle(self) -> None:
        c = self.model.caps
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        if c and c.class_optional:
            self.class_combo.addItem(ANY_CLASS, None)
        for name in (c.class_names or []) if c else []:
            self.class_combo.addItem(name, name)
        self.class_combo.blockSignals(False)
        self.update_visibility()
        self.refresh("")

    def update_visibility(self) -> None:
        c = self.model.caps
        text = bool(c and c.text)
        for w in (self.prompt_label, self.prompt, self.recent, self.negative_label, self.negative):
            w.setVisible(text or c is None)
        has_class = bool(c and c.class_names)
        self.class_label.setVisible(has_class)
        self.class_combo.setVisible(has_class)
        guided = bool(c and c.guided)
        self.guidance_label.setVisible(guided or c is None)
        self.guidance.setVisible(guided or c is None)
        adjustable = bool(c and c.size_adjustable)
        self.width_box.setVisible(adjustable)
        self.height_box.setVisible(adjustable)
        self.times.setVisible(adjustable)
        self.size_fixed.setVisible(not adjustable)
        self.size_fixed.setText(f"{c.width} × {c.height} (fixed)" if c else "—")
        img2img = self.model.uses_strength()
        self.strength_label.setVisible(img2img)
        self.strength.setVisible(img2img)
        self.seamless.setVisible(self.model.inpaints())
        self.generate_button.setEnabled(c is not None and not self.model.running)

    def refresh(self, name: str = "") -> None:
        p = self.model.params
        widgets = {
            "prompt": lambda: self.prompt.toPlainText() != p.prompt and self.prompt.setPlainText(p.prompt),
            "negative_prompt": lambda: self.negative.toPlainText() != p.negative_prompt and self.negative.setPlainText(p.negative_prompt),
            "class_name": lambda: self.class_combo.setCurrentIndex(max(0, self.class_combo.findData(p.class_name))),
            "sampler": lambda: self.sampler.setCurrentIndex(max(0, self.sampler.findData(p.sampler))),
            "steps": lambda: self.steps.setValue(p.steps),
            "guidance": lambda: self.guidance.setValue(p.guidance),
            "seed": lambda: self.seed.setValue(p.seed),
            "seed_locked": lambda: self.lock.setChecked(p.seed_locked),
            "batch_size": lambda: self.batch.setValue(p.batch_size),
            "width": lambda: self.width_box.setValue(p.width),
            "height": lambda: self.height_box.setValue(p.height),
            "strength": lambda: self.strength.setValue(p.strength),
            "seamless": lambda: self.seamless.setChecked(p.seamless),
        }
        for key, apply in widgets.items():
            if name in ("", key):
                apply()  # the widget's own change signal then calls set_param with an equal value: a no-op

    def on_running(self, running: bool) -> None:
        self.generate_button.setEnabled(not running and self.model.caps is not None)
        self.generate_button.setText("Generating…" if running else "Generate")
        self.cancel_button.setEnabled(running)
