"""Which packages and data the wheel carries (everything else is in pyproject.toml).

setuptools cannot say this in pyproject.toml alone: the default models live in `assets/models/`
(the repository's layout) but must install as package data, so the wheel maps that folder to the
package `desktop.default_models` (docs/PACKAGING.md). Each model folder is listed as a data package
so setuptools copies every file in it.
"""
from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

MODELS = Path("assets") / "models"
CODE = ("diffusion", "engine", "export", "desktop")

code_packages = find_packages(include=[f"{name}*" for name in CODE])  # folders with an __init__.py
model_packages = ["desktop.default_models"] + [f"desktop.default_models.{name}"
                                               for name in find_namespace_packages(where=str(MODELS))]

setup(
    packages=code_packages + model_packages,
    package_dir={"desktop.default_models": str(MODELS)},
    package_data={
        "engine": ["presets/*.toml", "sd_configs/**/*"],
        "desktop": ["ui/icons/*"],
        **{name: ["*"] for name in model_packages},
    },
    include_package_data=False,
)
