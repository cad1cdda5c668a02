"""The VAE trainer: reconstruction improves, the scale factor is 1/std of the latents, losses behave."""
import json

import numpy as np
import pytest
import torch

from engine.config import load_config
from engine.vae import kl_loss, load_vae, structural_loss, train_vae

pytestmark = pytest.mark.slow  # trains

torch.set_num_threads(1)


class Blobs(torch.utils.data.Dataset):
    """Two-tone images: a bright square on a dark background at a few positions."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        img = torch.full((3, 16, 16), -0.8)
        y, x = (i % 4) * 3, (i // 4) * 3
        img[:, y:y + 6, x:x + 6] = 0.8
        return {"image": img, "class": 0, "caption": ""}


def test_vae_reconstruction_improves_and_scale_factor_is_one_over_std(tmp_path):
    cfg = load_config("tiny-vae", {"training": {"steps": 30, "sample_every": 30, "lr": 2e-3},
                                   "vae_loss": {"adv_start": 20}})
    run = train_vae(cfg, tmp_path / "vae", dataset=Blobs(), progress=False)
    rec = [json.loads(l)["rec_loss"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(rec[-5:]) < 0.8 * np.mean(rec[:5])
    disc = [json.loads(l)["disc_loss"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(d == 0 for d in disc[:20]) and all(d > 0 for d in disc[20:])  # adversarial term after adv_start
    assert (run / "samples" / "step_000030.png").is_file()
    vae, scale_factor = load_vae(run)
    with torch.no_grad():
        x = torch.stack([Blobs()[i]["image"] for i in range(16)])
        means = vae.encode(x).latent_dist.mean
    np.testing.assert_allclose(scale_factor, 1.0 / means.std().item(), rtol=1e-4)
    assert json.loads((run / "model" / "studio_model.json").read_text())["kind"] == "vae"


def test_kl_and_structural_loss_are_zero_at_the_optimum():
    mu, logvar = torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)
    assert kl_loss(mu, logvar, 16 * 16 * 3).item() == 0.0
    assert kl_loss(mu + 1, logvar, 256).item() > 0
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert structural_loss(x, x).abs().item() < 1e-6
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    assert structural_loss(blurred, x).item() > structural_loss(x * 0.98, x).item()
