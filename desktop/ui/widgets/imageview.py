"""A zoomable, pannable view of one image (with overlays) or of a grid of images (a batch).

Fit (the default) shows small images at the largest *integer* zoom that fits, drawn nearest-
neighbour so pixels stay crisp, and large images smoothly scaled down. Ctrl+wheel or + / − step
through ZOOM_LEVELS (integers above 100 %), 0 or a double-click on the background fits again, the
middle button or Space + drag pans. In a grid every image is its own cell: a click selects one
(`selected`), a double-click opens it (`activated`).
"""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QComboBox, QSizePolicy, QWidget

ZOOM_LEVELS = (0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
MARGIN = 16       # screen pixels around the content in fit mode
GAP = 8           # screen pixels between the cells of a grid


def fit_scale(raw: float) -> float:
    """The zoom that fit mode uses: an integer when the content fits at 100 % or more, else `raw`."""
    return float(math.floor(raw)) if raw >= 1.0 else max(0.02, raw)


def next_level(scale: float, up: bool) -> float:
    """The next zoom level above (or below) `scale`."""
    if up:
        return next((z for z in ZOOM_LEVELS if z > scale * 1.001), ZOOM_LEVELS[-1])
    return next((z for z in reversed(ZOOM_LEVELS) if z < scale * 0.999), ZOOM_LEVELS[0])


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) of a near-square grid for n images, wider than tall."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return cols, max(1, math.ceil(n / cols))


class ImageView(QWidget):
    zoomChanged = Signal(float)
    selected = Signal(int)
    activated = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.images: list[QImage] = []
        self.overlays: list[QImage] = []    # drawn over image 0 (the canvas's mask and label layers)
        self.current = 0                    # the selected cell of a grid
        self.placeholder = ""
        self.zoom: float | None = None      # None = fit to the widget
        self.pan = QPointF(0, 0)
        self._panning_from: QPointF | None = None
        self._space = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 140)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAutoFillBackground(True)

    # --- content ---------------------------------------------------------------------------
    @property
    def image(self) -> QImage | None:
        """The selected image (the only one outside a grid), or None."""
        return self.images[min(self.current, len(self.images) - 1)] if self.images else None

    def set_image(self, image: QImage | None, overlay=None) -> None:
        """One image; `overlay` is a QImage or a list of them, drawn over it in order."""
        overlays = [] if overlay is None else list(overlay) if isinstance(overlay, (list, tuple)) else [overlay]
        self.set_images([] if image is None else [image], overlays)

    def set_images(self, images: list[QImage], overlays: list[QImage] | None = None) -> None:
        old = self.content_size()
        self.images, self.overlays = list(images), list(overlays or [])
        self.current = min(self.current, max(0, len(self.images) - 1))
        if self.images and self.content_size() != old and self.zoom is None:
            self.zoomChanged.emit(self.scale())
        self.update()

    def set_current(self, index: int) -> None:
        if 0 <= index < len(self.images) and index != self.current:
            self.current = index
            self.update()
        self.selected.emit(self.current)

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.update()

    # --- geometry --------------------------------------------------------------------------
    def cell_size(self) -> tuple[int, int]:
        if not self.images:
            return 0, 0
        return max(i.width() for i in self.images), max(i.height() for i in self.images)

    def content_size(self) -> tuple[int, int, int, int]:
        """(columns, rows, cell width, cell height) in image pixels."""
        cols, rows = grid_shape(len(self.images))
        return (cols, rows, *self.cell_size())

    def fit_raw(self) -> float:
        cols, rows, w, h = self.content_size()
        if not w or not h:
            return 1.0
        return min((self.width() - MARGIN - (cols - 1) * GAP) / (cols * w),
                   (self.height() - MARGIN - (rows - 1) * GAP) / (rows * h))

    def scale(self) -> float:
        if not self.images:
            return 1.0
        return self.zoom if self.zoom is not None else fit_scale(self.fit_raw())

    def cell_rect(self, index: int) -> QRectF:
        cols, rows, w, h = self.content_size()
        if not w:
            return QRectF()
        s = self.scale()
        total_w, total_h = cols * w * s + (cols - 1) * GAP, rows * h * s + (rows - 1) * GAP
        r, c = divmod(index, cols)
        image = self.images[index] if index < len(self.images) else None
        iw, ih = (image.width(), image.height()) if image is not None else (w, h)
        x = (self.width() - total_w) / 2 + self.pan.x() + c * (w * s + GAP) + (w - iw) * s / 2
        y = (self.height() - total_h) / 2 + self.pan.y() + r * (h * s + GAP) + (h - ih) * s / 2
        return QRectF(x, y, iw * s, ih * s)

    def image_rect(self) -> QRectF:
        """Where image 0 is drawn (the canvas has only that one)."""
        return self.cell_rect(0) if self.images else QRectF()

    def to_image(self, pos: QPointF) -> QPointF:
        r = self.image_rect()
        s = self.scale()
        return QPointF((pos.x() - r.x()) / s, (pos.y() - r.y()) / s)

    def cell_at(self, pos: QPointF) -> int:
        return next((i for i in range(len(self.images)) if self.cell_rect(i).contains(pos)), -1)

    def set_zoom(self, zoom: float | None) -> None:
        self.zoom = None if zoom is None else max(ZOOM_LEVELS[0], min(ZOOM_LEVELS[-1], zoom))
        if zoom is None:
            self.pan = QPointF(0, 0)
        self.zoomChanged.emit(self.scale())
        self.update()

    def zoom_step(self, up: bool) -> None:
        self.set_zoom(next_level(self.scale(), up))

    def zoom_by(self, factor: float) -> None:
        self.zoom_step(factor > 1)

    def crisp(self) -> bool:
        """Nearest-neighbour at integer zooms of 100 % and more, smooth otherwise."""
        s = self.scale()
        return s >= 1.0 and abs(s - round(s)) < 1e-6

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.zoom is None and self.images:
            self.zoomChanged.emit(self.scale())

    # --- painting --------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().color(QPalette.ColorRole.Base).darker(108))
        if not self.images:
            if self.placeholder:
                p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
                p.drawText(self.rect().adjusted(20, 20, -20, -20), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not self.crisp())
        for i, image in enumerate(self.images):
            r = self.cell_rect(i)
            p.drawImage(r, image)
            if i == 0:
                for overlay in self.overlays:
                    p.drawImage(r, overlay)
            p.setPen(QColor(0, 0, 0, 90))
            p.drawRect(r.adjusted(-1, -1, 0, 0))
        if len(self.images) > 1:
            p.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 3))
            p.drawRect(self.cell_rect(self.current).adjusted(-3, -3, 2, 2))
        self.paint_extra(p)

    def paint_extra(self, p: QPainter) -> None:
        """Subclasses draw on top (the brush outline, hints)."""

    # --- interaction -----------------------------------------------------------------------
    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier or not self.wheel_handled(event):
            self.zoom_step(event.angleDelta().y() > 0)
        event.accept()

    def wheel_handled(self, event) -> bool:
        """Subclasses use the plain wheel (brush size); the base view zooms."""
        return False

    def mouseDoubleClickEvent(self, event) -> None:
        cell = self.cell_at(event.position()) if len(self.images) > 1 else -1
        if cell >= 0:
            self.activated.emit(cell)
        else:
            self.set_zoom(None)

    def start_pan(self, event) -> bool:
        if event.button() == Qt.MouseButton.MiddleButton or (self._space and event.button() == Qt.MouseButton.LeftButton):
            self._panning_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return True
        return False

    def mousePressEvent(self, event) -> None:
        if self.start_pan(event) or event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.position())
        if cell >= 0:
            self.set_current(cell)

    def mouseMoveEvent(self, event) -> None:
        if self._panning_from is not None:
            if self.zoom is None:
                self.zoom = self.scale()
            self.pan += event.position() - self._panning_from
            self._panning_from = event.position()
            self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._panning_from is not None:
            self._panning_from = None
            self.unsetCursor()

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_step(True)
        elif event.key() == Qt.Key.Key_Minus:
            self.zoom_step(False)
        elif event.key() == Qt.Key.Key_0:
            self.set_zoom(None)
        elif event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right) and len(self.images) > 1:
            self.set_current((self.current + (1 if event.key() == Qt.Key.Key_Right else -1)) % len(self.images))
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.unsetCursor()
        else:
            super().keyReleaseEvent(event)


def zoom_box(view: ImageView) -> QComboBox:
    """A zoom control for a view: Fit, then the zoom levels; follows the view's zoom."""
    box = QComboBox()
    box.setToolTip("Zoom: Fit shows the whole picture as large as it fits (crisp pixels for small ones); "
                   "Ctrl+wheel or + / − zoom too, 0 fits")
    box.addItem("Fit", None)
    for z in ZOOM_LEVELS:
        box.addItem(f"{z * 100:.0f} %", z)
    box.setStyleSheet("QComboBox { combobox-popup: 0; }")
    box.setMaxVisibleItems(12)
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(10)

    def chosen(index):
        view.set_zoom(box.itemData(index))

    def follow(_scale):
        box.blockSignals(True)
        box.setCurrentIndex(0 if view.zoom is None else max(0, box.findData(view.zoom)))
        box.setItemText(0, f"Fit · {view.scale() * 100:.0f} %" if view.images else "Fit")
        box.blockSignals(False)

    box.activated.connect(chosen)
    view.zoomChanged.connect(follow)
    return box
