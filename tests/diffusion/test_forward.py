"""The forward process against its closed forms (docs/MATH.md), and the schedules' definitions."""
import math

import numpy as np
import pytest

from diffusion import make_schedule, schedule_from_dict
from diffusion.forward import (
    eps_from_v,
    eps_from_x0,
    posterior_mean_from_eps,
    posterior_mean_variance,
    q_sample,
    q_step_sample,
    to_x0_eps,
    v_from_eps,
    x0_from_eps,
    x0_from_v,
)

M = 20000  # samples per empirical check
K_SE = 5.0


def assert_mean_var(samples, mean, var):
    """Empirical mean and variance of samples [M, ...] within K_SE standard errors of the closed form."""
    m = len(samples)
    se_mean = np.sqrt(var / m)
    assert np.all(np.abs(samples.mean(0) - mean) <= K_SE * se_mean)
    se_var = var * np.sqrt(2.0 / (m - 1))
    assert np.all(np.abs(samples.var(0, ddof=1) - var) <= K_SE * se_var)


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear"])
@pytest.mark.parametrize("t", [0, 10, 500, 999])
def test_q_sample_moments(name, t):
    s = make_schedule(name, 1000)
    rng = np.random.default_rng(t)
    x0 = np.array([[-0.8, 0.1, 0.9]])
    xt = q_sample(s, np.repeat(x0, M, 0), t, rng.standard_normal((M, 3)))
    ac = s.alphas_cumprod[t]
    assert_mean_var(xt, math.sqrt(ac) * x0[0], np.full(3, 1 - ac))


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_single_steps_compose_to_q_sample(name):
    """t+1 steps of q(x_t | x_{t-1}) from x_0 are distributed as q(x_t | x_0)."""
    s = make_schedule(name, 200)
    rng = np.random.default_rng(0)
    x0 = np.array([0.7, -0.4])
    x = np.repeat(x0[None], M, 0)
    mean, var = x0.copy(), np.zeros(2)
    for t in range(120):
        x = q_step_sample(s, x, t, rng.standard_normal(x.shape))
        mean, var = np.sqrt(1 - s.betas[t]) * mean, (1 - s.betas[t]) * var + s.betas[t]
    ac = s.alphas_cumprod[119]
    np.testing.assert_allclose(mean, math.sqrt(ac) * x0, rtol=1e-12)  # the algebra of docs/MATH.md
    np.testing.assert_allclose(var, 1 - ac, rtol=1e-12)
    assert_mean_var(x, math.sqrt(ac) * x0, np.full(2, 1 - ac))


@pytest.mark.parametrize("t", [1, 50, 700])
def test_posterior_is_the_conditional_of_the_forward_process(t):
    """Regressing x_{t-1} on x_t (x_0 fixed) gives coef2, intercept coef1 x_0 and residual variance β̃_t."""
    s = make_schedule("linear", 1000)
    rng = np.random.default_rng(t)
    x0 = np.full((M, 1), 0.6)
    x_prev = q_sample(s, x0, t - 1, rng.standard_normal((M, 1)))
    x_t = q_step_sample(s, x_prev, t, rng.standard_normal((M, 1)))
    mean, var, logvar = posterior_mean_variance(s, x0, x_t, t)
    resid = x_prev - mean
    assert abs(resid.mean()) <= K_SE * math.sqrt(var / M)
    assert abs(np.corrcoef(resid[:, 0], x_t[:, 0])[0, 1]) <= K_SE / math.sqrt(M)
    assert abs(resid.var() - var) <= K_SE * var * math.sqrt(2 / M)
    assert logvar == pytest.approx(math.log(var))


def test_conversions_are_consistent():
    s = make_schedule("cosine", 1000)
    rng = np.random.default_rng(0)
    x0, eps = rng.uniform(-1, 1, (4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    t = np.array([0, 5, 500, 999])
    xt = q_sample(s, x0, t, eps)
    v = v_from_eps(s, xt, t, eps)
    ac = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(v, np.sqrt(ac) * eps - np.sqrt(1 - ac) * x0, atol=1e-9)
    np.testing.assert_allclose(x0_from_eps(s, xt, t, eps), x0, atol=1e-9)
    np.testing.assert_allclose(eps_from_x0(s, xt, t, x0), eps, atol=1e-6)
    np.testing.assert_allclose(x0_from_v(s, xt, t, v), x0, atol=1e-9)
    np.testing.assert_allclose(eps_from_v(s, xt, t, v), eps, atol=1e-9)
    for pred, out in (("epsilon", eps), ("v_prediction", v), ("sample", x0)):
        got_x0, got_eps = to_x0_eps(s, out, xt, t, pred)
        np.testing.assert_allclose(got_x0, x0, atol=1e-9)
        np.testing.assert_allclose(got_eps, eps, atol=1e-6)
    mean, _, _ = posterior_mean_variance(s, x0, xt, t)
    np.testing.assert_allclose(posterior_mean_from_eps(s, xt, t, eps), mean, atol=1e-9)


def test_schedule_definitions():
    lin = make_schedule("linear")
    assert lin.betas[0] == 1e-4 and lin.betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(lin.alphas_cumprod, np.cumprod(1 - lin.betas))
    np.testing.assert_allclose(lin.alphas_cumprod_prev[1:], lin.alphas_cumprod[:-1])
    assert lin.alphas_cumprod_prev[0] == 1.0
    sd = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    np.testing.assert_allclose(np.sqrt(sd.betas), np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000))
    cos = make_schedule("cosine", 1000)
    f = lambda u: math.cos(((u / 1000 + 0.008) / 1.008) * math.pi / 2) ** 2  # noqa: E731
    assert cos.alphas_cumprod[499] == pytest.approx(f(500) / f(0), rel=1e-9)
    assert cos.betas.max() == pytest.approx(0.999) and cos.betas.min() > 0


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear"])
def test_schedule_dict_round_trip(name):
    s = make_schedule(name, 321, 2e-4, 0.03, 0.01)
    d = s.to_dict()
    assert d == {"name": name, "num_train_timesteps": 321, "beta_start": 2e-4, "beta_end": 0.03, "cosine_s": 0.01}
    np.testing.assert_array_equal(schedule_from_dict(d).betas, s.betas)


@pytest.mark.parametrize("bad,word", [
    (dict(name="quadratic"), "quadratic"), (dict(name="linear", T=0), "num_train_timesteps"),
    (dict(name="linear", beta_start=0.5, beta_end=0.1), "beta_start"), (dict(name="cosine", cosine_s=-1), "cosine_s"),
])
def test_bad_schedules_raise(bad, word):
    with pytest.raises(ValueError, match=word):
        make_schedule(**bad)
    with pytest.raises(ValueError, match="unknown schedule field"):
        schedule_from_dict({"name": "linear", "T": 10})


def test_forward_shape_and_timestep_errors():
    s = make_schedule("linear", 10)
    with pytest.raises(ValueError, match="shapes differ"):
        q_sample(s, np.zeros((2, 3)), 1, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="out of range"):
        q_sample(s, np.zeros((2, 3)), 10, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one per batch item"):
        q_sample(s, np.zeros((2, 3)), np.array([1, 2, 3]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="prediction_type"):
        to_x0_eps(s, np.zeros(3), np.zeros(3), 1, "score")
