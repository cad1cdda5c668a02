"""`diffusion-studio` with no arguments: open the desktop app.

`main(argv) -> int`. Without a display (Linux: no DISPLAY or WAYLAND_DISPLAY, and QT_QPA_PLATFORM
not set to offscreen/minimal) it prints one line saying how to run it under xvfb-run and returns
2, instead of letting Qt abort. Options for scripts and benchmarks:
  --ready-marker   print "diffusion-studio: ready <seconds>" once the window is shown and usable
  --quit-when-ready  exit right after that (cold-start benchmark)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")


def display_problem(env=None, platform: str | None = None) -> str | None:
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if not platform.startswith("linux"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if qpa in HEADLESS_PLATFORMS:
        return None
    return ("diffusion-studio: no display found (DISPLAY and WAYLAND_DISPLAY are unset); "
            "run it under a virtual display with: xvfb-run -a diffusion-studio")


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(prog="diffusion-studio app", description="Open the Diffusion Studio desktop app.")
    parser.add_argument("--ready-marker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quit-when-ready", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv or []))
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .theme import apply_theme, follow_system
    from .window import MainWindow

    from PySide6.QtGui import QIcon

    from desktop.runtime.desktop_entry import ICON
    from desktop.runtime.logs import log_unhandled, start_log

    start_log()
    sys.excepthook = log_unhandled
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "diffusion-studio"])
    app.setApplicationName("Diffusion Studio")
    app.setOrganizationName("diffusion-studio")
    app.setDesktopFileName("diffusion-studio")
    app.setWindowIcon(QIcon(str(ICON)))
    window = MainWindow()
    apply_theme(window.model.settings["theme"], app)
    follow_system(lambda: window.model.settings["theme"], app)
    window.show()

    def ready():
        window.load_default_model()
        app.processEvents()
        if args.ready_marker or args.quit_when_ready:
            print(f"diffusion-studio: ready {time.perf_counter() - started:.3f}", flush=True)
        if args.quit_when_ready:
            window.close()
            app.quit()

    QTimer.singleShot(0, ready)
    return int(app.exec())
