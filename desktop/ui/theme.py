"""Light and dark themes: the Fusion style with a palette, following the system unless the user chose.

The setting `theme` is "system" (the default: Qt's colour-scheme hint, followed live when the
desktop switches), "light" or "dark". Widgets that draw their own colours read them from the
palette (`accent(widget)`), so both themes look intended.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

THEMES = ("system", "light", "dark")
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}

DARK = {  # role -> colour (a calm dark grey with a blue accent)
    QPalette.ColorRole.Window: "#2b2d31",
    QPalette.ColorRole.WindowText: "#e6e6e6",
    QPalette.ColorRole.Base: "#1f2023",
    QPalette.ColorRole.AlternateBase: "#2f3136",
    QPalette.ColorRole.ToolTipBase: "#3a3c42",
    QPalette.ColorRole.ToolTipText: "#f0f0f0",
    QPalette.ColorRole.PlaceholderText: "#8c8f96",
    QPalette.ColorRole.Text: "#e6e6e6",
    QPalette.ColorRole.Button: "#35373c",
    QPalette.ColorRole.ButtonText: "#e6e6e6",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Light: "#45474d",
    QPalette.ColorRole.Midlight: "#3c3e44",
    QPalette.ColorRole.Mid: "#303236",
    QPalette.ColorRole.Dark: "#1b1c1f",
    QPalette.ColorRole.Shadow: "#101113",
    QPalette.ColorRole.Highlight: "#3d7bd9",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6ea8ff",
    QPalette.ColorRole.LinkVisited: "#b493ff",
}
DISABLED = {QPalette.ColorRole.WindowText: "#7a7d83", QPalette.ColorRole.Text: "#7a7d83",
            QPalette.ColorRole.ButtonText: "#7a7d83", QPalette.ColorRole.Highlight: "#4a4d53"}


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, colour in DARK.items():
        palette.setColor(role, QColor(colour))
    for role, colour in DISABLED.items():
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(colour))
    return palette


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return bool(scheme and scheme() == Qt.ColorScheme.Dark)


def resolve(choice: str) -> str:
    """The theme to show for a setting: "light" or "dark"."""
    if choice in ("light", "dark"):
        return choice
    return "dark" if system_is_dark() else "light"


def apply_theme(choice: str, app: QApplication | None = None) -> str:
    """Apply a theme setting to the application; returns "light" or "dark"."""
    app = app or QApplication.instance()
    shown = resolve(choice if choice in THEMES else "system")
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if shown == "dark" else app.style().standardPalette())
    app.setProperty("studioTheme", shown)
    return shown


def follow_system(get_choice, app: QApplication | None = None) -> None:
    """Re-apply the theme when the desktop switches between light and dark (setting "system")."""
    app = app or QApplication.instance()
    hints = QGuiApplication.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda *_: get_choice() == "system" and apply_theme("system", app))


def is_dark(widget: QWidget | None = None) -> bool:
    palette = widget.palette() if widget is not None else QApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def accent(widget: QWidget | None = None) -> QColor:
    palette = widget.palette() if widget is not None else QApplication.palette()
    return palette.color(QPalette.ColorRole.Highlight)


def muted(widget: QWidget | None = None) -> str:
    """A CSS colour for secondary text in rich-text labels."""
    return "#9a9da3" if is_dark(widget) else "#6b6e74"
