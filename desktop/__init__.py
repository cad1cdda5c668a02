"""Diffusion Studio desktop app: runtime (no Qt, no torch) and ui (Qt)."""
