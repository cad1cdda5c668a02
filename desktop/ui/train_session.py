"""The Train window's state: one training run and the subprocesses working on it, with Qt signals.

`TrainSession` starts `diffusion-studio train` / `export` as subprocesses (desktop.runtime.training),
follows the run's `events.jsonl` on a timer and folds it into a `RunState`; it never imports torch.
The subprocess outlives the app when the user keeps training in the background, and a later session
`attach`es to the run again. Pause writes the run's pause request; a killed trainer is reported and
*Resume* continues from its last checkpoint.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from desktop.runtime import paths, training
from desktop.runtime.training import RunState

POLL_MS = 250


def format_duration(seconds: float | None) -> str:
    """'45 s', '3 min 05 s', '2 h 10 min'; '—' when unknown."""
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def list_presets(timeout: float = 60.0) -> tuple[list[dict], str]:
    """The engine's presets (`train --list --progress json`, no torch) and an error sentence ('' if fine)."""
    try:
        out = subprocess.run(training.command("train", "--list", "--progress", "json"), capture_output=True,
                             text=True, timeout=timeout, env=training.subprocess_env(), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"Could not list the training presets: {exc}"
    presets = [e for e in map(training.parse_event, out.stdout.splitlines()) if e and e["event"] == "preset"]
    if out.returncode != 0 or not presets:
        return [], "Could not list the training presets: " + (out.stderr.strip().splitlines() or ["no output"])[-1]
    return presets, ""


class CheckProcess(QObject):
    """`train PRESET --check --progress json` in the background: the data summary and measured speed."""

    finished = Signal(dict)     # the check event, or {"event": "error", "message": ...}

    def __init__(self, parent=None):
        super().__init__(parent)
        self.proc: subprocess.Popen | None = None
        self.key = None             # what is being checked (the caller's key for its cache)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    @property
    def running(self) -> bool:
        return self.proc is not None

    def start(self, argv: list[str], key) -> None:
        self.stop()
        self.key = key
        self.proc = subprocess.Popen(training.command(*argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=training.subprocess_env())
        self.timer.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None
        self.timer.stop()

    def poll(self) -> None:
        if self.proc is None or self.proc.poll() is None:
            return
        out, err = self.proc.communicate()
        self.proc = None
        self.timer.stop()
        events = [e for e in map(training.parse_event, out.splitlines()) if e]
        result = next((e for e in events if e["event"] in ("check", "error")), None)
        if result is None:
            last = (err.strip().splitlines() or ["no output"])[-1]
            result = {"event": "error", "message": f"The data check failed ({last})."}
        self.finished.emit(result)


class TrainSession(QObject):
    """One run: its job (what the user chose), its state (from the events) and the subprocess."""

    changed = Signal()          # the RunState or the phase changed
    message = Signal(str)       # a status line
    error = Signal(str)         # something the user must read (a banner)
    exported = Signal(str)      # the new model folder

    def __init__(self, parent=None):
        super().__init__(parent)
        self.run: Path | None = None
        self.job: dict = {}
        self.state = RunState()
        self.tail: training.EventTail | None = None
        self.proc: subprocess.Popen | None = None
        self.phase = "idle"            # "idle" | "training" | "finalizing" | "exporting"
        self.problem = ""              # why the last process ended badly ('' if it did not)
        self.export_after = False      # finalize -> export
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)

    # --- state ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.phase != "idle"

    @property
    def training(self) -> bool:
        return self.phase == "training"

    def can_resume(self) -> bool:
        return self.run is not None and not self.busy and bool(self.job.get("argv")) and not self.state.done

    def can_export(self) -> bool:
        """A finished run, or a paused one with a checkpoint (exported from that checkpoint)."""
        if self.run is None or self.busy or not self.state.stages:
            return False
        last = self.state.stages[-1]
        return self.state.done or (len(self.state.stages) == last.of and last.checkpoint_step > 0)

    def _reset(self, run: Path | None, job: dict) -> None:
        self.run, self.job, self.state, self.problem = run, job, RunState(), ""
        self.tail = training.EventTail(run / training.EVENTS) if run is not None else None

    # --- attach / start ------------------------------------------------------------------
    def attach(self, run: Path) -> None:
        """Show an existing run: read its events from the start; follow it if it still trains."""
        if self.busy and self.proc is not None:
            return
        self._reset(Path(run), training.read_job(run))
        self.poll_events()
        alive = self.state.running and training.pid_alive(self.state.pid)
        self.phase = "training" if alive else "idle"
        if self.state.running and not alive:
            self._lost(None)
        if alive:
            self.timer.start()
            self.message.emit(f"Following {self.run.name}: it is training in the background.")
        elif self.state.done and not self.job.get("model"):
            self._finish_export_later()
        self.changed.emit()

    def _finish_export_later(self) -> None:
        """A run that finished while no app followed it: adopt the export that finished in the
        background (its bundle is there and newer than the run's model), else export it now."""
        target, model = self.export_target(), self.run / "model"
        if (target / "studio.json").is_file() and model.is_dir() and (target / "studio.json").stat().st_mtime >= model.stat().st_mtime:
            self.job["model"] = str(target)
            training.write_job(self.run, self.job)
            return
        self._spawn_export()

    def detach(self) -> None:
        """Stop following (the run's process, if any, goes on by itself)."""
        self.timer.stop()
        self.proc = None
        self.phase = "idle"
        self._reset(None, {})
        self.changed.emit()

    def start(self, run: Path, job: dict) -> None:
        """A new run: write job.json and start `train` with the job's arguments."""
        training.write_job(run, job)
        self._reset(Path(run), job)
        self._spawn_train(resume=False)

    def resume(self) -> None:
        if self.can_resume():
            self._spawn_train(resume=True)

    def _spawn_train(self, resume: bool, finalize: bool = False) -> None:
        training.clear_pause(self.run)
        argv = list(self.job["argv"]) + (["--resume"] if resume else []) + (["--finalize"] if finalize else [])
        self.problem = ""
        try:
            self.proc = training.start_detached(training.command(*argv), self.run, stdout_name=training.EVENTS,
                                                stderr_name=training.TRAIN_LOG)
        except OSError as exc:
            self.error.emit(f"Could not start training: {exc}")
            return
        self.phase = "finalizing" if finalize else "training"
        self.timer.start()
        self.message.emit("Writing the model from the last checkpoint…" if finalize else
                          ("Resuming" if resume else "Starting") + f" {self.run.name}…")
        self.changed.emit()

    # --- pause / cancel ------------------------------------------------------------------
    def pause(self) -> None:
        """Ask the trainer to checkpoint and stop (it also does so when the app has closed)."""
        if self.training and self.run is not None:
            training.request_pause(self.run)
            self.message.emit("Pausing: the trainer finishes its step and writes a checkpoint…")

    def cancel(self, delete: bool) -> None:
        """Stop the run; delete=True removes its folder (after the process is gone), else it pauses."""
        if not delete:
            self.pause()
            return
        run = self.run
        self._kill()
        self.detach()
        if run is not None:
            shutil.rmtree(run, ignore_errors=True)
            self.message.emit(f"Deleted the run {run.name}.")

    def _kill(self, wait_s: float = 10.0) -> None:
        if self.proc is not None:
            self.proc.kill()
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                pass
        elif self.training and training.pid_alive(self.state.pid):
            import os
            import signal

            os.kill(self.state.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            deadline = time.time() + wait_s
            while training.pid_alive(self.state.pid) and time.time() < deadline:
                time.sleep(0.05)
        self.proc = None

    # --- export --------------------------------------------------------------------------
    def export(self) -> None:
        """Export the run as a model bundle; a paused run first writes model/ from its checkpoint."""
        if not self.can_export():
            return
        last = self.state.stages[-1]
        if not self.state.done and not (last.model and last.step == last.checkpoint_step):
            self.export_after = True
            self._spawn_train(resume=True, finalize=True)
            return
        self._spawn_export()

    def export_target(self) -> Path:
        return paths.user_models_dir() / str(self.job.get("name") or self.run.name)

    def _spawn_export(self) -> None:
        target = self.export_target()
        argv = ["export", str(self.run), str(target), "--name", target.name,
                "--description", str(self.job.get("description") or f"Trained in Diffusion Studio ({self.run.name})")]
        if target.exists() and str(target) == self.job.get("model"):
            argv.append("--overwrite")  # this run's own earlier export
        try:
            self.proc = training.start_detached(training.command(*argv), self.run, stdout_name=None,
                                                stderr_name=training.EXPORT_LOG)
        except OSError as exc:
            self.error.emit(f"Could not start the export: {exc}")
            return
        self.phase = "exporting"
        self.timer.start()
        self.message.emit("Exporting: every graph is checked in ONNX Runtime against PyTorch…")
        self.changed.emit()

    # --- following -----------------------------------------------------------------------
    def poll_events(self) -> bool:
        events = self.tail.read() if self.tail is not None else []
        for e in events:
            self.state.apply(e)
        return bool(events)

    def poll(self) -> None:
        changed = self.poll_events()
        if self.proc is not None:
            code = self.proc.poll()
            if code is not None:
                self.poll_events()
                self.proc = None
                self._process_ended(code)
                changed = True
        elif self.training and not training.pid_alive(self.state.pid):
            self.poll_events()
            self._process_ended(None)
            changed = True
        if changed:
            self.changed.emit()

    def _process_ended(self, code: int | None) -> None:
        phase, self.phase = self.phase, "idle"
        self.timer.stop()
        if phase == "exporting":
            self._export_ended(code)
        elif phase == "finalizing":
            self._finalize_ended(code)
        else:
            self._train_ended(code)

    def _train_ended(self, code: int | None) -> None:
        s = self.state
        if s.done:
            self.message.emit("Training finished; exporting the model…")
            self._spawn_export()
        elif s.paused:
            self.message.emit(f"Paused at step {s.current.step:,} with a checkpoint; Resume continues from there.")
        elif s.error:
            self.problem = s.error
            self.error.emit(s.error)
        else:
            self._lost(code)

    def _lost(self, code: int | None) -> None:
        """The trainer ended without saying so: crashed, killed or out of memory."""
        s = self.state
        s.running = False
        cur = s.current
        where = (f"its last checkpoint is at step {cur.checkpoint_step:,} of the {cur.stage} stage"
                 if cur is not None and cur.checkpoint_step else "no checkpoint was written yet")
        tail = training.log_tail(self.run / training.TRAIN_LOG, lines=3)
        said = f" Its log ends with: {tail}" if tail else ""
        how = training.exit_description(code) if code is not None else "the process is gone"
        self.problem = (f"Training stopped unexpectedly ({how}); {where}. Resume continues from there.{said}")
        self.error.emit(self.problem)

    def _finalize_ended(self, code: int | None) -> None:
        after, self.export_after = self.export_after, False
        last = self.state.stages[-1] if self.state.stages else None
        if code == 0 and last is not None and last.model:
            if after:
                self._spawn_export()
            return
        self.problem = ("Could not write the model from the checkpoint: "
                        + (self.state.error or training.log_tail(self.run / training.TRAIN_LOG, lines=2) or training.exit_description(code)))
        self.error.emit(self.problem)

    def _export_ended(self, code: int | None) -> None:
        target = self.export_target()
        if code == 0 and (target / "studio.json").is_file():
            self.job["model"] = str(target)
            training.write_job(self.run, self.job)
            self.message.emit(f"Exported {target.name}; it is selected in the model list.")
            self.exported.emit(str(target))
            return
        tail = training.log_tail(self.run / training.EXPORT_LOG, lines=3)
        self.problem = f"The export failed ({training.exit_description(code)}). {tail}".strip()
        self.error.emit(self.problem)

    # --- estimates -----------------------------------------------------------------------
    def seconds_left(self) -> float | None:
        """Training time left over every stage: the live stage's measured speed, then the check's
        estimates (job["estimates"], seconds per stage) for the stages not started yet."""
        s = self.state
        cur = s.current
        if cur is None:
            return None
        left = cur.seconds_left()
        if left is None:
            return None
        started = {st.stage for st in s.stages}
        later = [sec for stage, sec in (self.job.get("estimates") or {}).items() if stage not in started]
        return left + sum(float(x) for x in later)
