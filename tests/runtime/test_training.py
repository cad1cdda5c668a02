"""desktop.runtime.training: the app's side of the training protocol (docs/TRAINING.md), without Qt
or torch: reading events (also half-written and garbage lines), folding them into a run's state,
planning budgets, the install command, and process liveness."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from desktop.runtime import training
from desktop.runtime.training import EventTail, RunState


def events_for_run(stage="diffusion", steps=10, pause_at=None, loss=lambda s: 1.0 / s):
    out = [{"event": "session", "pid": 123, "time": 0.0},
           {"event": "stage", "stage": stage, "index": 1, "of": 1, "preset": "tiny-pixel", "kind": "pixel", "time": 0.0},
           {"event": "start", "stage": stage, "step": 0, "steps": steps, "max_seconds": 0, "train_seconds": 0,
            "device": "cpu", "device_name": "CPU (2 cores)", "batch": 8, "time": 0.0}]
    for s in range(1, steps + 1):
        out.append({"event": "step", "stage": stage, "step": s, "steps": steps, "train_seconds": 0.5 * s,
                    "loss": loss(s), "lr": 1e-3, "images_per_s": 16.0, "time": float(s)})
        if s == pause_at:
            out += [{"event": "checkpoint", "stage": stage, "step": s, "path": "c", "reason": "interrupted", "time": 0.0},
                    {"event": "end", "stage": stage, "step": s, "train_seconds": 0.5 * s, "reason": "paused", "model": None, "time": 0.0}]
            return out
    out += [{"event": "checkpoint", "stage": stage, "step": steps, "path": "c", "reason": "end", "time": 0.0},
            {"event": "end", "stage": stage, "step": steps, "train_seconds": 0.5 * steps, "reason": "done", "model": "m", "time": 0.0},
            {"event": "done", "run": "r", "model": "m", "time": 0.0}]
    return out


def fold(events) -> RunState:
    state = RunState()
    for e in events:
        state.apply(e)
    return state


def test_a_finished_run_folds_to_done_with_every_loss_point():
    state = fold(events_for_run(steps=10))
    assert state.done and not state.running and not state.paused
    stage = state.stages[0]
    assert stage.finished and stage.step == 10 and stage.checkpoint_step == 10
    assert [s for s, _ in stage.losses] == list(range(1, 11))
    assert state.device_name == "CPU (2 cores)" and stage.images_per_s == 16.0


def test_a_paused_run_knows_its_checkpoint_and_eta_from_its_speed():
    state = fold(events_for_run(steps=100, pause_at=40))
    stage = state.current
    assert state.paused and stage.ended == "paused" and stage.checkpoint_step == 40
    assert abs(stage.steps_per_second() - 2.0) < 1e-9       # 0.5 s of training per step
    assert abs(stage.seconds_left() - 30.0) < 1e-9          # 60 steps at 2 steps/s
    assert abs(stage.fraction() - 0.4) < 1e-9


def test_a_resumed_stage_drops_the_loss_points_it_redoes():
    first = events_for_run(steps=100, pause_at=40)
    resumed = [{"event": "session", "pid": 124, "time": 0.0},
               {"event": "stage", "stage": "diffusion", "index": 1, "of": 1, "time": 0.0},
               {"event": "start", "stage": "diffusion", "step": 30, "steps": 100, "max_seconds": 0, "train_seconds": 15, "time": 0.0}]
    state = fold(first + resumed)
    assert state.running and not state.paused and state.pid == 124
    assert max(s for s, _ in state.current.losses) == 30


def test_a_time_budget_bounds_the_eta():
    events = events_for_run(steps=1000, pause_at=None)[:3] + [
        {"event": "step", "stage": "diffusion", "step": s, "steps": 1000, "train_seconds": float(s), "time": 0.0} for s in (1, 2, 3)]
    events[2]["max_seconds"] = 10
    state = fold(events)
    assert abs(state.current.seconds_left() - 7.0) < 1e-9   # 997 steps would take 997 s; the budget ends in 7
    assert abs(state.current.fraction() - 0.3) < 1e-9


def test_an_error_event_ends_the_run_with_its_sentence():
    state = fold([{"event": "session", "pid": 1}, {"event": "error", "message": "data: no usable image in /x"}])
    assert not state.running and state.error == "data: no usable image in /x"


@pytest.mark.slow
@given(st.text())
def test_parse_event_never_raises_and_takes_only_objects_with_an_event(line):
    e = training.parse_event(line)
    assert e is None or (isinstance(e, dict) and isinstance(e["event"], str))


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["event", "stage", "step", "steps", "loss", "time", "train_seconds",
                                                   "max_seconds", "reason", "pid", "index", "of", "model", "path"]),
                                st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                                          st.text(max_size=8), st.sampled_from(["step", "start", "end", "stage", "diffusion", "vae", "done"])))))
def test_folding_any_events_never_raises(events):
    state = RunState()
    for e in events:
        state.apply(e)
    for s in state.stages:
        s.seconds_left()
        assert 0.0 <= s.fraction() <= 1.0 or s.fraction() != s.fraction()


def test_event_tail_returns_only_complete_lines_and_skips_garbage(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []                       # no file yet
    with open(path, "w") as f:
        f.write('{"event": "a"}\nnot json\n{"event": "b", "x": ')
    assert [e["event"] for e in tail.read()] == ["a"]
    with open(path, "a") as f:
        f.write('1}\n[1, 2]\n{"no_event": 1}\n')
    assert tail.read() == [{"event": "b", "x": 1}]
    assert tail.read() == []


def test_stage_plan_splits_a_time_budget_by_expected_time():
    check = {"stages": [{"stage": "vae", "steps": 100, "seconds_per_step": 1.0, "setup_seconds": 2.0},
                        {"stage": "diffusion", "steps": 300, "seconds_per_step": 1.0, "setup_seconds": 3.0}]}
    vae, diff = training.stage_plan(check, {"seconds": 200})
    assert (vae["max_seconds"], diff["max_seconds"]) == (50.0, 150.0)
    assert (vae["expected_steps"], diff["expected_steps"]) == (50, 150)
    assert diff["expected_seconds"] == 153.0
    for s in (vae, diff):
        assert 1 <= s["sample_every"] <= s["expected_steps"] and s["log_every"] >= 1 and s["checkpoint_every"] >= 1


def test_a_time_budget_trains_the_diffusion_stage_until_it_is_spent():
    check = {"stages": [{"stage": "vae", "steps": 20, "seconds_per_step": 0.5},
                        {"stage": "diffusion", "steps": 20, "seconds_per_step": 0.5}]}
    vae, diff = training.stage_plan(check, {"seconds": 600})
    assert vae["max_seconds"] == 10.0 and vae["steps"] == 20            # the VAE needs 10 s: no more
    assert diff["max_seconds"] == 590.0 and diff["steps"] >= 590 / 0.5   # the rest, and steps to fill it
    assert diff["expected_steps"] == 1180


def test_stage_plan_steps_budget_sets_the_diffusion_stage_only():
    check = {"stages": [{"stage": "vae", "steps": 20, "seconds_per_step": 0.1},
                        {"stage": "diffusion", "steps": 20, "seconds_per_step": 0.2}]}
    vae, diff = training.stage_plan(check, {"steps": 500})
    assert (vae["steps"], diff["steps"]) == (20, 500)
    assert vae["max_seconds"] == diff["max_seconds"] == 0.0
    assert abs(diff["expected_seconds"] - 100.0) < 1e-9


def test_train_argv_puts_each_stage_budget_on_its_own_option(tmp_path):
    plan = training.stage_plan({"stages": [{"stage": "vae", "steps": 20, "seconds_per_step": 0.1},
                                           {"stage": "diffusion", "steps": 30, "seconds_per_step": 0.1}]}, {"steps": 40})
    argv = training.train_argv(tmp_path / "run", {"name": "tiny-latent"}, {"kind": "folder", "path": "/data"}, plan)
    pairs = list(zip(argv, argv[1:]))
    assert ("--set", "training.steps=40") in pairs and ("--vae-set", "training.steps=20") in pairs
    assert ("--data", "/data") in pairs and "--train-vae" in argv and "--fit-data" in argv
    gen = training.train_argv(tmp_path / "run", {"name": "tiny-pixel"}, {"kind": "generated", "name": "digits"}, plan[1:])
    assert ("--set", 'dataset.name="digits"') in list(zip(gen, gen[1:])) and "--train-vae" not in gen


def test_install_command_names_this_python_and_the_kind_of_install(monkeypatch, tmp_path):
    checkout = training.install_command()
    assert sys.executable in checkout and "-e" in checkout and "[engine]" in checkout
    monkeypatch.setattr(training, "source_checkout", lambda: None)
    wheel = training.install_command()
    assert sys.executable in wheel and "diffusion-studio[engine]" in wheel and "-e" not in wheel


def test_missing_engine_modules_finds_without_importing(monkeypatch):
    from desktop.runtime import installation

    monkeypatch.setattr(installation, "ENGINE_MODULES", {"json", "surely_not_a_module_xyz"})
    assert training.missing_engine_modules() == ["surely_not_a_module_xyz"]


def test_pid_alive_tells_a_running_process_from_an_ended_one():
    assert training.pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not training.pid_alive(proc.pid)
    assert not training.pid_alive(0) and not training.pid_alive(None)


def test_exit_description_names_the_signal():
    assert "SIGKILL" in training.exit_description(-9)
    assert "code 2" in training.exit_description(2)


def test_runs_are_listed_newest_first_and_names_stay_unique(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    for name in ("a", "b"):
        training.write_job(training.runs_dir() / name, {"name": name})
    os.utime(training.runs_dir() / "a" / training.JOB, (1, 1))
    (training.runs_dir() / "no-job").mkdir()
    assert [p.name for p in training.list_runs()] == ["b", "a"]
    assert training.unique_run_name("a") == "a-2"
    assert training.read_job(training.runs_dir() / "a") == {"name": "a"}
    (training.runs_dir() / "a" / training.JOB).write_text("[1")
    assert training.read_job(training.runs_dir() / "a") == {}
    assert training.safe_name("  my cats / 2024!  ") == "my-cats-2024"


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)) + "\n\n")
    assert training.log_tail(log, lines=2) == "line 98\nline 99"
    assert training.log_tail(tmp_path / "missing.log") == ""
    json.dumps(training.log_tail(log))
