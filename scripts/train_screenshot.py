"""Screenshot of the Train window during a real training run (the README's training screenshot).

    python scripts/train_screenshot.py OUT.png [--preset digits] [--data digits] [--minutes 10] [--samples 4]
    xvfb-run -a python scripts/train_screenshot.py OUT.png        (a real X server)

Opens the app (offscreen unless a display is set), chooses the preset and a built-in data set in the
Train window, starts a run with a time budget, waits until it has written `--samples` sample grids,
grabs the window, then cancels the run and deletes it. Needs the engine extra; DIFFUSION_STUDIO_HOME
points into a temporary folder, so the user's runs and models are never touched.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait_for(app, condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise SystemExit(f"train_screenshot: gave up waiting for {what} after {timeout:.0f} s")
        app.processEvents()
        time.sleep(0.05)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--preset", default="digits")
    p.add_argument("--data", default="digits", help="a built-in set (shapes, landscapes, digits)")
    p.add_argument("--minutes", type=int, default=10, help="the run's time budget")
    p.add_argument("--samples", type=int, default=4, help="grab once the run has written this many sample grids")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["DIFFUSION_STUDIO_HOME"] = tempfile.mkdtemp(prefix="train-screenshot-")

    from PySide6.QtWidgets import QApplication

    from desktop.ui.window import MainWindow

    app = QApplication.instance() or QApplication(["diffusion-studio"])
    window = MainWindow()
    window.show()
    window.load_default_model()
    window.open_train()
    tw = window.train_window
    setup, session = tw.setup, tw.session
    wait_for(app, lambda: bool(setup.presets), 120, "the presets")
    setup.preset.setCurrentIndex(setup.preset.findData(args.preset))
    setup.use_generated.setChecked(True)
    setup.generated.setCurrentIndex(setup.generated.findData(args.data))
    setup.data_changed()
    wait_for(app, lambda: setup.check_result is not None, 600, "the data check")
    setup.by_time.setChecked(True)
    setup.minutes.setValue(args.minutes)
    tw.start()
    samples = lambda: session.run is not None and len(list((session.run / "samples").glob("*.png"))) >= args.samples  # noqa: E731
    wait_for(app, lambda: samples() and session.state.current is not None and session.state.current.sample, args.timeout, "sample grids")
    for _ in range(20):          # let the last events and the sample grid paint
        app.processEvents()
        time.sleep(0.05)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tw.grab().save(str(args.out))
    print(f"saved {args.out} at step {session.state.current.step} of {session.run.name}")
    session.cancel(delete=True)
    window.train_window = None
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
