"""A live loss curve drawn with QPainter: the raw points faint, an exponential moving average bold,
a log scale when the loss spans more than a decade, and the latest value in the corner."""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

SMOOTHING_POINTS = 50   # the smoothed line averages over about 1/50 of the points (at least 10)
MAX_DRAWN = 1500  # points drawn per line at most (a long run logs tens of thousands)


def smoothed(values: list[float], weight: float | None = None) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing); by default its
    window grows with the number of points, so a long run's line is as calm as a short one's."""
    if weight is None:
        weight = 1.0 - 1.0 / max(10.0, len(values) / SMOOTHING_POINTS)
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** (i + 1)))
    return out


def nice_ticks(lo: float, hi: float, count: int = 4, *, least: float = 0.0) -> list[float]:
    """About `count` round values covering [lo, hi], at least `least` apart (1 for steps: no
    fractional step is a tick)."""
    if not hi > lo:
        return [lo]
    raw = max((hi - lo) / count, least)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw and not (least and (m * mag) % least))
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def log_ticks(e0: float, e1: float) -> list[float]:
    """Round values between 10**e0 and 10**e1: the powers of ten, with 2 and 5 times them when the
    range spans less than two decades."""
    steps = (1, 2, 5) if e1 - e0 < 2 else (1,)
    ticks = [m * 10 ** e for e in range(math.floor(e0), math.ceil(e1) + 1) for m in steps]
    return [t for t in ticks if 10 ** e0 <= t <= 10 ** e1]


def format_tick(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


class LossPlot(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: list[tuple[int, float]] = []
        self.title = "loss"
        self.placeholder = "The loss appears here once training runs."
        self.setMinimumSize(260, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Training loss per logged step: faint = measured, bold = smoothed. "
                        "It should fall quickly, then slowly; a diffusion loss stays noisy.")

    def set_points(self, points: list[tuple[int, float]], title: str = "loss") -> None:
        self.points = [(int(s), float(v)) for s, v in points if math.isfinite(v)]
        self.title = title
        self.update()

    def _scale(self) -> tuple[bool, float, float]:
        values = [v for _, v in self.points]
        lo, hi = min(values), max(values)
        log = lo > 0 and hi / lo > 10
        if log:
            return True, math.log10(lo), math.log10(hi)
        pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
        return False, min(0.0, lo) if lo >= 0 and lo < (hi - lo) else lo - pad, hi + pad

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        text = pal.text().color()
        dim = QColor(text)
        dim.setAlpha(110)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        if len(self.points) < 2:
            p.setPen(dim)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        fm = p.fontMetrics()
        stride = max(1, -(-len(self.points) // MAX_DRAWN))
        area = QRectF(self.rect()).adjusted(fm.horizontalAdvance("0.0000") + 12, fm.height() + 8, -12, -fm.height() - 10)
        log, y0, y1 = self._scale()
        x0, x1 = self.points[0][0], max(self.points[-1][0], self.points[0][0] + 1)

        def to_px(step: float, v: float) -> QPointF:
            y = math.log10(max(v, 1e-12)) if log else v
            return QPointF(area.left() + (step - x0) / (x1 - x0) * area.width(),
                           area.bottom() - (y - y0) / ((y1 - y0) or 1.0) * area.height())

        self._grid(p, area, log=log, y0=y0, y1=y1, x0=x0, x1=x1, color=dim, to_px=to_px)
        accent = QColor(pal.highlight().color())
        faint = QColor(accent)
        faint.setAlpha(70)
        keep = list(range(0, len(self.points), stride)) + ([len(self.points) - 1] if (len(self.points) - 1) % stride else [])
        self._polyline(p, [to_px(*self.points[i]) for i in keep], QPen(faint, 1.0))
        smooth = smoothed([v for _, v in self.points])
        self._polyline(p, [to_px(self.points[i][0], smooth[i]) for i in keep], QPen(accent, 2.2))
        p.setPen(text)
        self._headline(p, QRectF(6, 2, self.width() - 18, fm.height() + 4),
                       f"{self.title}{'  (log scale)' if log else ''}", self.points[-1][0], smooth[-1])

    @staticmethod
    def _headline(p: QPainter, box: QRectF, title: str, step: int, value: float) -> None:
        """The title on the left and the latest smoothed value on the right, shortened (or left
        out) where the two would overlap."""
        fm = p.fontMetrics()
        p.drawText(box, Qt.AlignmentFlag.AlignLeft, title)
        room = box.width() - fm.horizontalAdvance(title) - 16
        for right in (f"step {step:,}: {value:.4g} (smoothed)", f"step {step:,}: {value:.4g}", f"{value:.4g}"):
            if fm.horizontalAdvance(right) <= room:
                p.drawText(box, Qt.AlignmentFlag.AlignRight, right)
                return

    @staticmethod
    def _polyline(p: QPainter, pts: list[QPointF], pen: QPen) -> None:
        path = QPainterPath(pts[0])
        for q in pts[1:]:
            path.lineTo(q)
        p.setPen(pen)
        p.drawPath(path)

    @staticmethod
    def _grid(p, area, *, log, y0, y1, x0, x1, color, to_px) -> None:
        p.setPen(QPen(color, 0.6, Qt.PenStyle.DotLine))
        fm = p.fontMetrics()
        ticks = log_ticks(y0, y1) if log else nice_ticks(y0, y1)
        for v in ticks:
            y = to_px(x0, v).y()
            if area.top() - 1 <= y <= area.bottom() + 1:
                p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
                p.drawText(QRectF(0, y - fm.height() / 2, area.left() - 6, fm.height()),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, format_tick(v))
        for s in nice_ticks(x0, x1, 5, least=1):
            x = to_px(s, 1.0).x()
            if area.left() - 1 <= x <= area.right() + 1:
                p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
                p.drawText(QRectF(x - 40, area.bottom() + 4, 80, fm.height()), Qt.AlignmentFlag.AlignHCenter, f"{int(s):,}")
        p.setPen(QPen(color, 1.0))
        p.drawRect(area)
