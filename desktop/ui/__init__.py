"""The PySide6 application."""
