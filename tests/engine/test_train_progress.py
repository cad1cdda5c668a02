"""`train --progress json` and the options the app drives (docs/TRAINING.md): the event stream of a
real run, the stop file (checkpoint, exit 130, exact resume), --finalize, --train-vae with a
resumable VAE stage, --check on a folder with bad files, --fit-data, --set, --list without torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.progress import EventStream, fit_conditioning, stop_file_hook
from engine.train_cli import EXIT_STOPPED, main, parse_setting

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--set", "training.sample_every=0", "--set", "training.checkpoint_every=2", "--device", "cpu"]


def events(capsys) -> list[dict]:
    return [json.loads(l) for l in capsys.readouterr().out.splitlines()]


def kinds(evs) -> list[str]:
    return [e["event"] for e in evs]


def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((16, 16, 3), 30 * i + (100 if cls == "b" else 0), np.uint8)).save(root / cls / f"{i}.png")
    (root / "b" / "bad.png").write_bytes(b"not a png")
    return root


def test_event_stream_thins_loss_less_steps_and_tags_the_stage():
    import io

    out = io.StringIO()
    emit = EventStream(out)
    emit("stage", {"stage": "vae"})
    emit("step", {"step": 1})
    emit("step", {"step": 2})                    # within STEP_INTERVAL, no loss: dropped
    emit("step", {"step": 3, "loss": 0.5})       # a loss is always reported
    emit("done", {"run": "r"})
    evs = [json.loads(l) for l in out.getvalue().splitlines()]
    assert [e.get("step") for e in evs if e["event"] == "step"] == [1, 3]
    assert all(e["stage"] == "vae" for e in evs[:-1]) and "stage" not in evs[-1]


def test_stop_file_hook_fires_once_and_removes_the_file(tmp_path):
    path = tmp_path / "pause.request"
    should_stop = stop_file_hook(path)
    assert not should_stop()
    path.write_text("pause")
    assert should_stop() and not path.exists() and not should_stop()
    assert stop_file_hook(None)() is False


def test_parse_setting_reads_toml_values_and_bare_words():
    assert parse_setting("training.steps=500") == {"training": {"steps": 500}}
    assert parse_setting("conditioning.text=minilm") == {"conditioning": {"text": "minilm"}}
    assert parse_setting('dataset.name="digits"') == {"dataset": {"name": "digits"}}
    assert parse_setting("training.lr=1e-4") == {"training": {"lr": 1e-4}}


def test_fit_conditioning_follows_the_data():
    preset = {"text": "", "class": True, "mask": "semantic", "cond_drop_prob": 0.1, "inpaint_full_prob": 0.1}
    data = {"images": 4, "classes": {"a": 2, "b": 2}, "captions": 1, "masks": 0, "label_maps": 0, "labels_named": False}
    fitted = fit_conditioning(preset, data)
    assert fitted["class"] and fitted["text"] == "minilm" and fitted["mask"] == ""
    one_class = fit_conditioning({**preset, "text": "scratch", "mask": "inpaint"}, {**data, "classes": {"a": 4}, "captions": 0})
    assert not one_class["class"] and one_class["text"] == "" and one_class["mask"] == "inpaint"
    maps = fit_conditioning(preset, {**data, "label_maps": 4, "labels_named": True})
    assert maps["mask"] == "semantic"


@pytest.mark.slow  # PyTorch: the settings are checked after the engine is imported
def test_bad_input_is_an_error_event_and_exit_2(capsys):
    assert main(["tiny-pixel", "--progress", "json", "--set", "training.steps"]) == 2
    evs = events(capsys)
    assert kinds(evs) == ["session", "error"] and "KEY=VALUE" in evs[-1]["message"]
    assert main(["tiny-pixel", "--progress", "json", "--set", "training.nope=1"]) == 2
    assert "nope" in events(capsys)[-1]["message"]


@pytest.mark.slow
def test_list_in_json_describes_every_preset_without_torch():
    code = ("import sys, json; from engine.train_cli import main; main(['--list', '--progress', 'json']); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers'))), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    presets = {e["name"]: e for e in map(json.loads, out.stdout.splitlines())}
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []
    assert presets["tiny-latent"]["vae_preset"] == "tiny-vae" and presets["tiny-latent"]["kind"] == "latent"
    assert all(p["description"] for p in presets.values())


@pytest.mark.slow
def test_a_run_reports_its_events_pauses_at_the_stop_file_and_resumes_exactly(tmp_path, capsys):
    out, stop = tmp_path / "run", tmp_path / "run" / "pause.request"
    stop.parent.mkdir()
    stop.write_text("pause")          # present from the start: the run stops after its first step
    args = ["tiny-pixel", "--out", str(out), "--progress", "json", "--stop-file", str(stop), "--steps", "4", *FAST]
    assert main(args) == EXIT_STOPPED
    evs = events(capsys)
    assert kinds(evs) == ["session", "stage", "start", "step", "checkpoint", "end"]
    assert evs[-1]["reason"] == "paused" and evs[-1]["model"] is None and not stop.exists()
    assert evs[2]["device"] == "cpu" and evs[2]["steps"] == 4 and "loss" in evs[3]

    assert main(args + ["--resume", "--finalize"]) == 0          # a model from the checkpoint, resumable
    evs = events(capsys)
    assert evs[-1]["event"] == "end" and evs[-1]["reason"] == "finalized" and (out / "model").is_dir()

    assert main(args + ["--resume"]) == 0
    evs = events(capsys)
    assert evs[2]["event"] == "start" and evs[2]["step"] == 1
    assert [e["step"] for e in evs if e["event"] == "step"] == [2, 3, 4]
    assert kinds(evs)[-2:] == ["end", "done"] and evs[-2]["reason"] == "done"
    metrics = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [1, 2, 3, 4]


@pytest.mark.slow
def test_train_vae_runs_both_stages_and_a_resume_skips_the_finished_vae(tmp_path, capsys):
    out = tmp_path / "run"
    stop = tmp_path / "stop"
    args = ["tiny-latent", "--train-vae", "--out", str(out), "--progress", "json", "--stop-file", str(stop),
            "--steps", "2", "--vae-set", "training.steps=2", *FAST]
    hooks_stop = ["--set", "training.checkpoint_every=1"]
    stop.write_text("")  # stops the VAE stage after its first step
    assert main(args + hooks_stop) == EXIT_STOPPED
    evs = events(capsys)
    assert [e["stage"] for e in evs if e["event"] == "stage"] == ["vae"] and evs[-1]["reason"] == "paused"
    assert main(args + ["--resume"]) == 0
    evs = events(capsys)
    stages = [(e["stage"], e["index"], e["of"]) for e in evs if e["event"] == "stage"]
    assert stages == [("vae", 1, 2), ("diffusion", 2, 2)]
    assert (out / "vae" / "model" / "studio_model.json").is_file() and (out / "model").is_dir()
    assert main(args + ["--resume"]) == 0                          # a finished VAE is not trained again
    evs = events(capsys)
    vae_end = next(e for e in evs if e["event"] == "end" and e["stage"] == "vae")
    assert vae_end["reason"] == "done" and not any(e["event"] == "step" and e["stage"] == "vae" for e in evs)


@pytest.mark.slow
def test_check_reports_the_data_the_fitted_conditioning_and_timed_steps(tmp_path, capsys):
    data = folder(tmp_path)
    assert main(["tiny-pixel", "--data", str(data), "--fit-data", "--check", "--progress", "json", "--device", "cpu"]) == 0
    check = events(capsys)[-1]
    assert check["event"] == "check" and check["device"] == "cpu"
    d = check["data"]
    assert (d["images"], d["classes"], d["captions"]) == (8, {"a": 4, "b": 4}, 0)
    assert [Path(s["path"]).name for s in d["skipped"]] == ["bad.png"] and "unreadable" in d["skipped"][0]["reason"]
    assert check["conditioning"]["class"] and check["conditioning"]["text"] == ""   # classes, no captions
    (stage,) = check["stages"]
    assert stage["stage"] == "diffusion" and stage["steps"] == 20 and stage["seconds_per_step"] > 0
    assert not (ROOT / "runs").exists() or not any((ROOT / "runs").glob("tiny-pixel*"))

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["tiny-pixel", "--data", str(empty), "--check", "--progress", "json"]) == 2
    assert "no usable image" in events(capsys)[-1]["message"]
