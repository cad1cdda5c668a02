"""`export --overwrite` killed at every step of putting the new bundle in place (issue 13).

The export's last act is `export.out_dir.publish_bundle` (check OUT_DIR again, swap the folders, remove
the old one) and then removing its temporary folder. A forked child does exactly that with two real
bundles and SIGKILLs itself just before or just after its k-th file-system call (rename, replace,
exchange, fsync, unlink, rmdir), for every k until it completes. After each kill OUT_DIR must open
with every hash checked as the old bundle or the new one, and the next export's cleaning
(`fileio.clean_leftovers(parent, name)`, as export_bundle and the command do first) must leave
nothing of ours behind. Both the atomic exchange (Linux, macOS) and the two-rename fallback (other
file systems; its window is repaired by the cleaning) are driven.
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from desktop.runtime import fileio
from desktop.runtime.bundle import open_bundle
from export.out_dir import publish_bundle
from tests.helpers.faults import die_at_step
from tests.helpers.tiny_bundles import make_bundle

pytestmark = pytest.mark.slow  # dozens of forked writers

COUNTED = ("rename", "replace", "fsync", "unlink", "rmdir")


def _publish_and_die_at(kill_at: int, exchange_ok: bool, new: Path, out: Path) -> None:
    """In the forked child: an export's ending, killed at step `kill_at`; never returns."""
    try:
        tmp = fileio.temp_dir(out, "export")  # named with this process's pid, as an export's is
        shutil.copytree(new, tmp / "bundle")
        die_at_step(kill_at, calls=COUNTED, exchange_ok=exchange_ok)
        try:
            publish_bundle(tmp / "bundle", out, overwrite=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        os._exit(0)
    except BaseException:  # noqa: BLE001 - the parent sees a failed child
        os._exit(3)


def _state(out: Path, hashes: dict) -> str:
    if not out.exists():
        return "neither"
    try:
        return hashes.get(open_bundle(out, provider="cpu", verify=True).model_hash, "another bundle")
    except Exception as exc:  # noqa: BLE001 - a half bundle: the failure this test exists to catch
        return f"half ({exc})"


@pytest.mark.parametrize("exchange_ok", [True, False])
def test_a_killed_overwrite_leaves_the_old_or_the_new_bundle(tmp_path, exchange_ok):
    if exchange_ok:
        a, b = tmp_path / "probe-a", tmp_path / "probe-b"
        a.mkdir(), b.mkdir()
        if not fileio.exchange(a, b):
            pytest.skip("this file system cannot exchange two folders atomically")
    old_src = make_bundle(tmp_path / "old-src", "latent", "text", size=16)
    new_src = make_bundle(tmp_path / "new-src", "pixel", "class", name="new")
    hashes = {open_bundle(old_src, provider="cpu").model_hash: "old", open_bundle(new_src, provider="cpu").model_hash: "new"}
    assert len(hashes) == 2
    kill_at, outcomes = 1, []
    while True:
        folder = tmp_path / f"run{kill_at}"
        folder.mkdir()
        out = folder / "bundle"
        shutil.copytree(old_src, out)
        pid = os.fork()
        if pid == 0:
            _publish_and_die_at(kill_at, exchange_ok, new_src, out)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert killed or (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0), f"step {kill_at}: status {status}"
        state = _state(out, hashes)
        fileio.clean_leftovers(folder, out.name)  # the next export's first act
        if state == "neither" and not exchange_ok:
            state = "old (restored)" if _state(out, hashes) == "old" else "lost"
        assert state in ("old", "new", "old (restored)"), f"killed at step {kill_at}: {state}"
        assert sorted(p.name for p in folder.iterdir()) == ["bundle"], f"killed at step {kill_at}: left behind"
        outcomes.append(state)
        if not killed:
            assert state == "new"
            break
        kill_at += 1
    print(f"exchange={exchange_ok}: {len(outcomes)} runs: " + ", ".join(f"{s} x{outcomes.count(s)}" for s in sorted(set(outcomes))))
    assert outcomes[0] == "old" and outcomes[-1] == "new" and kill_at > 10, outcomes
    if exchange_ok:
        assert "old (restored)" not in outcomes  # the exchange has no window at all
    else:
        assert "old (restored)" in outcomes  # the fallback's window was hit, and repaired
