"""Diffusion Studio desktop app: runtime (no Qt, no torch) and ui (Qt).

Zero network: ONNX Runtime (>= 1.29 on Linux and macOS) uploads telemetry and writes a device id
under ~/.cache/Microsoft/DeveloperTools unless ORT_DISABLE_TELEMETRY=1 is set before it
initialises. Every package that can load ONNX Runtime (desktop, export) imports this one first, so
the app, `generate`/`info`, `python -m desktop`, export's parity checks and a program using the
library all run with telemetry off. A value the user set is kept (setdefault). On Windows ONNX
Runtime reports through ETW instead; `desktop.runtime.providers` turns its events off there.
"""
import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
