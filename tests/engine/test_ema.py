"""The weight EMA: theta_ema <- d * theta_ema + (1 - d) * theta with the warm-up decay."""
import pytest
import torch
from torch import nn

from engine.ema import EMA

pytestmark = pytest.mark.slow  # PyTorch


def test_update_is_the_exponential_average_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = nn.BatchNorm1d(3)  # float weights plus an integer buffer (num_batches_tracked)
    ema = EMA(model, decay=0.9)
    start = {k: v.clone().float() for k, v in model.state_dict().items()}
    expected = dict(start)
    for k in range(4):
        with torch.no_grad():
            model.weight.add_(torch.randn(3))
            model.bias.add_(torch.randn(3))
            model.num_batches_tracked += 1
        d = min(0.9, (1 + k) / (10 + k))
        ema.update(model)
        for name, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                expected[name] = d * expected[name] + (1 - d) * v.float()
            else:
                expected[name] = v.clone()
    for name, v in ema.state_dict().items():
        assert torch.allclose(v.float(), expected[name].float(), atol=1e-6), name
    assert int(ema.state_dict()["num_batches_tracked"]) == 4
    assert not torch.equal(ema.state_dict()["weight"], model.weight.detach())
