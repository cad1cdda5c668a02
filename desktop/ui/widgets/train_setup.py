"""The Train window's left side: what to train on, which preset, how long, and where the run lives.

The data check and the speed measurement run in a `train --check` subprocess (CheckProcess) each
time the data or the preset changes; its result fills the data summary (images, classes, captions,
masks, label maps, skipped files and why) and the expected time, measured on this machine.
"""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from desktop.runtime import training

from ..train_session import CheckProcess, format_duration

GENERATED_SETS = {
    "shapes": "coloured shapes on plain backgrounds, with captions and 8 shape classes",
    "landscapes": "procedural landscapes with label maps (sky, water, grass, trees, …)",
    "digits": "scikit-learn's 1,797 handwritten digits (grayscale, 10 classes)",
}
FOLDER_RULES = ("Class = the first sub-folder · caption = <i>a.txt</i> beside <i>a.png</i> · "
                "inpainting mask = <i>a.mask.png</i> · label map = <i>a.labels.png</i>")
STAGE_NAMES = {"vae": "Autoencoder (VAE)", "diffusion": "Diffusion model"}
LONG_RUN_SECONDS = 30 * 60      # a preset expected to take longer starts with a time budget of this


def preset_cost(preset: dict) -> float:
    """Roughly how much computing a preset asks for (steps x batch x pixels, twice for a latent preset's
    two stages): the Model list runs from the quickest first try to the biggest."""
    pixels = int(preset.get("size") or 0) ** 2
    return int(preset.get("steps") or 0) * int(preset.get("batch") or 0) * pixels * (2 if preset.get("vae_preset") else 1)


def describe_data(data: dict) -> str:
    """The check's data summary in a sentence or two (rich text)."""
    n = int(data.get("images") or 0)
    classes = data.get("classes") or {}
    if data.get("kind") == "generated":
        head = f"<b>{n:,} generated images</b> ({html.escape(str(data.get('name')))})"
    else:
        head = f"<b>{n:,} image{'s' if n != 1 else ''}</b>"
    if classes:
        counts = " · ".join(f"{html.escape(str(k))} {v:,}" if v else html.escape(str(k)) for k, v in list(classes.items())[:8])
        more = f" · … {len(classes) - 8} more" if len(classes) > 8 else ""
        head += f" in {len(classes)} classes ({counts}{more})"
    parts = [f"captions {int(data.get('captions') or 0):,}", f"masks {int(data.get('masks') or 0):,}",
             f"label maps {int(data.get('label_maps') or 0):,}"]
    text = head + "<br>" + " · ".join(parts)
    if data.get("label_maps") and not data.get("labels_named"):
        text += ("<br><span style='color:#b26a00'>The label maps are not used: no <i>dataset.json</i> names "
                 "their labels.</span>")
    skipped = data.get("skipped") or []
    if skipped:
        text += f"<br><span style='color:#b26a00'>{len(skipped)} file(s) skipped (listed below).</span>"
    return text


def describe_conditioning(cond: dict) -> str:
    parts = []
    if cond.get("class"):
        parts.append("class")
    if cond.get("text"):
        parts.append(f"text ({cond['text']})")
    if cond.get("mask") == "semantic":
        parts.append("label map")
    elif cond.get("mask") == "inpaint":
        parts.append("inpainting")
    return ", ".join(parts) if parts else "nothing (unconditional)"


class SetupPanel(QWidget):
    """Emits startRequested(job_parts) when the user starts a run; `plan()` gives the stages."""

    startRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.presets: list[dict] = []
        self.check_result: dict | None = None
        self.check_cache: dict[tuple, dict] = {}
        self.run_parent: Path | None = None    # None = training.runs_dir()
        self.budget_touched = False
        self.checker = CheckProcess(self)
        self.checker.finished.connect(self.on_checked)
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(400)
        self.debounce.timeout.connect(self.run_check)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._data_box())
        lay.addWidget(self._preset_box())
        lay.addWidget(self._budget_box())
        lay.addWidget(self._where_box())
        self.start_button = QPushButton("Start training")
        self.start_button.setMinimumHeight(36)
        self.start_button.setEnabled(False)
        self.start_button.setToolTip("Train in a separate process: the app stays responsive, and a crash in training never closes it")
        self.start_button.clicked.connect(self.startRequested)
        lay.addWidget(self.start_button)
        lay.addStretch(1)

    # --- building ------------------------------------------------------------------------
    def _data_box(self) -> QGroupBox:
        box = QGroupBox("1 · Data")
        self.use_folder = QRadioButton("My image folder")
        self.use_generated = QRadioButton("A built-in set")
        group = QButtonGroup(box)
        for b in (self.use_folder, self.use_generated):
            group.addButton(b)
        self.use_folder.setChecked(True)
        self.use_generated.toggled.connect(self.data_changed)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("a folder of .png / .jpg / .webp images")
        self.folder.editingFinished.connect(self.data_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse_folder)
        self.generated = QComboBox()
        for name, text in GENERATED_SETS.items():
            self.generated.addItem(name, name)
            self.generated.setItemData(self.generated.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.generated.currentIndexChanged.connect(self.data_changed)
        rules = QLabel(FOLDER_RULES)
        rules.setWordWrap(True)
        rules.setStyleSheet("color: gray")
        self.summary = QLabel("Choose a folder or a built-in set.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.skipped = QListWidget()
        self.skipped.setWordWrap(True)
        self.skipped.setMinimumHeight(60)
        self.skipped.setMaximumHeight(110)
        self.skipped.setToolTip("Files that training would leave out, and why")
        self.skipped.hide()
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        gen = QHBoxLayout()
        gen.addWidget(self.use_generated)
        gen.addWidget(self.generated, 1)
        lay = QVBoxLayout(box)
        for item in (self.use_folder, row, rules, gen, self.summary, self.skipped):
            (lay.addLayout if isinstance(item, QHBoxLayout) else lay.addWidget)(item)
        return box

    def _preset_box(self) -> QGroupBox:
        box = QGroupBox("2 · Model")
        self.preset = QComboBox()
        self.preset.setToolTip("A preset: the network size, image size and training recipe")
        self.preset.currentIndexChanged.connect(self.preset_changed)
        self.preset_text = QLabel()
        self.preset_text.setTextFormat(Qt.TextFormat.RichText)
        self.preset_text.setWordWrap(True)
        self.conditioning = QLabel()
        self.conditioning.setWordWrap(True)
        self.expected = QLabel()
        self.expected.setWordWrap(True)
        self.expected.setToolTip("Measured on this machine: a few training steps of every stage, timed")
        lay = QVBoxLayout(box)
        for w in (self.preset, self.preset_text, self.conditioning, self.expected):
            lay.addWidget(w)
        return box

    def _budget_box(self) -> QGroupBox:
        box = QGroupBox("3 · How long")
        self.by_steps = QRadioButton("Steps")
        self.by_time = QRadioButton("Time")
        group = QButtonGroup(box)
        self.steps = QSpinBox()
        self.steps.setRange(1, 10_000_000)
        self.steps.setGroupSeparatorShown(True)
        self.steps.setToolTip("Optimizer steps of the diffusion model (a VAE stage keeps its preset's steps)")
        self.minutes = QSpinBox()
        self.minutes.setRange(1, 7 * 24 * 60)
        self.minutes.setValue(10)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Training time over all stages; the model is written when it is up")
        for b in (self.by_steps, self.by_time):
            group.addButton(b)
        self.by_steps.setChecked(True)
        for w in (self.by_steps, self.steps, self.minutes):
            (w.toggled if isinstance(w, QRadioButton) else w.valueChanged).connect(self.budget_changed)
        form = QFormLayout(box)
        form.addRow(self.by_steps, self.steps)
        form.addRow(self.by_time, self.minutes)
        return box

    def _where_box(self) -> QGroupBox:
        box = QGroupBox("4 · Name and folder")
        self.name = QLineEdit()
        self.name.setToolTip("The model's name in the model list (and its run folder's)")
        self.name.textEdited.connect(lambda _: self.update_where())
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.where.setStyleSheet("color: gray")
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        change = QPushButton("Change…")
        change.setToolTip("Keep the run (checkpoints, samples, logs) in another folder")
        change.clicked.connect(self.choose_parent)
        row = QHBoxLayout()
        row.addWidget(QLabel("Run folder"))
        row.addStretch(1)
        row.addWidget(change)
        form = QFormLayout()
        form.addRow("Name", self.name)
        lay = QVBoxLayout(box)       # the folder on its own full-width line: a path is long
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.where)
        return box

    # --- values --------------------------------------------------------------------------
    def set_presets(self, presets: list[dict]) -> None:
        self.presets = sorted((p for p in presets if p.get("kind") != "vae"), key=preset_cost)
        self.preset.blockSignals(True)
        self.preset.clear()
        for p in self.presets:
            self.preset.addItem(p["name"], p["name"])
        self.preset.blockSignals(False)
        if self.presets:
            self.preset_changed()

    def current_preset(self) -> dict | None:
        i = self.preset.currentIndex()
        return self.presets[i] if 0 <= i < len(self.presets) else None

    def data(self) -> dict | None:
        if self.use_generated.isChecked():
            return {"kind": "generated", "name": self.generated.currentData()}
        text = self.folder.text().strip()
        return {"kind": "folder", "path": str(Path(text).expanduser())} if text else None

    def budget(self) -> dict:
        return {"seconds": self.minutes.value() * 60} if self.by_time.isChecked() else {"steps": self.steps.value()}

    def run_folder(self) -> Path:
        return (self.run_parent or training.runs_dir()) / (training.safe_name(self.name.text()) or "run")

    def plan(self) -> list[dict]:
        return training.stage_plan(self.check_result or {}, self.budget()) if self.check_result else []

    def ready(self) -> bool:
        return (self.check_result is not None and not self.checker.running and self.current_preset() is not None
                and bool(training.safe_name(self.name.text())) and not self.run_folder().exists())

    # --- reactions -----------------------------------------------------------------------
    def browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the folder of training images", self.folder.text())
        if folder:
            self.folder.setText(folder)
            self.use_folder.setChecked(True)
            self.data_changed()

    def choose_parent(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Where to keep training runs", str(self.run_parent or training.runs_dir()))
        if folder:
            self.run_parent = Path(folder)
            self.update_where()

    def data_changed(self) -> None:
        self.suggest_name()
        self.schedule_check()

    def preset_changed(self) -> None:
        p = self.current_preset()
        if p is None:
            return
        self.preset_text.setText(html.escape(p.get("description") or "") or "<i>No description.</i>")
        self.steps.blockSignals(True)
        self.steps.setValue(int(p.get("steps") or 1000))
        self.steps.blockSignals(False)
        self.budget_touched = False
        self.suggest_name()
        self.schedule_check()

    def budget_changed(self) -> None:
        self.budget_touched = True
        self.update_expected()

    def suggest_name(self) -> None:
        data, p = self.data(), self.current_preset()
        if data is None or p is None:
            return
        base = Path(data["path"]).name if data["kind"] == "folder" else data["name"]
        self.name.setText(training.unique_run_name(training.safe_name(f"{base}-{p['name']}") or "model",
                                                   self.run_parent))
        self.update_where()

    def update_where(self) -> None:
        run = self.run_folder()
        note = "  <span style='color:#c33'>(exists: choose another name)</span>" if run.exists() else ""
        self.where.setText(html.escape(str(run)) + note)
        self.start_button.setEnabled(self.ready())

    def schedule_check(self) -> None:
        self.check_result = None
        self.start_button.setEnabled(False)
        self.skipped.hide()
        if self.data() is None or self.current_preset() is None:
            self.summary.setText("Choose a folder or a built-in set.")
            self.expected.setText("")
            return
        self.summary.setText("<i>Checking the data and timing a few training steps on this machine…</i>")
        self.expected.setText("")
        self.conditioning.setText("")
        self.debounce.start()

    def run_check(self) -> None:
        p, data = self.current_preset(), self.data()
        if p is None or data is None:
            return
        key = (p["name"], repr(data))
        if key in self.check_cache:     # built-in sets do not change: checked once per session
            self.on_check(self.check_cache[key])
            return
        self.checker.start(training.check_argv(p, data), key=key)

    def on_checked(self, result: dict) -> None:
        """The check subprocess reported: a built-in set's result is kept for this session."""
        if result.get("event") == "check" and (result.get("data") or {}).get("kind") == "generated":
            self.check_cache[self.checker.key] = result
        self.on_check(result)

    def on_check(self, result: dict) -> None:
        if result.get("event") == "error":
            self.check_result = None
            self.summary.setText(f"<span style='color:#c33'>{html.escape(str(result.get('message')))}</span>")
            self.update_where()
            return
        self.check_result = result
        data = result.get("data") or {}
        self.summary.setText(describe_data(data))
        self.skipped.clear()
        for s in data.get("skipped") or []:
            self.skipped.addItem(f"{Path(str(s.get('path'))).name}: {s.get('reason')}")
            self.skipped.item(self.skipped.count() - 1).setToolTip(str(s.get("path")))
        self.skipped.setVisible(bool(data.get("skipped")))
        self.conditioning.setText("Learns to follow: " + describe_conditioning(result.get("conditioning") or {}))
        full = sum(float(s.get("seconds_per_step") or 0) * int(s.get("steps") or 0) for s in result.get("stages") or [])
        if not self.budget_touched and full > LONG_RUN_SECONDS:
            self.by_time.blockSignals(True)
            self.by_time.setChecked(True)
            self.by_time.blockSignals(False)
            self.minutes.setValue(LONG_RUN_SECONDS // 60)
        self.update_expected()
        self.update_where()

    def update_expected(self) -> None:
        plan, check = self.plan(), self.check_result or {}
        if not plan:
            return
        device = check.get("device_name") or check.get("device") or "this machine"
        lines = []
        for s in plan:
            sps, title = float(s.get("seconds_per_step") or 0), STAGE_NAMES.get(s["stage"], s["stage"])
            if s["max_seconds"] and s["expected_steps"] < s["steps"]:
                lines.append(f"{title}: about {s['expected_steps']:,} steps ({sps:.3g} s each) in "
                             f"{format_duration(s['max_seconds'])}")
            else:
                lines.append(f"{title}: {s['steps']:,} steps × {sps:.3g} s ≈ {format_duration(s['expected_seconds'])}")
        total = sum(s["expected_seconds"] for s in plan)
        self.expected.setText(f"<b>Expected: about {format_duration(total)}</b> on {html.escape(device)}, "
                              f"then the export (measured here just now)<br>" + "<br>".join(lines))
