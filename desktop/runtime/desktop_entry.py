"""`diffusion-studio desktop-entry`: put Diffusion Studio in the Linux desktop's application menu.

pip cannot install a menu entry: a wheel's files go into an environment the desktop does not look
at. This writes the freedesktop.org entry `diffusion-studio.desktop` to
`$XDG_DATA_HOME/applications` (default `~/.local/share/applications`) and the icon to
`$XDG_DATA_HOME/icons/hicolor/scalable/apps/diffusion-studio.svg`. `Exec` is the absolute path of
the `diffusion-studio` command of this install, so an entry for a virtual environment works without
it being on PATH. `--print` shows the entry without writing; `--remove` takes both files away.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from . import fileio

NAME = "diffusion-studio"
ICON = Path(__file__).resolve().parents[1] / "ui" / "icons" / f"{NAME}.svg"

__all__ = ["ICON", "desktop_entry", "install", "main", "remove"]


def data_home(env=None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def command_line() -> list[str]:
    """How this install starts the app: its `diffusion-studio` script, else `python -m desktop`."""
    script = Path(sys.executable).with_name(NAME)
    if script.is_file():
        return [str(script)]
    found = shutil.which(NAME)
    return [found] if found else [sys.executable, "-m", "desktop"]


def desktop_entry(exec_argv: list[str] | None = None) -> str:
    """The text of diffusion-studio.desktop (Desktop Entry Specification 1.5)."""
    argv = exec_argv or command_line()
    exec_line = " ".join(_quote(a) for a in argv)
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.5",
        "Name=Diffusion Studio",
        "GenericName=Image Generator",
        "Comment=Generate and paint images with diffusion models, offline",
        f"Exec={exec_line}",
        f"TryExec={argv[0]}",
        f"Icon={NAME}",
        "Terminal=false",
        "Categories=Graphics;2DGraphics;RasterGraphics;",
        "Keywords=diffusion;stable diffusion;AI;image;inpainting;",
        f"StartupWMClass={NAME}",
        "",
    ])


def _quote(arg: str) -> str:
    """An Exec argument: quoted when it holds a space or a reserved character (the spec's rules)."""
    if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`%'):
        return arg
    return '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg).replace("%", "%%") + '"'


def install(data: Path | None = None) -> tuple[Path, Path]:
    """Write the entry and the icon under `data` (XDG_DATA_HOME); (entry path, icon path)."""
    data = data or data_home()
    entry = data / "applications" / f"{NAME}.desktop"
    icon = data / "icons" / "hicolor" / "scalable" / "apps" / f"{NAME}.svg"
    fileio.write_bytes(icon, ICON.read_bytes())
    fileio.write_text(entry, desktop_entry())
    return entry, icon


def remove(data: Path | None = None) -> list[Path]:
    data = data or data_home()
    gone = []
    for path in (data / "applications" / f"{NAME}.desktop", data / "icons" / "hicolor" / "scalable" / "apps" / f"{NAME}.svg"):
        if path.is_file():
            path.unlink()
            gone.append(path)
    return gone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="diffusion-studio desktop-entry", description=__doc__.split("\n\n")[0])
    p.add_argument("--print", action="store_true", help="print the entry instead of writing it")
    p.add_argument("--remove", action="store_true", help="remove the entry and the icon")
    args = p.parse_args(argv)
    if args.print:
        print(desktop_entry(), end="")
        return 0
    try:
        if args.remove:
            gone = remove()
            print("\n".join(f"removed {path}" for path in gone) or "nothing to remove")
            return 0
        entry, icon = install()
    except OSError as exc:
        print(f"diffusion-studio desktop-entry: cannot write to {data_home()} ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(f"wrote {entry}\nwrote {icon}\nDiffusion Studio is in the application menu (log out and in if it does not show yet).")
    return 0
