"""Files written whole, folders swapped whole, JSON read with limits: every write of the project.

Every file the project writes (PNGs, studio.json, model_index.json, configs, settings, history,
manifests, checkpoints, preview maps, data sets) goes through this module, so one set of rules holds:

- **Old or new, never half.** A file is written to a temporary name in the same folder, flushed,
  fsync'd and renamed over the target (`os.replace`); the folder is fsync'd after the rename where the
  platform allows. A reader (or a crash, or a full disk) sees the old file or the new one.
- **Modes follow the umask.** Temporaries are created with `os.open(..., 0o666)` (folders `0o777`), so
  the process umask applies as for any other file (a replaced file keeps its own mode). The
  `tempfile.mkstemp` this replaces made every PNG and bundle file 0600.
- **Temporaries are recognisable and cleaned.** Every temporary is named
  `.ds_<target>.<kind>-<pid>-<random>` (kinds: `tmp` for files, `export` for bundles and `build` for
  other folders being built, `old` for the previous folder during a swap). `clean_leftovers(folder)` removes those whose process
  is gone (and, from earlier versions, `.writing-*.png` and `.<name>.export-*` / `.<name>.old-*` more
  than an hour old); a live writer's temporaries are never touched.
- **Folder swaps** (`replace_dir`): on Linux the finished folder and the old one are exchanged in one
  `renameat2(RENAME_EXCHANGE)` call (macOS: `renamex_np(RENAME_SWAP)`), so the target path holds the
  old or the new folder at every instant; the old one is deleted afterwards. Where the platform or
  file system cannot exchange (Windows, some network file systems), the old folder is renamed to
  `.ds_<name>.old-<pid>-<random>` and the new one renamed into place: between those two renames the
  target is missing, and if the process dies there, `clean_leftovers` puts the old folder back on
  the next run.
- **New names never overwrite** (`publish_new`): a finished temporary is hard-linked to the first
  free name of a list, which fails if the name exists, even in a race with another process.

Reading: `loads_json` / `read_json` turn every way a JSON text can be bad (invalid, not UTF-8, too
large, nested too deeply) into one `ValueError` sentence naming the file.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

TEMP_PREFIX = ".ds_"
_TEMP_RE = re.compile(r"^\.ds_(?P<target>.+)\.(?P<kind>[a-z]+)-(?P<pid>\d+)-[0-9a-f]{8}(?P<ext>\.[A-Za-z0-9]+)?$")
# Temporaries of earlier versions (no pid in the name): removed once they are this old.
_LEGACY_RE = re.compile(r"^(\.writing-.*\.png|\..+\.(export|old)-[A-Za-z0-9_]+|\..+\.tmp(-[0-9a-f]+)?)$")
LEGACY_AGE_S = 3600.0
MAX_JSON_BYTES = 64 << 20  # settings, history, manifests, recipes: far below this
MAX_JSON_DEPTH = 64


# --------------------------------------------------------------------------------------------
# Names


def temp_path(target: str | os.PathLike, kind: str = "tmp", suffix: str = "") -> Path:
    """A fresh temporary name beside `target`: `.ds_<name>.<kind>-<pid>-<random><suffix>`."""
    target = Path(target)
    return target.parent / f"{TEMP_PREFIX}{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep it
    return True


# --------------------------------------------------------------------------------------------
# Files


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(target: Path, suffix: str = "") -> tuple[int, Path]:
    """An exclusive new temporary file beside `target`, mode 0o666 less the umask (or the target's mode)."""
    for _ in range(100):
        tmp = temp_path(target, "tmp", suffix)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        try:
            mode = os.stat(target).st_mode & 0o7777  # a replaced file keeps its mode
        except OSError:
            mode = None
        if mode is not None and hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)
        return fd, tmp
    raise FileExistsError(f"cannot create a temporary file beside {target}")


@contextlib.contextmanager
def _written_temp(target: Path, suffix: str = "") -> Iterator[tuple[BinaryIO, Path]]:
    """Yields (file, temporary path); on success the file is flushed, fsync'd and closed; on any
    failure (also KeyboardInterrupt) the temporary is removed and the error re-raised."""
    fd, tmp = _create_temp(target, suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_file(path: str | os.PathLike, write: Callable[[BinaryIO], Any], *, make_parents: bool = True) -> Path:
    """Write `path` whole: `write(f)` fills a temporary file, which then replaces `path` atomically."""
    path = Path(path)
    if make_parents:
        make_dir(path.parent)
    clean_leftovers(path.parent, path.name)
    with _written_temp(path) as (f, tmp):
        write(f)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes, *, make_parents: bool = True) -> Path:
    return write_file(path, lambda f: f.write(data), make_parents=make_parents)


def write_text(path: str | os.PathLike, text: str, *, make_parents: bool = True) -> Path:
    """UTF-8 with "\\n" line ends on every platform."""
    return write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, make_parents: bool = True) -> Path:
    text = json.dumps(data, indent=indent)
    return write_text(path, text + "\n", make_parents=make_parents)


def publish_new(write: Callable[[BinaryIO], Any], candidates: Iterable[str | os.PathLike]) -> Path:
    """Write a new file under the first name of `candidates` that does not exist yet; its path.

    The content is written and fsync'd under a temporary name first, then hard-linked to each
    candidate in turn (a link fails if the name exists, so nothing is ever overwritten, even when
    another process picks names at the same moment). Without hard links (FAT, some network shares)
    a name is reserved with O_EXCL and then replaced. All candidates must share one folder.
    """
    candidates = iter(candidates)
    first = Path(next(candidates))
    with _written_temp(first, suffix=first.suffix) as (f, tmp):
        write(f)
    try:
        target = first
        while True:
            if _claim(tmp, target):
                fsync_dir(target.parent)
                return target
            target = Path(next(candidates))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _claim(tmp: Path, target: Path) -> bool:
    """Give the finished temporary `tmp` the name `target` unless it exists; True if it did."""
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
    try:  # no hard links on this file system: reserve the name, then replace it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return False
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return True


def make_dir(path: str | os.PathLike) -> Path:
    """mkdir -p with mode 0o777 less the umask (what `tempfile.mkdtemp`'s 0o700 was not)."""
    path = Path(path)
    path.mkdir(mode=0o777, parents=True, exist_ok=True)
    return path


class NotWritableError(OSError):
    """A folder that cannot take the files about to be written; the message says why, in one sentence."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{max(1, n >> 10)} KB"


def check_writable_dir(folder: str | os.PathLike, need_bytes: int = 0) -> Path:
    """Prove, before any work is done, that files of `need_bytes` in all can be written in `folder`
    (or, if it does not exist yet, that it can be created: its nearest existing parent is checked and
    nothing is created); NotWritableError, one sentence naming the folder, otherwise."""
    folder = Path(folder)
    existing = folder
    while not (existing.exists() or existing.is_symlink()) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = folder if existing == folder else existing
        raise NotWritableError(errno.ENOTDIR, f"{folder} cannot be used: {where} is a file, not a folder")
    try:
        fd, probe = _create_temp(existing / "probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = "is not writable" if existing == folder else f"cannot be created in {existing}"
        raise NotWritableError(exc.errno, f"{folder} {what} ({exc.strerror or exc})") from None
    free = shutil.disk_usage(existing).free
    if free < need_bytes:
        raise NotWritableError(errno.ENOSPC, f"{folder} is on a disk that is (nearly) full: {_size(free)} free, "
                                             f"about {_size(need_bytes)} needed")
    return folder


def temp_dir(target: str | os.PathLike, kind: str = "export") -> Path:
    """A new empty folder beside `target` (`.ds_<name>.<kind>-<pid>-<random>`), mode 0o777 less the umask."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = temp_path(target, kind)
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder beside {target}")


# --------------------------------------------------------------------------------------------
# Folder swaps

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100
_SYSCALL_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "arm64": 276}  # where libc lacks the wrapper
_MACOS_RENAME_SWAP, _MACOS_RENAME_EXCL = 0x2, 0x4


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def _rename_flags(src: Path, dst: Path, flags: int) -> bool:
    """renameat2 (Linux) / renamex_np (macOS) with `flags`; False where unsupported (the caller falls
    back), OSError for real failures (missing source, permissions...)."""
    libc = _libc()
    if libc is None:
        return False
    a, b = os.fsencode(src), os.fsencode(dst)
    if sys.platform.startswith("linux"):
        if hasattr(libc, "renameat2"):
            result = libc.renameat2(_AT_FDCWD, a, _AT_FDCWD, b, ctypes.c_uint(flags))
        else:
            number = _SYSCALL_RENAMEAT2.get(os.uname().machine)
            if number is None:
                return False
            result = libc.syscall(number, _AT_FDCWD, a, _AT_FDCWD, b, ctypes.c_uint(flags))
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        mac = (_MACOS_RENAME_SWAP if flags & RENAME_EXCHANGE else 0) | (_MACOS_RENAME_EXCL if flags & RENAME_NOREPLACE else 0)
        result = libc.renamex_np(a, b, ctypes.c_uint(mac))
    else:
        return False
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # this kernel / file system cannot: fall back
    raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the two existing paths `a` and `b` in one atomic step; False where the platform cannot."""
    return _rename_flags(Path(a), Path(b), RENAME_EXCHANGE)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Put the finished folder `src` at `dst`, replacing what is there; `src` is gone afterwards.

    `dst` holds the old or the new folder at every instant where the platform can exchange two
    paths atomically (Linux, macOS); elsewhere there is a window between two renames that
    `clean_leftovers` repairs (see the module docstring). Both must be on one file system.
    """
    src, dst = Path(src), Path(dst)
    if not (dst.exists() or dst.is_symlink()):
        if not _rename_flags(src, dst, RENAME_NOREPLACE):
            os.rename(src, dst)
        fsync_dir(dst.parent)
        return
    if exchange(src, dst):  # src now holds the old folder
        fsync_dir(dst.parent)
        _remove(src)
        return
    old = temp_path(dst, "old")
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    fsync_dir(dst.parent)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


# --------------------------------------------------------------------------------------------
# Leftovers


def clean_leftovers(folder: str | os.PathLike, target: str | None = None, *, now: float | None = None) -> list[Path]:
    """Remove this module's temporaries in `folder` whose writer process is gone (only those of
    `target`'s name when given); put back a folder a crashed fallback swap left as `.old-` when its
    target is missing. Returns what was removed or restored. Never raises for an unreadable folder."""
    folder = Path(folder)
    now = time.time() if now is None else now
    done = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m:
            if (target is not None and m["target"] != target) or _pid_alive(int(m["pid"])):
                continue
            path, dst = Path(entry.path), folder / m["target"]
            if m["kind"] == "old" and not (dst.exists() or dst.is_symlink()):
                with contextlib.suppress(OSError):
                    os.rename(path, dst)
                    done.append(dst)
                    continue
            _remove(path)
            done.append(path)
        elif target is None and _LEGACY_RE.match(entry.name):
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_AGE_S:
                    _remove(Path(entry.path))
                    done.append(Path(entry.path))
    return done


# --------------------------------------------------------------------------------------------
# Reading JSON


def _depth_ok(text: str, limit: int) -> bool:
    """Whether brackets nest at most `limit` deep (strings skipped), without building anything."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads_json(text: str | bytes, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, with every failure a ValueError sentence naming `what` (nesting deeper than
    `max_depth` is refused before parsing, so no RecursionError)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if ("[" in text or "{" in text) and not _depth_ok(text, max_depth):
        raise ValueError(f"{what}: JSON nested more than {max_depth} levels deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{what}: JSON nested too deeply") from None


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES, what: str | None = None) -> Any:
    """Read and parse a JSON file; OSError if it cannot be read, ValueError (naming it) if it is
    larger than `max_bytes` or not valid JSON."""
    path = Path(path)
    what = what or str(path)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what}: larger than {max_bytes >> 20} MB, not a file this program writes")
    return loads_json(data, what)
