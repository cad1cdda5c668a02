"""What the network test runs inside netwatch.py: real entry points, kept busy for a while.

    python workload.py generate SECONDS OUT_DIR   # `diffusion-studio generate` (in-process), repeated
                                                   # until SECONDS have passed, then `info`
    python workload.py app SECONDS                 # the app, idle on its default model for SECONDS

ONNX Runtime's telemetry starts about 9 s after a session opens, so SECONDS is well above that.
"""
from __future__ import annotations

import sys
import time


def generate(seconds: float, out_dir: str) -> int:
    from desktop.cli import main

    started = time.monotonic()
    runs = 0
    while time.monotonic() - started < seconds:
        code = main(["generate", "--model", "digits", "--class", "3", "--steps", "20", "--batch", "4",
                     "--seed", str(runs), "--out", out_dir, "--quiet"])
        if code != 0:
            return code
        runs += 1
    print(f"workload: {runs} generate runs in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return main(["info", "digits"])


def app(seconds: float) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.ui.app import main

    qt = QApplication.instance() or QApplication(["diffusion-studio"])
    opened = []

    def quit_app():
        windows = [w for w in qt.topLevelWidgets() if hasattr(w, "model") and hasattr(w.model, "bundle")]
        opened.extend(w.model.bundle.name for w in windows if w.model.bundle is not None)
        qt.quit()

    QTimer.singleShot(int(seconds * 1000), quit_app)
    code = main([])
    print(f"workload: the app was idle on {opened} for {seconds} s", file=sys.stderr)
    return code or (0 if opened else 3)  # a session must have been open, or the test proves nothing


if __name__ == "__main__":
    what, seconds, *rest = sys.argv[1:]
    sys.exit(generate(float(seconds), *rest) if what == "generate" else app(float(seconds)))
