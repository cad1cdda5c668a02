"""Training from the app, without torch: the `diffusion-studio train` / `export` subprocesses, the
progress events they write (docs/TRAINING.md) and the run folders they leave.

Nothing here imports Qt or the engine. A run's state is a fold of its events (`RunState.apply`), so
a run started by this app session, one left training in the background by an earlier session and
one read back from disk are the same thing.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from diffusion.checks import is_number

from . import fileio, installation, paths

EVENTS = "events.jsonl"
TRAIN_LOG = "train.log"
EXPORT_LOG = "export.log"
PAUSE_REQUEST = "pause.request"
JOB = "job.json"
STEP_WINDOW = 20           # step events the speed (and so the ETA) is measured over


def runs_dir() -> Path:
    """Where the app keeps training runs: <user data folder>/runs."""
    return paths.user_data_dir() / "runs"


# ----------------------------------------------------------------------------- the engine extra


def missing_engine_modules() -> list[str]:
    """Top-level modules of the engine extra that this Python cannot import (found without importing)."""
    missing = []
    for name in sorted(installation.ENGINE_MODULES):
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def source_checkout() -> Path | None:
    """The repository root when this is a source checkout (Makefile + pyproject.toml), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "Makefile").is_file() and (root / "pyproject.toml").is_file() else None


def _quote(arg: str) -> str:
    return subprocess.list2cmdline([arg]) if os.name == "nt" else shlex.quote(arg)


def install_command() -> str:
    """The one command that installs the engine extra into the Python running the app."""
    python = _quote(sys.executable)
    root = source_checkout()
    if root is not None:
        constraints = " -c constraints-cpu.txt" if (root / "constraints-cpu.txt").is_file() else ""
        return f"cd {_quote(str(root))} && {python} -m pip install{constraints} -e {_quote('.[engine]')}"
    return f"{python} -m pip install {_quote('diffusion-studio[engine]')}"


# ----------------------------------------------------------------------------- subprocesses


def command(*args: str) -> list[str]:
    """argv for `diffusion-studio ARGS` with the Python running the app."""
    return [sys.executable, "-m", "desktop", *map(str, args)]


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def start_detached(argv: list[str], run: Path, *, stdout_name: str | None, stderr_name: str) -> subprocess.Popen:
    """Start argv with stdout appended to run/stdout_name (or discarded) and stderr to run/stderr_name,
    in its own session: it outlives the app and never sees the app's terminal signals."""
    run.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    else:
        kwargs["start_new_session"] = True
    out = open(run / stdout_name, "ab") if stdout_name else subprocess.DEVNULL
    err = open(run / stderr_name, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=str(run),
                                env=subprocess_env(), **kwargs)
    finally:
        for f in (out, err):
            if f is not subprocess.DEVNULL:
                f.close()


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs (a zombie child counts as ended)."""
    if not pid or pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, int(pid))  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def request_pause(run: Path) -> None:
    (Path(run) / PAUSE_REQUEST).write_text("pause\n", encoding="utf-8")


def clear_pause(run: Path) -> None:
    (Path(run) / PAUSE_REQUEST).unlink(missing_ok=True)


def exit_description(code: int | None) -> str:
    """A process's exit status in words (negative = killed by that signal, as Popen reports it)."""
    if code is None:
        return "it was still running"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"it was killed ({name})"
    return f"it exited with code {code}"


def log_tail(path: Path, lines: int = 6, limit: int = 4000) -> str:
    """The last lines of a log file (what a crashed run said last), '' if none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [l for l in text.replace("\r", "\n").splitlines() if l.strip()]
    return "\n".join(kept[-lines:])


# ----------------------------------------------------------------------------- events


def parse_event(line: str) -> dict | None:
    """One protocol line -> its event dict, or None for anything else (never raises)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


class EventTail:
    """Reads a growing events file: each `read()` returns the complete new lines' events."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        events = (parse_event(l.decode("utf-8", "replace")) for l in lines)
        return [e for e in events if e is not None]


def read_events(path: Path) -> list[dict]:
    return EventTail(path).read()


# ----------------------------------------------------------------------------- run state


@dataclass
class StageState:
    stage: str
    preset: str = ""
    kind: str = ""
    index: int = 1
    of: int = 1
    step: int = 0
    steps: int = 0
    max_seconds: float = 0.0
    train_seconds: float = 0.0
    losses: list[tuple[int, float]] = field(default_factory=list)
    timing: list[tuple[int, float]] = field(default_factory=list)   # (step, train_seconds), recent
    images_per_s: float = 0.0
    loss: float | None = None
    sample: str = ""
    sample_step: int = 0
    checkpoint_step: int = 0
    ended: str = ""                     # "" while training; "done" | "time_up" | "paused" | "finalized"
    model: str = ""

    @property
    def finished(self) -> bool:
        return self.ended in ("done", "time_up")

    def steps_per_second(self) -> float:
        if len(self.timing) < 2:
            return 0.0
        (s0, t0), (s1, t1) = self.timing[0], self.timing[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else 0.0

    def seconds_left(self) -> float | None:
        """Training seconds until this stage ends (its steps or its time budget), None if unknown."""
        if self.finished:
            return 0.0
        rate = self.steps_per_second()
        by_steps = (self.steps - self.step) / rate if rate > 0 else None
        by_time = max(0.0, self.max_seconds - self.train_seconds) if self.max_seconds else None
        known = [s for s in (by_steps, by_time) if s is not None]
        return min(known) if known else None

    def fraction(self) -> float:
        if self.finished:
            return 1.0
        parts = [self.step / self.steps if self.steps else 0.0]
        if self.max_seconds:
            parts.append(self.train_seconds / self.max_seconds)
        return max(0.0, min(1.0, max(parts)))


@dataclass
class RunState:
    """What a run's events say: its stages, device, the process, and how it ended."""
    stages: list[StageState] = field(default_factory=list)
    device: str = ""
    device_name: str = ""
    pid: int = 0
    running: bool = False      # a session started and has not reported its end (check pid_alive too)
    done: bool = False
    model: str = ""
    error: str = ""
    last_event: float = 0.0

    def stage(self, name: str) -> StageState:
        for s in self.stages:
            if s.stage == name:
                return s
        s = StageState(name)
        self.stages.append(s)
        return s

    @property
    def current(self) -> StageState | None:
        live = [s for s in self.stages if not s.finished]
        return live[0] if live else (self.stages[-1] if self.stages else None)

    @property
    def paused(self) -> bool:
        return not self.running and not self.done and any(s.ended in ("paused", "finalized") for s in self.stages)

    def apply(self, e: dict) -> None:
        """Fold one event into the state (unknown events and fields are ignored)."""
        kind = e.get("event")
        self.last_event = _num(e, "time", time.time())
        if kind == "session":
            self.pid, self.running, self.error, self.done = int(_num(e, "pid")), True, "", False
            return
        if kind == "error":
            self.error, self.running = str(e.get("message") or "training failed"), False
            return
        if kind == "done":
            self.done, self.running, self.model = True, False, str(e.get("model") or "")
            return
        if kind not in ("stage", "start", "step", "sample", "checkpoint", "end") or not e.get("stage"):
            return
        s = self.stage(str(e["stage"]))
        _apply_stage_event(self, s, kind, e)


def _num(e: dict, key: str, default=0.0) -> float:
    """A finite number from an event field, else `default` (events are read from a file: untrusted)."""
    v = e.get(key, default)
    ok = is_number(v) and math.isfinite(v) and abs(v) < 1e15
    return float(v) if ok else default


def _apply_stage_event(run: RunState, s: StageState, kind: str, e: dict) -> None:
    if kind == "stage":
        s.preset, s.kind = str(e.get("preset") or ""), str(e.get("kind") or "")
        s.index, s.of, s.ended = int(_num(e, "index", 1)), int(_num(e, "of", 1)), ""
        return
    if "step" in e:
        s.step = int(_num(e, "step"))
    if "steps" in e:
        s.steps = int(_num(e, "steps"))
    if "train_seconds" in e:
        s.train_seconds = _num(e, "train_seconds")
    if kind == "start":
        s.max_seconds, s.ended, s.timing, s.model = _num(e, "max_seconds"), "", [], ""
        run.device, run.device_name = str(e.get("device") or ""), str(e.get("device_name") or "")
        s.losses = [p for p in s.losses if p[0] <= s.step]   # a resumed stage redoes later steps
    elif kind == "step":
        s.timing = (s.timing + [(s.step, s.train_seconds)])[-STEP_WINDOW:]
        if "loss" in e:
            s.loss = _num(e, "loss")
            s.losses.append((s.step, s.loss))
        if "images_per_s" in e:
            s.images_per_s = _num(e, "images_per_s")
    elif kind == "sample":
        s.sample, s.sample_step = str(e.get("path") or ""), s.step
    elif kind == "checkpoint":
        s.checkpoint_step = s.step
    elif kind == "end":
        s.ended, s.model = str(e.get("reason") or "done"), str(e.get("model") or "")
        if s.ended == "paused":
            run.running = False


def read_run_state(run: Path) -> RunState:
    state = RunState()
    for e in read_events(Path(run) / EVENTS):
        state.apply(e)
    return state


# ----------------------------------------------------------------------------- jobs


def read_job(run: Path) -> dict:
    """The app's record of a run (job.json), {} when missing or unreadable."""
    try:
        job = fileio.read_json(Path(run) / JOB)
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}


def write_job(run: Path, job: dict) -> None:
    fileio.write_json(Path(run) / JOB, job, indent=1)


def list_runs(root: Path | None = None) -> list[Path]:
    """Run folders the app made (those with a job.json), newest first."""
    root = runs_dir() if root is None else Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and (p / JOB).is_file()]
    return sorted(found, key=lambda p: (p / JOB).stat().st_mtime, reverse=True)


def unique_run_name(name: str, root: Path | None = None) -> str:
    """`name`, or `name-2`, `name-3`… so neither a run folder nor a user model has it yet."""
    root = runs_dir() if root is None else Path(root)
    taken = lambda n: (root / n).exists() or (paths.user_models_dir() / n).exists()  # noqa: E731
    candidate, n = name, 2
    while taken(candidate):
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def safe_name(text: str) -> str:
    """A folder-safe model name from what the user typed ('' when nothing usable is left)."""
    kept = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip())
    return "-".join(p for p in kept.split("-") if p).strip(".")[:60]


# ----------------------------------------------------------------------------- command lines

SAMPLE_GRIDS = 10          # sample grids a stage writes, at most about
SAMPLE_SECONDS = 15.0      # and at most one per this much training (a grid costs seconds itself)
TIME_BUDGET_STEPS = 10     # a time budget allows this many times the steps the measured speed fits in it
LOG_SECONDS = 2.0          # a loss point about this often (and at least 100 per stage)
CHECKPOINT_SECONDS = 180   # a checkpoint about this often: what a killed run loses at most


def data_args(data: dict) -> list[str]:
    """`train` options for the data: an image folder, or a generated set by name."""
    if data.get("kind") == "folder":
        return ["--data", str(data["path"])]
    return ["--set", f'dataset.name="{data["name"]}"']


def check_argv(preset: dict, data: dict) -> list[str]:
    argv = ["train", preset["name"], "--check", "--progress", "json", "--fit-data", *data_args(data)]
    return argv + (["--train-vae"] if preset.get("vae_preset") else [])


def stage_plan(check: dict, budget: dict) -> list[dict]:
    """Each stage's steps, time budget, expected seconds and cadences, from the check's measured
    speed. budget {"steps": N} sets the diffusion stage's steps (a VAE stage keeps its preset's).
    {"seconds": S}: a VAE stage gets its share of S in proportion to the stages' expected times (at
    most what it needs) and the diffusion stage the rest, training until it is spent (its steps
    raised far beyond what the measured speed fits in that time, so the time ends it)."""
    stages = [dict(s) for s in check.get("stages") or []]
    for s in stages:
        s["sps"] = max(float(s.get("seconds_per_step") or 0.0), 1e-6)
        if s["stage"] == "diffusion" and budget.get("steps"):
            s["steps"] = int(budget["steps"])
        s["full_seconds"] = s["steps"] * s["sps"]
    seconds = float(budget.get("seconds") or 0.0)
    total = sum(s["full_seconds"] for s in stages) or 1.0
    left = seconds
    for s in stages:
        s["max_seconds"] = 0.0
        if seconds and s["stage"] == "vae":
            s["max_seconds"] = round(min(s["full_seconds"], seconds * s["full_seconds"] / total), 1)
            left -= s["max_seconds"]
        elif seconds:
            s["max_seconds"] = round(max(left, 1.0), 1)
            s["steps"] = max(s["steps"], math.ceil(TIME_BUDGET_STEPS * s["max_seconds"] / s["sps"]))
        train_s = min(s["steps"] * s["sps"], s["max_seconds"] or math.inf)
        _cadences(s, train_s)
    return stages


def _cadences(s: dict, train_s: float) -> None:
    """Expected steps and seconds, and how often to log, sample and checkpoint (in steps)."""
    sps = s["sps"]
    expected_steps = max(1, min(s["steps"], int(train_s / sps)))
    s["expected_steps"] = expected_steps
    s["expected_seconds"] = train_s + float(s.get("setup_seconds") or 0.0)
    s["sample_every"] = min(expected_steps, max(1, expected_steps // SAMPLE_GRIDS, round(SAMPLE_SECONDS / sps)))
    s["log_every"] = max(1, min(round(LOG_SECONDS / sps), expected_steps // 100))
    s["checkpoint_every"] = max(1, min(round(CHECKPOINT_SECONDS / sps), max(1, expected_steps // 4)))


def stage_settings(stage: dict) -> list[str]:
    """The `--set` values that carry a planned stage's budget and cadences."""
    keys = ("steps", "max_seconds", "sample_every", "log_every", "checkpoint_every")
    return [f"training.{k}={float(stage[k]) if k == 'max_seconds' else int(stage[k])}" for k in keys]


def train_argv(run: Path, preset: dict, data: dict, plan: list[dict]) -> list[str]:
    """`train` arguments for a new run (Resume adds --resume to the same list)."""
    argv = ["train", preset["name"], "--out", str(run), "--progress", "json", "--fit-data", *data_args(data),
            "--stop-file", str(Path(run) / PAUSE_REQUEST)]
    for stage in plan:
        option = "--vae-set" if stage["stage"] == "vae" else "--set"
        for value in stage_settings(stage):
            argv += [option, value]
    return argv + (["--train-vae"] if any(s["stage"] == "vae" for s in plan) else [])
