"""End to end: sample a 2-D Gaussian mixture through its exact denoiser with every sampler and compare
the samples' mixture weights, mean and covariance with the data, within 5 standard errors.

x has shape [N, 2, 1, 1] (a batch of 1x1 "images" with 2 channels). The exact ε*(x_t, t) is in
diffusion/mixture.py. Ancestral noise comes from one generator for the whole batch here (fast);
per-image seeding is tested in test_properties.py.
"""
import numpy as np
import pytest

from diffusion import initial_noise, make_schedule, sample, sampler_grid
from diffusion.mixture import example_mixture, mixture_denoiser, mixture_error

N = 4000
K_SE = 5.0


class BatchNormalRNG:
    def __init__(self, n, seed):
        self.n, self.gen = n, np.random.default_rng(seed)

    def randn(self, shape):
        return self.gen.standard_normal((self.n, *shape), dtype=np.float32)


@pytest.fixture(scope="module")
def setup():
    return example_mixture(), make_schedule("linear", 1000), initial_noise(0, N, (2, 1, 1))


def assert_matches_data(mixture, x):
    for stat, (err, se) in mixture_error(mixture, x).items():
        assert (err <= K_SE * se).all(), f"{stat}: error {err.ravel()} exceeds {K_SE} standard errors {se.ravel()}"


@pytest.fixture(scope="module")
def ddpm_1000(setup):
    mixture, schedule, x_T = setup
    return sample("ddpm", mixture_denoiser(mixture, schedule), x_T, sampler_grid("ddpm", schedule, steps=1000),
                  rng=BatchNormalRNG(N, 1))


def test_the_check_detects_a_wrong_distribution(setup):
    mixture, _, x_T = setup
    assert_matches_data(mixture, mixture.sample(N, np.random.default_rng(2)).reshape(N, 2, 1, 1))
    with pytest.raises(AssertionError, match="cov"):
        assert_matches_data(mixture, 0.9 * mixture.sample(N, np.random.default_rng(2)))
    with pytest.raises(AssertionError):
        assert_matches_data(mixture, x_T)


@pytest.mark.slow
def test_ddpm_1000_steps(setup, ddpm_1000):
    assert_matches_data(setup[0], ddpm_1000)


@pytest.mark.slow
def test_ddpm_100_steps_beta_tilde_sample_prediction(setup):
    mixture, schedule, x_T = setup
    x = sample("ddpm", mixture_denoiser(mixture, schedule, "sample"), x_T, sampler_grid("ddpm", schedule, steps=100),
               prediction_type="sample", variance="beta_tilde", rng=BatchNormalRNG(N, 3))
    assert_matches_data(mixture, x)


@pytest.mark.slow
def test_ddim_200_steps_v_prediction(setup):
    mixture, schedule, x_T = setup
    x = sample("ddim", mixture_denoiser(mixture, schedule, "v_prediction"), x_T,
               sampler_grid("ddim", schedule, steps=200), prediction_type="v_prediction")
    assert_matches_data(mixture, x)


@pytest.mark.slow
def test_ddim_eta_1_is_ancestral(setup):
    mixture, schedule, x_T = setup
    x = sample("ddim", mixture_denoiser(mixture, schedule), x_T, sampler_grid("ddim", schedule, steps=100), eta=1.0,
               rng=BatchNormalRNG(N, 4))
    assert_matches_data(mixture, x)


@pytest.mark.slow
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_dpmpp_2m_20_steps_matches_data_and_ddpm_1000(setup, ddpm_1000, spacing):
    mixture, schedule, x_T = setup
    x = sample("dpmpp_2m", mixture_denoiser(mixture, schedule), x_T,
               sampler_grid("dpmpp_2m", schedule, steps=20, spacing=spacing))
    assert_matches_data(mixture, x)
    # Two independent estimates of the same statistics: their difference has variance se1² + se2².
    ours, ref = mixture_error(mixture, x), mixture_error(mixture, ddpm_1000)
    a, b = x.reshape(N, 2), ddpm_1000.reshape(N, 2)
    diffs = {
        "weights": np.abs(mixture.responsibilities(a).mean(0) - mixture.responsibilities(b).mean(0)),
        "mean": np.abs(a.mean(0) - b.mean(0)),
        "cov": np.abs(np.cov(a.T) - np.cov(b.T)),
    }
    for stat, diff in diffs.items():
        se = np.hypot(ours[stat][1], ref[stat][1])
        assert (diff <= K_SE * se).all(), f"{stat}: DPM-Solver++ 20 vs DDPM 1000 differ by {diff.ravel()}"


@pytest.mark.slow
@pytest.mark.parametrize("name,steps,spacing", [
    ("euler", 50, "trailing"), ("euler_a", 100, "leading"), ("dpmpp_2m_karras", 20, "leading"),
    ("dpmpp_2m_sde_karras", 40, "leading"), ("dpmpp_2m_sde", 40, "trailing"), ("unipc", 15, "trailing"),
])
def test_new_samplers_match_the_data(setup, name, steps, spacing):
    """Each sampler people ask for by name, at the step counts people use, draws the mixture."""
    mixture, schedule, x_T = setup
    grid = sampler_grid(name, schedule, steps=steps, spacing=spacing)
    x = sample(name, mixture_denoiser(mixture, schedule), grid.start(x_T), grid, rng=BatchNormalRNG(N, 5))
    assert_matches_data(mixture, x)
