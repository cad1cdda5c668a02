"""Fault injection for the atomic-write tests (tests/runtime/test_fileio.py,
tests/export/test_overwrite_faults.py): a process that kills itself at its k-th file-system step."""
from __future__ import annotations

import os
import signal

from desktop.runtime import fileio


def die_at_step(kill_at: int, *, calls: tuple[str, ...], exchange_ok: bool) -> list[int]:
    """From now on, in this process (a child made for it: nothing is undone), each `os.<name>` of `calls`
    and fileio's renameat2 wrapper count two steps, one just before the call and one just after; at step
    `kill_at` the process sends itself SIGKILL. With `exchange_ok` False the wrapper answers as a file
    system without atomic exchange does, so the two-rename fallback runs. Returns the counter: [steps]."""
    count = [0]

    def step():
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def counted(fn):
        def wrapper(*a, **k):
            step()
            result = fn(*a, **k)
            step()
            return result
        return wrapper

    for name in calls:
        setattr(os, name, counted(getattr(os, name)))
    real_flags = fileio._rename_flags
    fileio._rename_flags = counted(lambda src, dst, flags: real_flags(src, dst, flags) if exchange_ok else False)
    return count
