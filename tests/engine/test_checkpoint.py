"""Checkpoints: exact round trip of nested state (optimizer, RNG), atomic file, clear errors."""
import random

import numpy as np
import pytest
import torch

from engine.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint

pytestmark = pytest.mark.slow  # PyTorch: checkpoints


def _optimizer_state():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt


def test_round_trip_restores_optimizer_and_rng(tmp_path):
    net, opt = _optimizer_state()
    rng = capture_rng()
    path = save_checkpoint(tmp_path / "c.safetensors", {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                                        "step": 7, "rng": rng, "pair": (1, "a")}, summary={"step": 7})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    state = load_checkpoint(path)
    assert state["step"] == 7 and state["pair"] == (1, "a")
    assert (tmp_path / "c.json").is_file()
    restore_rng(state["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    net2, opt2 = _optimizer_state()
    opt2.load_state_dict(state["optimizer"])
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][k], v)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_damaged_checkpoint_raises_naming_the_file(tmp_path, damage):
    net, opt = _optimizer_state()
    path = save_checkpoint(tmp_path / "last.safetensors", {"model": net.state_dict(), "optimizer": opt.state_dict()})
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 10]
    elif damage == "flip":
        data[-5] ^= 0xFF  # inside the tensor data: only the stored sha256 can tell
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="last.safetensors"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")
