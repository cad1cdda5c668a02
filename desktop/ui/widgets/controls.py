"""The left panel: model picker and generation controls, bound to StudioModel.params.

Each control is bound to one field of `model.params` with `bind.bind` (both directions); controls a
model cannot use are hidden (no prompt for a class model, no class picker for a text model...).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics, QValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout,
                               QLabel, QMenu, QPlainTextEdit, QPushButton, QSizePolicy, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from diffusion.samplers import NEEDS_RNG, SAMPLER_SPECS

from ..bind import bind
from ..caps import describe
from ..live import LivePainter
from ..model import MAX_SEED

ANY_CLASS = "any (as the prompt says)"


def row_of(items) -> QHBoxLayout:
    """A horizontal row of widgets; an item `(widget, stretch)` gets that stretch."""
    row = QHBoxLayout()
    for item in items:
        widget, stretch = item if isinstance(item, tuple) else (item, 0)
        row.addWidget(widget, stretch)
    return row


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


class SteppedSpinBox(QSpinBox):
    """A spin box whose value is always a multiple of its single step (a model's size step): a typed
    value in between is rounded to the nearest one when editing ends."""

    def validate(self, text: str, pos: int):
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and int(text.strip()) % self.singleStep():
            state = QValidator.State.Intermediate
        return state, text, pos

    def fixup(self, text: str) -> str:
        try:
            value = int(text.strip())
        except ValueError:
            return text
        step = self.singleStep()
        snapped = min(max(self.minimum(), int(round(value / step)) * step), self.maximum() // step * step)
        return self.textFromValue(snapped)


def spin_box(lo, hi, tip: str, *, step=1, decimals: int | None = None) -> QSpinBox | QDoubleSpinBox:
    """A spin box; `decimals` makes it a QDoubleSpinBox."""
    box = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setToolTip(tip)
    return box


TIPS = {  # plain words first, the math after
    "prompt": "Describe the picture you want in a few words (Ctrl+Enter generates)",
    "negative": "Words for what you do not want; guidance steers away from them (optional)",
    "class": "Which kind of picture the model draws",
    "sampler": "How the noise is removed step by step. DPM++ 2M (Karras), UniPC, Euler and DDIM give good pictures "
               "in 10–30 steps; DDPM needs hundreds; SDE and 'a' (ancestral) samplers add fresh noise every step "
               "for livelier detail; LCM only suits models distilled for it",
    "steps": "How many denoising steps: more is slower, often cleaner. Each step is one network call "
             "(two with guidance)",
    "guidance": "How strongly the picture follows the prompt, class or map: 1 = no extra push, higher = more "
                "literal (too high looks harsh). Classifier-free guidance: ε = ε_uncond + s·(ε_cond − ε_uncond)",
    "seed": "The number that picks the starting noise: the same seed and settings give the same picture. "
            "Image i of a batch uses seed + i",
    "lock": "Keep this seed for the next runs; unlocked, every Generate picks a new random seed",
    "batch": "How many pictures one Generate makes (each with its own seed)",
    "size": "Picture {name} in pixels (steps of {step})",
    "size_fixed": "This model makes pictures of one size only",
    "strength": "How much the start image may change: 0 keeps it, 1 ignores it (img2img: the noise level "
                "the run starts from)",
    "seamless": "Inpainting: blend the new part into the kept pixels so the mask's edge leaves no seam "
                "(Poisson blending); off keeps the raw composite",
}


class ForkBanner(QFrame):
    """Shown in fork mode: what is being forked, what a fork may change, and a way out."""

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.setObjectName("forkBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.stop = QPushButton("Stop forking")
        self.stop.setToolTip("Back to ordinary runs from pure noise")
        self.stop.clicked.connect(model.stop_fork)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.text)
        lay.addWidget(self.stop, 0, Qt.AlignmentFlag.AlignRight)
        model.forkChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        fork = self.model.fork
        self.setVisible(fork is not None)
        if fork is None:
            return
        parent = fork["parent"]
        what = f"“{parent['prompt']}”" if parent.get("prompt") else f"seed {parent.get('seed')}"
        note = ("" if parent.get("sampler") in NEEDS_RNG else
                " This sampler adds no noise of its own, so a new seed alone changes nothing after the fork.")
        self.text.setText(f"<b>Forking</b> {what} at step {fork['step']} of {parent.get('steps')}: change the seed, "
                          f"prompt, guidance, class or map, then Generate.{note}")


class ControlsPanel(QWidget):
    """Model picker, prompt and sampling controls; each control is bound to one field of the model's
    params (bind.py), and controls the model cannot use are hidden."""

    generateRequested = Signal()
    cancelRequested = Signal()

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.painter = LivePainter(model, self)
        self.picker = ModelPicker(model)
        self._make_prompts()
        self._make_settings()
        self._make_buttons()
        self.bindings = {name: bind(model, name, widget) for name, widget in (
            ("prompt", self.prompt), ("negative_prompt", self.negative), ("class_name", self.class_combo),
            ("sampler", self.sampler), ("steps", self.steps), ("guidance", self.guidance), ("seed", self.seed),
            ("seed_locked", self.lock), ("batch_size", self.batch), ("width", self.width_box),
            ("height", self.height_box), ("strength", self.strength), ("seamless", self.seamless))}
        self._layout()
        model.bundleChanged.connect(self.on_bundle)
        model.runningChanged.connect(self.on_running)
        model.canvas.changed.connect(self.update_visibility)
        model.forkChanged.connect(self.update_visibility)
        model.paramsChanged.connect(lambda name: name in ("width", "height", "batch_size", "guidance")
                                    and self.update_size_controls())
        self.on_bundle()

    def _make_prompts(self) -> None:
        self.prompt = PromptEdit("Describe the image…", 3)
        self.prompt.setToolTip(TIPS["prompt"])
        self.recent = QToolButton()
        self.recent.setText("Recent ▾")
        self.recent.setToolTip("Prompts you used recently")
        self.recent.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self)
        self.recent_menu.aboutToShow.connect(self.fill_recent)
        self.recent.setMenu(self.recent_menu)
        self.negative = PromptEdit("What to avoid (optional)", 2)
        self.negative.setToolTip(TIPS["negative"])

    def _make_settings(self) -> None:
        self.class_combo = QComboBox()
        self.class_combo.setToolTip(TIPS["class"])
        self.sampler = QComboBox()
        for spec in SAMPLER_SPECS:  # the one sampler table: names, labels, tips
            self.sampler.addItem(spec.label, spec.name)
            self.sampler.setItemData(self.sampler.count() - 1, spec.tip, Qt.ItemDataRole.ToolTipRole)
        self.sampler.setToolTip(TIPS["sampler"])
        self.steps = spin_box(1, 1000, TIPS["steps"])
        self.guidance = spin_box(0.0, 30.0, TIPS["guidance"], step=0.5, decimals=2)
        self.seed = spin_box(0, MAX_SEED, TIPS["seed"])
        self.dice = QToolButton()
        self.dice.setText("Random")
        self.dice.setToolTip("Pick a random seed now (Ctrl+R)")
        self.dice.clicked.connect(self.model.randomize_seed)
        self.lock = QCheckBox("Lock")
        self.lock.setToolTip(TIPS["lock"])
        self.batch = spin_box(1, 16, TIPS["batch"])
        self.width_box, self.height_box = SteppedSpinBox(), SteppedSpinBox()
        for box, name in ((self.width_box, "width"), (self.height_box, "height")):
            box.setRange(8, 4096)
            box.setSingleStep(8)
            box.setToolTip(TIPS["size"].format(name=name, step=8))
        self.size_fixed = QLabel()
        self.size_fixed.setToolTip(TIPS["size_fixed"])
        self.size_note = QLabel()
        self.size_note.setWordWrap(True)
        self.size_note.setToolTip("An estimate of the memory this size and batch need, from the model's shape")
        self.strength = spin_box(0.0, 1.0, TIPS["strength"], step=0.05, decimals=2)
        self.seamless = QCheckBox("Blend seams")
        self.seamless.setToolTip(TIPS["seamless"])

    def _make_buttons(self) -> None:
        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip("Make the picture (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(34)
        self.generate_button.clicked.connect(self.generateRequested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run (Esc); it stops within one step and nothing is saved")
        self.cancel_button.setMinimumHeight(34)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.cancel_button.setEnabled(False)
        self.live = QCheckBox("Live")
        self.live.setToolTip("Live painting: the picture regenerates on its own a moment after you paint or change "
                             "a setting (best with a fast model). Live pictures are not saved until you press "
                             "Generate or Save as…")
        self.live.setChecked(self.painter.enabled)
        self.live.toggled.connect(self.painter.set_enabled)

    def _layout(self) -> None:
        prompt_head = QHBoxLayout()
        self.prompt_label = QLabel("Prompt")
        prompt_head.addWidget(self.prompt_label)
        prompt_head.addStretch(1)
        prompt_head.addWidget(self.recent)
        self.negative_label = QLabel("Negative prompt")
        self.class_label = QLabel("Class")
        self.guidance_label = QLabel("Guidance")
        self.strength_label = QLabel("Strength")
        self.times = QLabel("×")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label, fields in ((self.class_label, [self.class_combo]), ("Sampler", [self.sampler]),
                              ("Steps", [self.steps]), (self.guidance_label, [self.guidance]),
                              ("Seed", [(self.seed, 1), self.dice, self.lock]), ("Batch", [self.batch]),
                              ("Size", [self.width_box, self.times, self.height_box, (self.size_fixed, 1)]),
                              ("", [self.size_note]), (self.strength_label, [self.strength]), ("", [self.seamless])):
            form.addRow(label, fields[0] if len(fields) == 1 else row_of(fields))
        self.buttons = QWidget()   # the window puts these below the scrolling controls
        buttons = QHBoxLayout(self.buttons)
        buttons.setContentsMargins(9, 0, 9, 0)
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        buttons.addWidget(self.live)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        self.fork_banner = ForkBanner(self.model)
        lay = QVBoxLayout(self)
        lay.addWidget(self.fork_banner)
        lay.addWidget(QLabel("<b>Model</b>"))
        lay.addWidget(self.picker)
        lay.addWidget(line)
        lay.addLayout(prompt_head)
        lay.addWidget(self.prompt)
        lay.addWidget(self.negative_label)
        lay.addWidget(self.negative)
        lay.addLayout(form)
        lay.addStretch(1)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

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
        self.bindings["class_name"].update_widget()
        self.steps.setMaximum(c.max_steps if c else 1000)  # a model of T=100 refuses 419 steps
        self.update_visibility()

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
        self.update_size_controls()
        img2img = self.model.uses_strength()
        self.strength_label.setVisible(img2img)
        self.strength.setVisible(img2img)
        for w in (self.sampler, self.steps, self.width_box, self.height_box, self.strength):
            w.setEnabled(self.model.fork is None)   # a fork keeps its parent's grid, size and strength
        self.seamless.setVisible(self.model.inpaints())
        self.generate_button.setEnabled(c is not None and (not self.model.running or self.model.live_run))

    def update_size_controls(self) -> None:
        """Width and height in the model's steps where its U-Net takes other sizes, else its one size;
        and what the size needs in memory."""
        sizes, c = self.model.sizes, self.model.caps
        flexible = bool(sizes and sizes.flexible)
        for w in (self.width_box, self.times, self.height_box):
            w.setVisible(flexible)
        self.size_fixed.setVisible(not flexible)
        self.size_fixed.setText(f"{c.width} × {c.height} (fixed)" if c else "—")
        if flexible:
            for box, name in ((self.width_box, "width"), (self.height_box, "height")):
                box.blockSignals(True)
                box.setRange(sizes.minimum, sizes.maximum)
                box.setSingleStep(sizes.step)
                box.setToolTip(TIPS["size"].format(name=name, step=sizes.step))
                box.blockSignals(False)
            for name in ("width", "height"):
                self.bindings[name].update_widget()
        note, fits = self.model.memory_note() if flexible else ("", True)
        self.size_note.setText(note)
        self.size_note.setStyleSheet("" if fits else "color: #d9534f")
        self.size_note.setVisible(bool(note))

    def on_running(self, running: bool) -> None:
        busy = running and not self.model.live_run     # a live run gives way to Generate
        self.generate_button.setEnabled(not busy and self.model.caps is not None)
        self.generate_button.setText("Generating…" if busy else "Generate")
        self.cancel_button.setEnabled(running)
