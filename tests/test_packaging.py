"""Packaging: the desktop entry, the log file, the installation check, and (slow) the wheel itself,
installed into a fresh environment: it carries the default models and refuses a shadowed package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from desktop.runtime import desktop_entry, installation, logs

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ shipped assets

ASSETS_BUDGET_BYTES = 100_000_000  # assets/ (default models, screenshots) stays within 100 MB


def test_the_shipped_assets_stay_within_their_budget():
    files = [p for p in (ROOT / "assets").rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    largest = max(files, key=lambda p: p.stat().st_size)
    assert total <= ASSETS_BUDGET_BYTES, (f"assets/ holds {total / 1e6:.2f} MB, over its 100 MB budget "
                                          f"(largest: {largest.relative_to(ROOT)})")


# ------------------------------------------------------------------------------ desktop entry


def test_desktop_entry_names_this_install_and_the_icon():
    text = desktop_entry.desktop_entry(["/opt/my env/bin/diffusion-studio"])
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert text.startswith("[Desktop Entry]\n")
    assert lines["Type"] == "Application" and lines["Name"] == "Diffusion Studio"
    assert lines["Exec"] == '"/opt/my env/bin/diffusion-studio"'  # quoted: the path has a space
    assert lines["Icon"] == "diffusion-studio" and lines["Terminal"] == "false"
    assert lines["Categories"].endswith(";")
    assert desktop_entry.desktop_entry(["/usr/bin/python3", "-m", "desktop"]).count("Exec=/usr/bin/python3 -m desktop") == 1


def test_desktop_entry_installs_and_removes_under_xdg_data_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert desktop_entry.main([]) == 0
    entry = tmp_path / "applications" / "diffusion-studio.desktop"
    icon = tmp_path / "icons" / "hicolor" / "scalable" / "apps" / "diffusion-studio.svg"
    assert entry.read_text() == desktop_entry.desktop_entry()
    assert icon.read_bytes() == desktop_entry.ICON.read_bytes()
    assert desktop_entry.main(["--remove"]) == 0
    assert not entry.exists() and not icon.exists()
    assert desktop_entry.main(["--print"]) == 0
    assert capsys.readouterr().out.endswith(desktop_entry.desktop_entry())


def test_the_icon_is_a_valid_svg_qt_can_draw(qapp):
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(desktop_entry.ICON))
    assert renderer.isValid() and renderer.defaultSize().width() == 256


# ------------------------------------------------------------------------------ log file


@pytest.fixture
def fresh_logger():
    log = logs.logger()
    before = list(log.handlers)
    yield log
    for handler in log.handlers[len(before):]:
        handler.close()
        log.removeHandler(handler)


def test_log_file_in_the_home_folder_rotates(tmp_path, monkeypatch, fresh_logger):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    path = logs.start_log(max_bytes=2000, backups=2)
    assert path == tmp_path / "logs" / logs.FILE_NAME
    assert "start: Diffusion Studio" in path.read_text()
    assert logs.start_log() == path  # once per process
    for i in range(200):
        fresh_logger.getChild("test").info("line %d %s", i, "x" * 40)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == [logs.FILE_NAME, logs.FILE_NAME + ".1", logs.FILE_NAME + ".2"]  # rotated, 2 kept
    assert all(p.stat().st_size <= 2100 for p in path.parent.iterdir())
    assert "line 199" in path.read_text()


def test_an_unwritable_log_folder_means_no_log_not_a_failure(tmp_path, monkeypatch, fresh_logger):
    (tmp_path / "logs").write_text("a file where the folder should be")
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    assert logs.start_log() is None
    fresh_logger.error("still fine")


# ------------------------------------------------------------------------------ installation check


def test_this_checkout_is_one_installation():
    assert installation.installation_problem() is None


@pytest.mark.slow
def test_a_package_shadowed_from_another_folder_is_named(tmp_path, monkeypatch):
    shadow = tmp_path / "elsewhere" / "diffusion"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(shadow.parent))
    monkeypatch.delitem(sys.modules, "diffusion")  # as at start-up, before anything imported it
    problem = installation.installation_problem()
    assert problem is not None and "'diffusion'" in problem and str(shadow) in problem
    assert "environment of its own" in problem


def test_an_overwritten_init_file_is_found_by_its_record(tmp_path):
    import base64
    import hashlib

    site = tmp_path / "site-packages"
    rows = []
    for name in installation.PACKAGES:
        (site / name).mkdir(parents=True)
        data = f"# {name}\n".encode()
        (site / name / "__init__.py").write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{name}/__init__.py,sha256={digest},{len(data)}")
    (site / "diffusion_studio-0.1.0.dist-info").mkdir()
    (site / "diffusion_studio-0.1.0.dist-info" / "RECORD").write_text("\n".join(rows) + "\n")
    check = installation._files_changed_since_install  # noqa: SLF001 - the RECORD check alone
    assert check(site) is None
    (site / "engine" / "__init__.py").write_text("# someone else's engine\n")
    assert check(site) == "engine/__init__.py"


# ------------------------------------------------------------------------------ the wheel (slow)


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def _tiny_wheel(folder: Path, name: str, files: dict[str, str]) -> Path:
    """A wheel of distribution `name` holding `files` (a look-alike of another project on PyPI)."""
    src = folder / f"src-{name}"
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=77"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "6.12.0"
        [tool.setuptools.packages.find]
        include = ["{name}*"]
    """))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(folder), str(src)])
    return next(folder.glob(f"{name}-*.whl"))


@pytest.mark.slow  # builds a 90 MB wheel and installs it
def test_the_wheel_carries_the_default_models_and_runs_from_a_fresh_environment(tmp_path):
    # built from a copy of the files git knows, so no build/ folder lands in the checkout (setuptools
    # would reuse it, stale files and all, for the next wheel)
    src, dist = tmp_path / "src", tmp_path / "dist"
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
         cwd=tmp_path)
    wheel = next(dist.glob("diffusion_studio-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = _run(["git", "ls-files", "assets/models"], cwd=ROOT).stdout.split()
    assert tracked, "no default models in assets/models"
    missing = [t for t in tracked if "desktop/default_models/" + t[len("assets/models/"):] not in names]
    assert missing == []
    for needed in ("desktop/ui/icons/diffusion-studio.svg", "engine/presets/tiny-pixel.toml",
                   "engine/sd_configs/sd1/original.yaml"):
        assert needed in names

    # a fresh environment with our wheel; its dependencies come from this test environment's
    # site-packages through a .pth line (its editable install of the checkout stays inactive)
    env_dir = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {**os.environ, "DIFFUSION_STUDIO_HOME": str(tmp_path / "home"), "PYTHONPATH": ""}
    where = _run([str(python), "-c", "from desktop.runtime.paths import bundled_models_dir as b; print(b())"],
                 cwd=tmp_path, env=env).stdout.strip()
    assert Path(where) == site / "desktop" / "default_models"
    command = env_dir / "bin" / "diffusion-studio"
    info = _run([str(command), "info", "digits"], cwd=tmp_path, env=env).stdout
    assert info.startswith("digits: ") and "model hash:" in info

    # another distribution's top-level `diffusion` over ours: the command refuses in one sentence
    other = _tiny_wheel(tmp_path / "other", "diffusion", {"diffusion/__init__.py": "VERSION = '6.12'\n"})
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(other)])
    out = subprocess.run([str(command), "info", "digits"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2, out.stderr
    assert "diffusion/__init__.py" in out.stderr and "the distribution diffusion " in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
