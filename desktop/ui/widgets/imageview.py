"""A zoomable, pannable view of one image with an optional overlay (shared by canvas and preview).

Zoom with Ctrl+wheel or the +/- keys, pan with the middle button (or Space + drag); double-click
fits the image. Small images are drawn with nearest-neighbour scaling so pixels stay crisp.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget



class ImageView(QWidget):
    zoomChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image: QImage | None = None
        self.overlay: QImage | None = None
        self.placeholder = ""
        self.zoom: float | None = None      # None = fit to the widget
        self.pan = QPointF(0, 0)
        self._panning_from: QPointF | None = None
        self._space = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAutoFillBackground(True)

    # --- content ---------------------------------------------------------------------------
    def set_image(self, image: QImage | None, overlay: QImage | None = None) -> None:
        resized = image is not None and (self.image is None or self.image.size() != image.size())
        self.image, self.overlay = image, overlay
        if resized and self.zoom is None:
            self.zoomChanged.emit(self.scale())
        self.update()

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.update()

    # --- geometry --------------------------------------------------------------------------
    def scale(self) -> float:
        if self.image is None or self.image.isNull():
            return 1.0
        if self.zoom is not None:
            return self.zoom
        margin = 16
        return max(0.05, min((self.width() - margin) / self.image.width(), (self.height() - margin) / self.image.height()))

    def image_rect(self) -> QRectF:
        if self.image is None:
            return QRectF()
        s = self.scale()
        w, h = self.image.width() * s, self.image.height() * s
        return QRectF((self.width() - w) / 2 + self.pan.x(), (self.height() - h) / 2 + self.pan.y(), w, h)

    def to_image(self, pos: QPointF) -> QPointF:
        r = self.image_rect()
        s = self.scale()
        return QPointF((pos.x() - r.x()) / s, (pos.y() - r.y()) / s)

    def set_zoom(self, zoom: float | None) -> None:
        self.zoom = None if zoom is None else max(0.05, min(64.0, zoom))
        if zoom is None:
            self.pan = QPointF(0, 0)
        self.zoomChanged.emit(self.scale())
        self.update()

    def zoom_by(self, factor: float) -> None:
        self.set_zoom(self.scale() * factor)

    # --- painting --------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().color(QPalette.ColorRole.Base).darker(108))
        if self.image is None or self.image.isNull():
            if self.placeholder:
                p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
                p.drawText(self.rect().adjusted(20, 20, -20, -20), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        r = self.image_rect()
        smooth = self.scale() < 2.0
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        p.drawImage(r, self.image)
        if self.overlay is not None:
            p.drawImage(r, self.overlay)
        p.setPen(QColor(0, 0, 0, 90))
        p.drawRect(r.adjusted(-1, -1, 0, 0))
        self.paint_extra(p)

    def paint_extra(self, p: QPainter) -> None:
        """Subclasses draw on top (the brush outline)."""

    # --- interaction -----------------------------------------------------------------------
    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier or not self.wheel_handled(event):
            self.zoom_by(1.15 if event.angleDelta().y() > 0 else 1 / 1.15)
        event.accept()

    def wheel_handled(self, event) -> bool:
        """Subclasses use the plain wheel (brush size); the base view zooms."""
        return False

    def mouseDoubleClickEvent(self, event) -> None:
        self.set_zoom(None)

    def start_pan(self, event) -> bool:
        if event.button() == Qt.MouseButton.MiddleButton or (self._space and event.button() == Qt.MouseButton.LeftButton):
            self._panning_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return True
        return False

    def mousePressEvent(self, event) -> None:
        self.start_pan(event)

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
            self.zoom_by(1.25)
        elif event.key() == Qt.Key.Key_Minus:
            self.zoom_by(0.8)
        elif event.key() == Qt.Key.Key_0:
            self.set_zoom(None)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.unsetCursor()
        else:
            super().keyReleaseEvent(event)
