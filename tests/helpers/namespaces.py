"""Private Linux namespaces for the tests that cut the network or mount a small file system.

`unshare_or_skip("net", "mount")` gives the `unshare` command prefix for new namespaces of those
kinds, or skips the test saying why. It prefers a user namespace (`--user --map-root-user`), which
needs no root where the kernel allows unprivileged user namespaces (most Linux systems and CI
runners), so these tests also run for a user who is not root; root on a kernel without them gets
plain `unshare`.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import sys

import pytest


@functools.cache
def unshare_prefix(*kinds: str) -> tuple[tuple[str, ...] | None, str]:
    """(the command prefix, "") where it works here, else (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, "namespaces are Linux only"
    if shutil.which("unshare") is None:
        return None, "needs the unshare command (util-linux)"
    flags = tuple(f"--{k}" for k in kinds)
    for prefix in (("unshare", "--user", "--map-root-user", *flags), ("unshare", *flags)):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix, ""
    return None, f"unshare {' '.join(flags)} is not permitted here (no user namespaces, and not root)"


def unshare_or_skip(*kinds: str) -> list[str]:
    prefix, why = unshare_prefix(*kinds)
    if prefix is None:
        pytest.skip(why)
    return list(prefix)
