"""Widgets: each binds to the StudioModel (reads state, calls setters, listens to signals)."""
