"""The input canvas: the init image, the inpainting mask brush and semantic label painting.

Binds to `StudioModel.canvas` (a CanvasState): every stroke is `checkpoint()` then dabs, so undo
works per stroke. Both layers show at once (the label map and the inpainting mask, the one being
painted stronger). Brush size: `[` / `]` (window shortcuts, no click needed) or the mouse wheel; Ctrl+wheel zooms; middle button or
Space+drag pans. Dropping an image (the window handles drops) loads it as the init image; dropping a PNG
that carries a recipe restores the recipe instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QMenu, QPushButton, QSlider,
                               QToolButton, QVBoxLayout, QWidget)

from .. import brush, images
from .flow import FlowLayout
from .imageview import ImageView, zoom_box

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"


def swatch(color, size=14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(*color))
    return QIcon(pm)


class PaintView(ImageView):
    """The image view that paints into the CanvasState."""

    brushSizeChanged = Signal(float)

    def __init__(self, canvas, parent=None):
        super().__init__(parent)
        self.canvas = canvas
        self.tool = "brush"            # brush | eraser | labels | bucket | none
        self.radius = 4.0
        self.hardness = 0.7
        self.label = 0
        self.opacity = 0.5
        self.palette_colors: list[tuple[int, int, int]] = []
        self.mode = None               # None | "inpaint" | "semantic"
        self._last: QPointF | None = None
        self._cursor: QPointF | None = None
        self.setMouseTracking(True)
        canvas.changed.connect(self.refresh)

    def refresh(self) -> None:
        """Draw the start image (or a neutral ground) with both layers over it: the label map and the
        inpainting mask. The layer being painted is drawn at the overlay opacity, the other fainter."""
        cv = self.canvas
        if self.mode is None and cv.init_image is None and not self.placeholder.startswith("Drop"):
            self.set_image(None)
            return
        base = cv.init_image
        if base is None:  # no image: a checkerboard under a mask, a flat ground under labels
            base = np.full((cv.height, cv.width, 3), 48, np.uint8) if self.palette_colors else _checkerboard(cv.height, cv.width)
        overlays = []
        painting_mask = self.mode == "inpaint"
        if self.palette_colors and cv.has_labels():
            alpha = self.opacity if not painting_mask else self.opacity * 0.5
            overlays.append(images.qimage_from_array(brush.labels_to_rgba(cv.labels, self.palette_colors, alpha)))
        if self.mode is not None and cv.has_mask():
            alpha = self.opacity if painting_mask else max(0.25, self.opacity * 0.6)
            overlays.append(images.qimage_from_array(brush.mask_to_rgba(cv.mask, alpha)))
        self.set_image(images.qimage_from_array(base), overlays)

    def empty_map(self) -> bool:
        """A label-map model with nothing on the canvas: the canvas says what to do."""
        cv = self.canvas
        return bool(self.palette_colors) and cv.init_image is None and not cv.has_labels() and not cv.has_mask()

    def set_radius(self, r: float) -> None:
        self.radius = float(max(0.5, min(256.0, r)))
        self.brushSizeChanged.emit(self.radius)
        self.update()

    # --- painting -------------------------------------------------------------------------
    def _dabs(self, points: list[tuple[float, float]]) -> None:
        """Paints the dabs of one mouse event with the current tool (one `changed` for all of them)."""
        if self.tool in ("brush", "eraser"):
            self.canvas.dabs_mask(points, self.radius, self.hardness, self.tool == "eraser")
        elif self.tool == "labels":
            self.canvas.dabs_labels(points, self.radius, self.label)
        elif self.tool == "label_eraser":
            self.canvas.dabs_labels(points, self.radius, -1)

    def paints(self) -> bool:
        return self.mode is not None and self.tool != "none"

    def mousePressEvent(self, event) -> None:
        if self.start_pan(event) or not self.paints() or event.button() != Qt.MouseButton.LeftButton:
            return
        pos = self.to_image(event.position())
        if self.tool == "bucket":
            x, y = int(pos.x()), int(pos.y())
            if 0 <= x < self.canvas.width and 0 <= y < self.canvas.height:
                self.canvas.bucket(x, y, self.label)
            return
        self.canvas.checkpoint()
        self._last = pos
        self._dabs([(pos.x(), pos.y())])

    def mouseMoveEvent(self, event) -> None:
        self._cursor = event.position()
        if self._last is not None:
            pos = self.to_image(event.position())
            self._dabs(brush.stroke_points(self._last.x(), self._last.y(), pos.x(), pos.y(), self.radius))
            self._last = pos
        super().mouseMoveEvent(event)
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        self._last = None
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event) -> None:
        self._cursor = None
        self.update()

    def wheel_handled(self, event) -> bool:
        if not self.paints():
            return False
        self.set_radius(self.radius * (1.12 if event.angleDelta().y() > 0 else 1 / 1.12))
        return True

    def paint_extra(self, p: QPainter) -> None:
        if self.empty_map():
            self.paint_hint(p)
        if self._cursor is None or not self.paints() or self.tool == "bucket":
            return
        r = self.radius * self.scale()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for color, width in ((QColor(0, 0, 0, 160), 3), (QColor(255, 255, 255, 220), 1)):
            p.setPen(QPen(color, width))
            p.drawEllipse(self._cursor, r, r)
        if self.hardness < 1 and self.tool in ("brush", "eraser"):
            p.setPen(QPen(QColor(255, 255, 255, 120), 1, Qt.PenStyle.DashLine))
            p.drawEllipse(self._cursor, r * self.hardness, r * self.hardness)


    def paint_hint(self, p: QPainter) -> None:
        """The empty-map hint in a dark box over the canvas (at least 220 px wide, whatever the zoom)."""
        image = self.image_rect()
        width = max(min(self.width() - 24, 220), image.width() - 24)
        box = QRectF(image.center().x() - width / 2, image.center().y() - 45, width, 90)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(20, 22, 26, 200))
        p.drawRoundedRect(box, 8, 8)
        p.setPen(QColor(240, 240, 240))
        p.drawText(box.adjusted(10, 6, -10, -6), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, EMPTY_MAP_HINT)


EMPTY_MAP_HINT = ("Paint the map: choose a label (sky, water, trees…) and paint where it goes, "
                  "or Fill. Unpainted areas take the nearest label.")


def _checkerboard(h: int, w: int, cell: int | None = None) -> np.ndarray:
    cell = cell or max(2, min(h, w) // 8)
    yy, xx = np.mgrid[0:h, 0:w]
    on = ((yy // cell + xx // cell) % 2).astype(bool)
    out = np.empty((h, w, 3), np.uint8)
    out[on] = 70
    out[~on] = 90
    return out


def pair(label: QLabel, widget: QWidget) -> QWidget:
    """A label and its control that wrap together."""
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 6, 0)
    lay.setSpacing(4)
    lay.addWidget(label)
    lay.addWidget(widget)
    return box


class CarryNotice(QFrame):
    """Says that the start image came along from the previous model, with a one-click drop."""

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.setObjectName("carryNotice")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.drop = QPushButton("Drop it")
        self.drop.setToolTip("Remove the start image: this model then starts from pure noise (Ctrl+Z brings it back)")
        self.drop.clicked.connect(model.drop_carried_image)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.drop)
        model.carryChanged.connect(self.refresh)
        model.canvas.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        m = self.model
        on = bool(m.carried_from) and m.canvas.init_image is not None
        if on:
            use = "inpainting keeps its unmasked pixels" if m.canvas.has_mask() else "img2img: it starts from this image"
            self.text.setText(f"The start image came along from <b>{m.carried_from}</b> ({use}).")
        self.setVisible(on)


def tool_button(action: QAction) -> QToolButton:
    b = QToolButton()
    b.setDefaultAction(action)
    b.setAutoRaise(True)
    return b


def flow_row(widgets) -> QWidget:
    row = QWidget()
    lay = FlowLayout(row, spacing=2)
    lay.setContentsMargins(4, 0, 4, 0)
    for w in widgets:
        lay.addWidget(w)
    return row


TOOLS = (  # key, text, tooltip (plain words first)
    ("brush", "Brush", "Paint where the model should make something new (B)"),
    ("eraser", "Eraser", "Erase the mask: these pixels are kept as they are (E)"),
    ("labels", "Paint", "Paint the chosen label, e.g. sky or water (B)"),
    ("label_eraser", "Erase", "Erase painted labels (E); unpainted areas take the nearest painted label"),
    ("bucket", "Fill", "Fill a connected area with the chosen label (G)"),
)


class CanvasPanel(QWidget):
    """The canvas with its tool bar; which tools show depends on the model's mask kind. Tool bars
    wrap in narrow windows, and switching tools never moves or resizes the canvas."""

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.view = PaintView(model.canvas)
        self.view.set_placeholder("Drop an image here")
        self._make_actions()
        self._make_tools()
        self._make_sliders()
        self.notice = CarryNotice(model)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        title = QLabel("<b>Input</b>")
        title.setMinimumWidth(60)
        self.zoom = zoom_box(self.view)
        lay.addWidget(flow_row([title, *(tool_button(a) for a in (self.a_open, self.a_clear_image, self.a_undo,
                                                                   self.a_redo)), self.zoom]))
        lay.addWidget(self.tools_row)
        lay.addWidget(self.sliders_row)
        lay.addWidget(self.notice)
        lay.addWidget(self.view, 1)
        model.bundleChanged.connect(self.on_bundle)
        model.canvas.changed.connect(self.update_actions)
        model.canvas.undoChanged.connect(self.update_actions)
        self.on_bundle()

    def act(self, text, slot, tip, checkable=False) -> QAction:
        a = QAction(text, self, checkable=checkable)
        a.setToolTip(tip)
        a.triggered.connect(slot)
        return a

    def _make_actions(self) -> None:
        m = self.model
        self.a_open = self.act("Open image…", self.open_image, "Load a picture to start from (img2img) or to change "
                                                               "part of (inpainting); or drop one here (Ctrl+O)")
        self.a_clear_image = self.act("Clear image", lambda: m.canvas.set_init_image(None),
                                      "Remove the start image; generation starts from pure noise")
        self.a_undo = self.act("Undo", m.canvas.undo, "Undo the last stroke (Ctrl+Z)")
        self.a_redo = self.act("Redo", m.canvas.redo, "Redo (Ctrl+Shift+Z)")
        self.a_invert = self.act("Invert", m.canvas.invert_mask, "Swap painted and unpainted: generate everywhere except where you painted")
        self.a_fill = self.act("Fill all", self.fill_all, "Mask the whole image (or fill it with the chosen label)")
        self.a_clear = self.act("Clear", self.clear_paint, "Remove all painting of the current layer")
        self.a_load_mask = self.act("Load mask…", self.load_mask, "Load a mask PNG (white = generate, black = keep); it must be the model's size")
        self.a_save_mask = self.act("Save mask…", self.save_mask, "Save the mask as a grayscale PNG (white = generate)")

    def _make_tools(self) -> None:
        group = QActionGroup(self)
        self.tool_actions = {}
        for key, text, tip in TOOLS:
            a = self.act(text, lambda _=False, k=key: self.set_tool(k), tip, checkable=True)
            group.addAction(a)
            self.tool_actions[key] = a
        self.tool_buttons = {k: tool_button(a) for k, a in self.tool_actions.items()}
        self.label_combo = QComboBox()
        self.label_combo.setToolTip("The label the brush and Fill paint (the model's palette)")
        self.label_combo.setStyleSheet("QComboBox { combobox-popup: 0; }")   # a list below, not over the current item
        self.label_combo.setMaxVisibleItems(16)
        self.label_combo.currentIndexChanged.connect(lambda i: setattr(self.view, "label", max(i, 0)))
        self.more = QToolButton()
        self.more.setText("More ▾")
        self.more.setToolTip("Clear, fill, invert, load and save the painting")
        self.more.setAutoRaise(True)
        self.more.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        more = QMenu(self.more)
        for a in (self.a_clear, self.a_fill, self.a_invert, self.a_load_mask, self.a_save_mask):
            more.addAction(a)
        more.setToolTipsVisible(True)
        self.more.setMenu(more)
        self.tools_row = flow_row([*self.tool_buttons.values(), self.label_combo, self.more])

    def _make_sliders(self) -> None:
        self.size_slider = self._slider(1, 128, 4, "Brush size in picture pixels ( [ and ] or the mouse wheel )")
        self.size_slider.valueChanged.connect(lambda v: self.view.set_radius(v / 2))
        self.view.brushSizeChanged.connect(self._sync_size)
        self.hard_slider = self._slider(0, 100, 70, "Hardness: 100 % paints a hard edge, lower a soft one")
        self.hard_slider.valueChanged.connect(lambda v: setattr(self.view, "hardness", v / 100))
        self.opacity_slider = self._slider(0, 100, int(self.model.settings["overlay_opacity"] * 100),
                                           "How strongly the mask and labels are drawn over the picture")
        self.opacity_slider.valueChanged.connect(self.set_opacity)
        self.size_label, self.hard_label, self.opacity_label = QLabel("Size"), QLabel("Hardness"), QLabel("Overlay")
        self.sliders_row = flow_row([pair(self.size_label, self.size_slider), pair(self.hard_label, self.hard_slider),
                                     pair(self.opacity_label, self.opacity_slider)])

    def _slider(self, lo, hi, value, tip) -> QSlider:
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(lo, hi)
        s.setValue(value)
        s.setToolTip(tip)
        s.setMinimumWidth(70)
        s.setMaximumWidth(140)
        return s

    def _sync_size(self, radius: float) -> None:
        self.size_slider.blockSignals(True)
        self.size_slider.setValue(int(round(radius * 2)))
        self.size_slider.blockSignals(False)

    def set_opacity(self, v: int) -> None:
        self.view.opacity = v / 100
        self.model.settings["overlay_opacity"] = v / 100
        self.view.refresh()

    def set_tool(self, key: str) -> None:
        self.view.tool = key
        self.tool_actions[key].setChecked(True)
        c = self.model.caps
        if c is not None and c.canvas_mode == "semantic":  # label tools paint the map, mask tools the inpainting mask
            mode = "inpaint" if key in ("brush", "eraser") else "semantic"
            if mode != self.view.mode:
                self.view.mode = mode
                self._show_mode_widgets()
                self.view.refresh()

    def _show_mode_widgets(self) -> None:
        """What the current tool does not use is greyed, never hidden: switching tools moves nothing."""
        inpaint = self.view.mode == "inpaint"
        self.label_combo.setEnabled(self.view.mode == "semantic")
        self.hard_slider.setEnabled(inpaint)
        self.hard_label.setEnabled(inpaint)

    def on_bundle(self) -> None:
        """Every model gets the inpainting mask tools; label-map models also the label tools (their
        starting mode)."""
        c = self.model.caps
        mode = c.canvas_mode if c else None
        self.view.mode = mode
        semantic = mode == "semantic"
        for keys, on in ((("brush", "eraser"), c is not None), (("labels", "label_eraser", "bucket"), semantic)):
            for key in keys:
                self.tool_actions[key].setVisible(on)
                self.tool_buttons[key].setVisible(on)
        self.tool_actions["brush"].setText("Mask" if semantic else "Brush")
        self.tool_actions["brush"].setToolTip("Paint the inpainting mask: where the opened image is regenerated (B)"
                                              if semantic else "Paint where the model should generate (B)")
        for a in (self.a_invert, self.a_load_mask, self.a_save_mask):
            a.setVisible(c is not None)
        self.tools_row.setVisible(c is not None)
        self.sliders_row.setVisible(c is not None)
        self.label_combo.clear()
        self.label_combo.setVisible(semantic)
        self.view.palette_colors = [col for _, col in c.labels] if c and semantic else []
        if c and semantic:
            for name, col in c.labels:
                self.label_combo.addItem(swatch(col), name)
            self.set_tool("labels")
        elif c:
            self.set_tool("brush")
        else:
            self.view.tool = "none"
        self._show_mode_widgets()
        if c:
            self.view.set_radius(max(1.0, min(c.height, c.width) / 10))
            self.view.set_placeholder("Drop an image here")
        else:
            self.view.set_placeholder("Load a model to start")
        self.view.set_zoom(None)
        self.view.refresh()
        self.update_actions()

    def update_actions(self) -> None:
        cv = self.model.canvas
        self.a_clear_image.setEnabled(cv.init_image is not None)
        self.a_undo.setEnabled(cv.can_undo())
        self.a_redo.setEnabled(cv.can_redo())

    # --- file actions ---------------------------------------------------------------------
    def open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.load_image(path)

    def load_image(self, path: str) -> None:
        try:
            image = images.load_image(path)
        except Exception as exc:  # noqa: BLE001
            self.model.error.emit(f"Could not open {Path(path).name} as an image: {exc}")
            return
        self.model.canvas.set_init_image(image)
        h, w = image.shape[:2]
        c = self.model.caps
        if c and (h, w) != (c.height, c.width):
            self.model.message.emit(f"Resized {Path(path).name} from {w}×{h} to the model's {c.width}×{c.height}.")

    def on_file_dropped(self, path: str) -> None:
        """A PNG with a recipe restores the recipe; any other image becomes the init image."""
        if path.lower().endswith(".png") and _has_recipe(path) and self.model.restore_png(path):
            return
        self.load_image(path)

    def fill_all(self) -> None:
        if self.view.mode == "semantic":
            self.model.canvas.fill_labels(self.view.label)
        else:
            self.model.canvas.fill_mask()

    def clear_paint(self) -> None:
        if self.view.mode == "semantic":
            self.model.canvas.clear_labels()
        else:
            self.model.canvas.clear_mask()

    def load_mask(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load mask", "", "PNG images (*.png);;" + IMAGE_FILTER)
        if path:
            self.load_mask_file(path)

    def load_mask_file(self, path: str) -> None:
        from PIL import Image

        try:
            with Image.open(path) as im:
                mask = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            self.model.canvas.set_mask(mask)
        except ValueError as exc:
            self.model.error.emit(str(exc))
        except Exception as exc:  # noqa: BLE001
            self.model.error.emit(f"Could not read {Path(path).name} as a mask: {exc}")

    def save_mask(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save mask", "mask.png", "PNG images (*.png)")
        if path:
            self.save_mask_file(path)

    def save_mask_file(self, path: str) -> None:
        from PIL import Image

        from desktop.runtime import fileio

        data = (np.clip(self.model.canvas.mask, 0, 1) * 255).round().astype(np.uint8)
        target = Path(path)
        try:
            fileio.write_file(target, lambda f: Image.fromarray(data, "L").save(f, format="PNG"))
        except Exception as exc:  # noqa: BLE001
            self.model.error.emit(f"Could not save the mask to {target}: {exc}")


def _has_recipe(path: str) -> bool:
    from desktop.runtime.pngmeta import RecipeError, read_recipe_dict

    try:
        read_recipe_dict(path)
    except RecipeError:
        return False
    except Exception:  # noqa: BLE001 - a malformed recipe: restore_png reports it in plain words
        return True
    return True
