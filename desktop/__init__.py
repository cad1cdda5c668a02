"""Diffusion Studio desktop app: runtime (no Qt, no torch) and ui (Qt).

Zero network: ONNX Runtime (>= 1.29 on Linux and macOS) uploads telemetry and writes a device id
under ~/.cache/Microsoft/DeveloperTools unless ORT_DISABLE_TELEMETRY=1 is set before it
initialises. Every package that can load ONNX Runtime (desktop, export) imports this one first, so
the app, `generate`/`info`, `python -m desktop`, export's parity checks and a program using the
library all run with telemetry off. A value the user set is kept (setdefault). On Windows ONNX
Runtime reports through ETW instead; `desktop.runtime.providers` turns its events off there.

ONNX Runtime reads the variable when it is imported, and nothing undoes that later: a program that
imported `onnxruntime` itself before this package, without the variable, keeps the telemetry on
(measured: lookups of mobile.events.data.microsoft.com within 20 s). We cannot make that silent, so
it gets a warning saying so and how to fix it.
"""
import os
import sys

TELEMETRY_WARNING = ("ONNX Runtime was imported before Diffusion Studio without ORT_DISABLE_TELEMETRY=1, so its "
                     "telemetry stays on in this program (Linux and macOS, ONNX Runtime 1.29 and later); set "
                     "ORT_DISABLE_TELEMETRY=1 before importing onnxruntime, or import desktop first")

if "onnxruntime" in sys.modules and "ORT_DISABLE_TELEMETRY" not in os.environ and sys.platform != "win32":
    import warnings

    warnings.warn(TELEMETRY_WARNING, RuntimeWarning, stacklevel=2)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
