"""Two CPU processes through Accelerate (torchrun launch, gloo): ranks see different data, end with identical weights."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains (two processes)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import hashlib, json, sys, torch
torch.set_num_threads(1)
from accelerate import PartialState
from engine.config import load_config
from engine.train import train


class ColourSet(torch.utils.data.Dataset):
    classes = ["dark", "bright"]
    def __len__(self):
        return 16
    def __getitem__(self, i):
        return {"image": torch.full((1, 16, 16), -0.6 if i % 2 else 0.6), "class": i % 2, "caption": ""}


seen, digest = [], {}


def on_end(model, ema):
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    digest["weights"] = h.hexdigest()


out = sys.argv[1]
cfg = load_config("tiny-pixel", {"training": {"steps": 3, "batch": 4, "checkpoint_every": 0, "sample_every": 0}})
train(cfg, out, dataset=ColourSet(), progress=False, hooks={"on_batch": lambda step, rank, idx: seen.append(idx), "on_end": on_end})
state = PartialState()
json.dump({"rank": state.process_index, "world": state.num_processes, "seen": seen, **digest},
          open(f"{out}/rank{state.process_index}.json", "w"))
"""


def test_two_cpu_processes_shard_data_and_agree(tmp_path):
    """Launched with torchrun (torch.distributed.run): `accelerate launch` needs mpirun for several CPU
    processes; the Accelerator inside the trainer reads the same environment either way (gloo on CPU)."""
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(script), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["world"] == r1["world"] == 2
    assert len(r0["seen"]) == len(r1["seen"]) == 3
    for a, b in zip(r0["seen"], r1["seen"]):
        assert not set(a) & set(b)  # each step's global batch of 8 is split, never duplicated
    assert r0["weights"] == r1["weights"]  # gradients were averaged: the replicas stayed identical
    assert (out / "model").is_dir()
