"""Help -> Open log folder opens the folder of the app's log file."""
from desktop.runtime import logs


def test_help_menu_opens_the_log_folder(qtbot, home, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    from desktop.ui.window import MainWindow

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    window = MainWindow()
    qtbot.addWidget(window)
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    action = next(a for a in help_menu.actions() if a.text() == "Open log folder")
    action.trigger()
    assert opened == [str(logs.log_dir())] and logs.log_dir().is_dir()
    assert logs.log_dir() == home["home"] / "logs"
