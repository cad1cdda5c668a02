"""The bad-input matrix of issue 13 on the command line: every case exits with its code, says what
is wrong in one line on stderr, prints no traceback, and loses or leaves nothing.

`run(argv)` calls `desktop.cli.main` in-process (a traceback would fail the test by itself); the
cases that need a real process (pipes, signals, mounts) run one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.cli import main as studio_main
from desktop.runtime import pngmeta
from desktop.runtime.pngmeta import read_recipe

ROOT = Path(__file__).resolve().parents[2]


def run(argv, capsys) -> tuple[int, list[str], list[str]]:
    code = studio_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.strip().splitlines()


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def assert_one_line(err: list[str], *words: str) -> None:
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for w in words:
        assert w in err[0], (w, err[0])


# --------------------------------------------------------------------------------------------
# --out: checked before any work is done


def test_out_that_is_a_file_is_refused_before_generating(bundles, tmp_path, capsys, monkeypatch):
    (tmp_path / "out").write_text("my notes")
    from desktop.runtime import pipeline
    monkeypatch.setattr(pipeline, "generate", lambda *a, **k: pytest.fail("generated before checking --out"))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 2 and out == []
    assert_one_line(err, str(tmp_path / "out"), "is a file, not a folder")
    assert (tmp_path / "out").read_text() == "my notes"


def test_out_on_a_read_only_or_full_disk_is_refused_before_generating(bundles, tmp_path, capsys, monkeypatch):
    import errno

    from desktop.runtime import fileio

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    real_open = fileio.os.open
    monkeypatch.setattr(fileio.os, "open", lambda path, *a, **k: refuse() if ".ds_" in str(path) else real_open(path, *a, **k))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--out", tmp_path / "ro", "--quiet"], capsys)
    assert code == 2 and out == []
    assert_one_line(err, str(tmp_path / "ro"), "Read-only file system")
    monkeypatch.setattr(fileio.os, "open", real_open)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 1000))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--out", tmp_path / "full", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "full"), "full", "needed")
    assert tree(tmp_path) == []


def test_disk_full_part_way_through_a_batch_reports_what_was_saved(bundles, tmp_path, capsys, monkeypatch):
    import errno

    real = pngmeta.save_png
    calls = []

    def save_png(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)
    monkeypatch.setattr(pngmeta, "save_png", save_png)
    out_dir = tmp_path / "out"
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--batch", "8", "--steps", "2",
                          "--out", out_dir, "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "saved 2 of 8 image(s)", str(out_dir), "image 3 could not be written",
                    "No space left on device")
    assert [Path(p).name for p in out] == ["pixel_class-0.png", "pixel_class-1.png"]
    assert tree(out_dir) == ["pixel_class-0.png", "pixel_class-1.png"]
    assert read_recipe(out[1]).seed == 1


REAL_DISK_FULL = r"""
import sys
from pathlib import Path
from desktop.runtime import pngmeta

disk = Path(sys.argv[1])
real = pngmeta.save_png
count = [0]

def save_png(*a, **k):
    count[0] += 1
    if count[0] == 3:  # another program fills the disk while the batch is being saved
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
    return real(*a, **k)

pngmeta.save_png = save_png
from desktop.cli import main
sys.exit(main(["generate", "--model", "digits", "--class", "4", "--batch", "8", "--steps", "2",
               "--out", str(disk / "out"), "--quiet"]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root to mount a small tmpfs in a private mount namespace")
def test_a_really_full_disk_part_way_through_a_batch(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=1m tmpfs {disk} && "
              f"{sys.executable} -c '{REAL_DISK_FULL}' {disk}; code=$?; ls -a {disk}/out; exit $code")
    out = subprocess.run(["unshare", "--mount", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert_one_line(err, "saved 2 of 8 image(s)", "image 3 could not be written (No space left on device)")
    listing = out.stdout.split()
    assert [Path(p).name for p in listing if p.endswith(".png") and "/" in p] == ["digits-0.png", "digits-1.png"]
    assert sorted(n for n in listing if not n.startswith("/")) == [".", "..", "digits-0.png", "digits-1.png"]
