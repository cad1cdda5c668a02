"""Oracle parity with diffusers' schedulers: same betas, same deterministic network, same noise.

diffusers keeps ᾱ in float32; we hand its schedulers our float64 ᾱ (the betas themselves are compared
separately) so the trajectories can agree to 1e-5 relative (they agree to ~1e-6). The σ-based and
multistep schedulers round σ and their state to float32 every step, so long runs drift by ~2e-6 (ε)
.. 1.6e-5 (x_0 prediction at 1000 steps); the cases stay below 1e-5.

The second half runs every sampler on the settings Stable Diffusion uses (scaled_linear 0.00085 ..
0.012, steps_offset 1, leading and trailing spacing, ε and v prediction) and compares the state after
EVERY step (σ-based schedulers keep x/sqrt(ᾱ); it is converted to x before comparing).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)
import diffusers.schedulers.scheduling_ddpm as ddpm_module  # noqa: E402
import diffusers.schedulers.scheduling_euler_ancestral_discrete as euler_a_module  # noqa: E402
import diffusers.schedulers.scheduling_lcm as lcm_module  # noqa: E402

from diffusion import make_schedule, sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_dpmpp_2m_sde  # noqa: E402
from diffusion.grid import dpm_grid, spaced_grid  # noqa: E402
from diffusion.samplers import sample, sampler_grid, sampler_spec  # noqa: E402
from diffusion.spacing import dpm_solver_timesteps, timesteps  # noqa: E402

pytestmark = pytest.mark.slow  # PyTorch: diffusers' schedulers are the oracle

torch.set_num_threads(1)
TOL = 1e-5
DIFFUSERS_NAME = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


def net(x, t):
    """A fixed nonlinear stand-in for a network: any prediction type, smooth in x and t."""
    t = np.asarray(t, dtype=np.float64).reshape(-1, *([1] * (x.ndim - 1)))
    return (np.tanh(0.8 * x + 0.3 * np.sin(t / 97.0)) + 0.05 * x * np.cos(t / 61.0)).astype(np.float32)


class ListRNG:
    """Hands out pre-drawn noise in order, so both implementations add the very same z."""

    def __init__(self, arrays):
        self.arrays, self.used = list(arrays), 0

    def randn(self, shape):
        a = self.arrays[self.used]
        assert a.shape[1:] == tuple(shape)
        self.used += 1
        return a


def diffusers_loop(scheduler, x_T, step_kw=lambda i: {}, model=None):
    model = model or net
    x = torch.from_numpy(x_T.astype(np.float64))
    for i, t in enumerate(scheduler.timesteps):
        out = model(x.numpy().astype(np.float32), np.full(x.shape[0], int(t)))
        x = scheduler.step(torch.from_numpy(out.astype(np.float64)), t, x, **step_kw(i)).prev_sample
    return x.numpy()


def assert_close(ours, ref):
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err < TOL, f"relative max error {err:.2e}"


@pytest.fixture(scope="module")
def x_T():
    return np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def noises(x_T):
    rng = np.random.default_rng(1)
    return [rng.standard_normal(x_T.shape) for _ in range(1001)]


def use_float64_alphas(scheduler, schedule):
    scheduler.alphas_cumprod = torch.from_numpy(schedule.alphas_cumprod)
    scheduler.one = scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)


# ------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize("name,start,end", [("linear", 1e-4, 0.02), ("scaled_linear", 0.00085, 0.012),
                                            ("cosine", 1e-4, 0.02)])
@pytest.mark.parametrize("T", [1000, 50])
def test_betas_match_diffusers(name, start, end, T):
    ours = make_schedule(name, T, start, end)
    ref = DDPMScheduler(T, start, end, DIFFUSERS_NAME[name])
    np.testing.assert_allclose(ours.betas, ref.betas.double().numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.alphas_cumprod, ref.alphas_cumprod.double().numpy(), rtol=2e-5)


def test_spacing_matches_diffusers():
    for T in (1000, 50, 7):
        for steps in sorted({1, 2, 3, 7, 10, 20, 49, 50, T - 1, T} & set(range(1, T + 1))):
            for spacing in ("leading", "trailing", "linspace"):
                ref = DDIMScheduler(T, timestep_spacing=spacing)
                ref.set_timesteps(steps)
                expected = ref.timesteps.numpy()
                if len(expected) == steps:  # diffusers' trailing arange is sometimes one too long
                    np.testing.assert_array_equal(timesteps(T, steps, spacing), expected, err_msg=f"{T} {steps}")
                if steps < T:
                    dpm = DPMSolverMultistepScheduler(T, timestep_spacing=spacing)
                    dpm.set_timesteps(steps)
                    np.testing.assert_array_equal(dpm_solver_timesteps(T, steps, spacing), dpm.timesteps.numpy())
    ref = DDIMScheduler(1000, timestep_spacing="leading", steps_offset=1)
    ref.set_timesteps(50)
    np.testing.assert_array_equal(timesteps(1000, 50, "leading", steps_offset=1), ref.timesteps.numpy())


# ------------------------------------------------------------------------------------- samplers


DDPM_CASES = [  # (schedule, steps, spacing, prediction, variance)
    ("linear", 1000, "leading", "epsilon", "beta"),
    ("linear", 1000, "leading", "v_prediction", "beta_tilde"),
    ("linear", 50, "leading", "sample", "beta"),
    ("linear", 10, "linspace", "epsilon", "beta_tilde"),
    ("linear", 20, "trailing", "epsilon", "beta_tilde"),
    ("cosine", 25, "leading", "v_prediction", "beta"),
    ("scaled_linear", 30, "linspace", "epsilon", "beta"),
]


@pytest.mark.parametrize("name,steps,spacing,pred,variance", DDPM_CASES)
def test_ddpm_matches_diffusers(name, steps, spacing, pred, variance, x_T, noises, monkeypatch):
    schedule = make_schedule(name, 1000)
    ref = DDPMScheduler(1000, trained_betas=schedule.betas, clip_sample=False, prediction_type=pred,
                        variance_type="fixed_large" if variance == "beta" else "fixed_small",
                        timestep_spacing=spacing)
    ref.set_timesteps(steps)
    use_float64_alphas(ref, schedule)
    it = iter(noises)
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda *a, **k: torch.from_numpy(next(it)))
    expected = diffusers_loop(ref, x_T)
    rng = ListRNG(noises)
    ours = sample_ddpm(net, x_T, spaced_grid(schedule, steps=steps, spacing=spacing), prediction_type=pred,
                       variance=variance, rng=rng)
    assert_close(ours, expected)
    # One draw per step except the last, in both implementations (trailing: diffusers draws a last one
    # scaled by sqrt(1e-20), which we skip).
    assert rng.used == steps - 1


def test_ddpm_clip_matches_diffusers_clip_sample(x_T, noises, monkeypatch):
    schedule = make_schedule("linear", 1000)
    ref = DDPMScheduler(1000, trained_betas=schedule.betas, clip_sample=True, variance_type="fixed_large")
    ref.set_timesteps(40)
    use_float64_alphas(ref, schedule)
    it = iter(noises)
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda *a, **k: torch.from_numpy(next(it)))
    expected = diffusers_loop(ref, 3 * x_T)
    ours = sample_ddpm(net, 3 * x_T, spaced_grid(schedule, steps=40), rng=ListRNG(noises), clip_x0=True)
    assert_close(ours, expected)


@pytest.mark.parametrize("name,steps,spacing,pred,eta,clip", [
    ("linear", 1000, "leading", "epsilon", 0.0, False),
    ("linear", 50, "leading", "v_prediction", 0.0, False),
    ("linear", 10, "trailing", "epsilon", 0.0, False),
    ("linear", 25, "trailing", "sample", 0.0, False),
    ("cosine", 20, "leading", "epsilon", 1.0, False),
    ("scaled_linear", 50, "leading", "epsilon", 0.5, False),
    ("linear", 7, "leading", "v_prediction", 0.3, False),
])
def test_ddim_matches_diffusers(name, steps, spacing, pred, eta, clip, x_T, noises):
    schedule = make_schedule(name, 1000)
    ref = DDIMScheduler(1000, trained_betas=schedule.betas, clip_sample=clip, prediction_type=pred,
                        timestep_spacing=spacing)
    ref.set_timesteps(steps)
    use_float64_alphas(ref, schedule)
    expected = diffusers_loop(ref, x_T, lambda i: {"eta": eta, "variance_noise": torch.from_numpy(noises[i])})
    ours = sample_ddim(net, x_T, spaced_grid(schedule, steps=steps, spacing=spacing), eta=eta, prediction_type=pred,
                       rng=ListRNG(noises), clip_x0=clip)
    assert_close(ours, expected)


def test_ddim_clip_equals_diffusers_when_nothing_is_clipped(x_T, noises):
    """With x̂_0 inside [-1, 1] clipping changes nothing, so we still match diffusers' clip_sample."""
    schedule = make_schedule("scaled_linear", 1000)
    bounded = lambda x, t: (0.5 * np.tanh(x)).astype(np.float32)  # noqa: E731  an x̂_0 inside [-1, 1]
    ref = DDIMScheduler(1000, trained_betas=schedule.betas, clip_sample=True, prediction_type="sample",
                        timestep_spacing="leading")
    ref.set_timesteps(20)
    use_float64_alphas(ref, schedule)
    expected = diffusers_loop(ref, x_T, lambda i: {"eta": 0.0}, model=bounded)
    ours = sample_ddim(bounded, x_T, spaced_grid(schedule, steps=20), prediction_type="sample", clip_x0=True)
    assert_close(ours, expected)


def test_ddim_clip_keeps_x0_and_eps_consistent(x_T):
    """After clipping, ε̂ is recomputed so that x_t = sqrt(ᾱ) x̂_0 + sqrt(1-ᾱ) ε̂ still holds."""
    from diffusion.sampling import predict_x0_eps

    schedule = make_schedule("cosine", 1000)
    x = 3 * x_T.astype(np.float64)
    for t in (999, 500, 10):
        a = schedule.alphas_cumprod[t]
        x0, eps = predict_x0_eps(5 * net(x, np.array([t])), x, a, prediction_type="epsilon", clip_x0=True)
        assert np.abs(x0).max() <= 1.0
        np.testing.assert_allclose(np.sqrt(a) * x0 + np.sqrt(1 - a) * eps, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,steps,spacing,pred", [
    ("linear", 1, "leading", "epsilon"),
    ("linear", 2, "linspace", "epsilon"),
    ("linear", 10, "leading", "epsilon"),
    ("linear", 20, "linspace", "v_prediction"),
    ("linear", 20, "trailing", "epsilon"),
    ("linear", 999, "leading", "epsilon"),
    ("linear", 1000, "trailing", "epsilon"),
    ("linear", 200, "trailing", "sample"),
    ("cosine", 15, "trailing", "v_prediction"),
    ("scaled_linear", 30, "linspace", "epsilon"),
])
@pytest.mark.parametrize("sde", [False, True])
def test_dpmpp_2m_matches_diffusers(name, steps, spacing, pred, sde, x_T, noises):
    """DPM-Solver++(2M) and its SDE variant, the latter with the very same noise on each step."""
    schedule = make_schedule(name, 1000, *((0.00085, 0.012) if name == "scaled_linear" else ()))
    ref = DPMSolverMultistepScheduler(1000, trained_betas=schedule.betas, prediction_type=pred, solver_order=2,
                                      algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++",
                                      timestep_spacing=spacing)
    ref.set_timesteps(steps)
    rng = ListRNG(noises)
    grid = dpm_grid(schedule, steps=steps, spacing=spacing)
    if sde:
        expected = diffusers_loop(ref, x_T, lambda i: {"variance_noise": torch.from_numpy(noises[i])})
        ours = sample_dpmpp_2m_sde(net, x_T, grid, prediction_type=pred, rng=rng)
    else:
        expected = diffusers_loop(ref, x_T)
        ours = sample_dpmpp_2m(net, x_T, grid, prediction_type=pred)
    assert_close(ours, expected)
    assert rng.used == (steps - 1 if sde else 0)  # fresh noise on every step but the last (to sigma = 0)


def test_callbacks_report_diffusers_x0(x_T):
    """The callback's x0 is the scheduler's pred_original_sample and t its timestep."""
    schedule = make_schedule("linear", 1000)
    ref = DDIMScheduler(1000, trained_betas=schedule.betas, clip_sample=False)
    ref.set_timesteps(10)
    use_float64_alphas(ref, schedule)
    x = torch.from_numpy(x_T.astype(np.float64))
    expected = []
    for t in ref.timesteps:
        out = net(x.numpy().astype(np.float32), np.full(3, int(t)))
        res = ref.step(torch.from_numpy(out.astype(np.float64)), t, x)
        expected.append((int(t), res.pred_original_sample.numpy(), res.prev_sample.numpy()))
        x = res.prev_sample
    infos = []
    sample_ddim(net, x_T, spaced_grid(schedule, steps=10), callback=infos.append)
    assert [i["step"] for i in infos] == list(range(1, 11)) and all(i["steps"] == 10 for i in infos)
    for info, (t, x0, x_prev) in zip(infos, expected):
        assert info["t"] == t
        np.testing.assert_allclose(info["x0"], x0, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(info["x"], x_prev, rtol=1e-5, atol=1e-5)


# ------------------------------------------------- every sampler, step by step, on SD's settings

SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
VE_STATE = ("euler", "euler_a")  # diffusers' state is x/sqrt(ᾱ) for these


def sd_scheduler(name, spacing, pred):
    """The diffusers scheduler that the sampler table names for `name`, configured as SD's folder is."""
    import diffusers

    cls, extra = sampler_spec(name).diffusers
    if name == "ddpm":  # SD's DDPM config: fixed_small (ours: variance="beta_tilde")
        extra = {**extra, "variance_type": "fixed_small", "clip_sample": False}
    if name == "ddim":
        extra = {**extra, "clip_sample": False}
    return getattr(diffusers, cls)(**SD, prediction_type=pred, timestep_spacing=spacing, steps_offset=1, **extra)


def with_float64_alphas(scheduler, schedule):
    """Our float64 ᾱ in the scheduler, before set_timesteps derives σ from it."""
    scheduler.alphas_cumprod = torch.from_numpy(schedule.alphas_cumprod)
    for attr in ("one", "final_alpha_cumprod"):
        if hasattr(scheduler, attr):
            setattr(scheduler, attr, torch.tensor(1.0, dtype=torch.float64))
    return scheduler


def diffusers_steps(name, scheduler, noise, noises, monkeypatch):
    """diffusers' trajectory from `noise`: [x after step i] in the model's own form (x, not x/sqrt(ᾱ))."""
    it = iter(noises)
    for module in (ddpm_module, euler_a_module, lcm_module):
        monkeypatch.setattr(module, "randn_tensor", lambda *a, **k: torch.from_numpy(next(it)))
    x = torch.from_numpy(noise.astype(np.float64)) * float(scheduler.init_noise_sigma)
    states = []
    for i, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, t)
        out = torch.from_numpy(net(x_in.numpy().astype(np.float32), np.full(x.shape[0], int(t))).astype(np.float64))
        kw = {"variance_noise": torch.from_numpy(noises[i])} if "sde" in name else {}
        x = scheduler.step(out, t, x, **kw).prev_sample
        if name in VE_STATE:  # x/sqrt(ᾱ) at σ_{i+1} -> x
            states.append(x.numpy() / np.sqrt(1.0 + float(scheduler.sigmas[i + 1]) ** 2))
        else:
            states.append(x.numpy())
    return states


SD_NAMES = ["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_2m_sde",
            "dpmpp_2m_sde_karras", "unipc", "lcm"]


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("name", SD_NAMES)
def test_every_sampler_matches_diffusers_step_by_step_on_sd_settings(name, spacing, pred, x_T, noises, monkeypatch):
    schedule = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    # 12 steps do not divide T = 1000; DDIM then differs by design (ddpm.py's docstring): 10 for DDIM
    steps = {"lcm": 4, "ddim": 10}.get(name, 12)
    ref = with_float64_alphas(sd_scheduler(name, spacing, pred), schedule)
    ref.set_timesteps(steps)
    grid = sampler_grid(name, schedule, steps=steps, spacing=spacing, steps_offset=1)
    np.testing.assert_array_equal(grid.timesteps, ref.timesteps.numpy().astype(np.int64))
    if hasattr(ref, "sigmas") and len(ref.sigmas) == steps + 1:
        np.testing.assert_allclose(grid.sigmas, ref.sigmas.numpy().astype(np.float64), rtol=1e-6)
    expected = diffusers_steps(name, ref, x_T, noises, monkeypatch)
    states, rng = [], ListRNG(noises)
    extra = {"variance": "beta_tilde"} if name == "ddpm" else {}  # SD's DDPM config: fixed_small
    ours = sample(name, net, grid.start(x_T), grid, prediction_type=pred, rng=rng,
                  callback=lambda info: states.append(info["x"]), **extra)
    errors = [np.abs(a - b).max() / np.abs(b).max() for a, b in zip(states, expected)]
    print(f"{name:20s} {spacing:8s} {pred:12s} max step deviation {max(errors):.1e}")
    assert len(states) == len(expected) == steps
    assert max(errors) < TOL, errors
    np.testing.assert_array_equal(ours, states[-1])


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m_karras", "unipc", "ddim", "lcm"])
@pytest.mark.parametrize("strength", [0.3, 0.55, 1.0])
def test_img2img_grid_and_start_match_diffusers_img2img(name, strength, x_T):
    """diffusers' img2img: the steps its pipeline keeps (LCM: its scheduler's strength rule) and the
    init latent noised to the first of them by the scheduler's add_noise."""
    schedule = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    steps = 4 if name == "lcm" else 20
    ref = with_float64_alphas(sd_scheduler(name, "leading", "epsilon"), schedule)
    if name == "lcm":
        ref.set_timesteps(steps, strength=strength)
        kept = ref.timesteps
    else:
        ref.set_timesteps(steps)
        init = min(int(steps * strength), steps)
        begin = max(steps - init, 0)
        kept = ref.timesteps[begin:]
        if hasattr(ref, "set_begin_index"):
            ref.set_begin_index(begin)
    grid = sampler_grid(name, schedule, steps=steps, spacing="leading", steps_offset=1, strength=strength)
    np.testing.assert_array_equal(grid.timesteps, kept.numpy().astype(np.int64))
    x0 = np.tanh(x_T[::-1]).astype(np.float64)
    noisy = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(x_T.astype(np.float64)), kept[:1]).numpy()
    if name in VE_STATE:
        noisy = noisy / np.sqrt(1.0 + float(ref.sigmas[begin]) ** 2)
    np.testing.assert_allclose(grid.start(x_T, x0), noisy, rtol=1e-6, atol=1e-6)


# ------------------------------- settings beyond the defaults: set_alpha_to_one, linspace Euler, cosine Karras


def float_net_loop(name, scheduler, noise, noises, monkeypatch):
    """diffusers_steps with the network told the scheduler's own (possibly fractional) timestep."""
    it = iter(noises)
    for module in (ddpm_module, euler_a_module, lcm_module):
        monkeypatch.setattr(module, "randn_tensor", lambda *a, **k: torch.from_numpy(next(it)))
    x = torch.from_numpy(noise.astype(np.float64)) * float(scheduler.init_noise_sigma)
    states, told = [], []
    for i, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, t)
        told.append(float(t))
        out = net(x_in.numpy().astype(np.float32), np.full(x.shape[0], float(t)))
        x = scheduler.step(torch.from_numpy(out.astype(np.float64)), t, x).prev_sample
        scale = np.sqrt(1.0 + float(scheduler.sigmas[i + 1]) ** 2) if name in VE_STATE else 1.0
        states.append(x.numpy() / scale)
    return states, told


def recording(model, told):
    def wrapped(x, t):
        told.append(float(np.asarray(t)[0]))
        return model(x, t)
    return wrapped


@pytest.mark.parametrize("steps_offset, spacing, steps", [(1, "leading", 10), (0, "leading", 10), (1, "leading", 7),
                                                          (0, "trailing", 10)])
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_ddim_set_alpha_to_one_false_matches_diffusers(steps_offset, spacing, steps, pred, x_T, noises, monkeypatch):
    """SD's configs say set_alpha_to_one=false: DDIM's last step ends at ᾱ_0 (final_alpha_cumprod),
    not at 1; with steps_offset 0 the last timestep is 0 itself and that step changes nothing."""
    schedule = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    ref = DDIMScheduler(**SD, prediction_type=pred, timestep_spacing=spacing, steps_offset=steps_offset,
                        clip_sample=False, set_alpha_to_one=False)
    ref.alphas_cumprod = torch.from_numpy(schedule.alphas_cumprod)
    ref.final_alpha_cumprod = ref.alphas_cumprod[0]
    ref.set_timesteps(steps)
    grid = sampler_grid("ddim", schedule, steps=steps, spacing=spacing, steps_offset=steps_offset,
                        set_alpha_to_one=False)
    assert grid.alphas_cumprod[-1] == schedule.alphas_cumprod[0]
    expected, _ = float_net_loop("ddim", ref, x_T, noises, monkeypatch)
    states = []
    sample("ddim", net, grid.start(x_T), grid, prediction_type=pred, callback=lambda info: states.append(info["x"]))
    errors = [np.abs(a - b).max() / np.abs(b).max() for a, b in zip(states, expected)]
    assert len(states) == steps and max(errors) < TOL, errors
    ones = sample("ddim", net, x_T, sampler_grid("ddim", schedule, steps=steps, spacing=spacing,
                                                  steps_offset=steps_offset), prediction_type=pred)
    if steps_offset == 1:  # the setting matters: ᾱ_0 leaves sqrt(1 - ᾱ_0) ≈ 0.03 of ε̂ in the image
        assert np.abs(ones - states[-1]).max() > 1e-3


@pytest.mark.parametrize("name", ["euler", "euler_a"])
@pytest.mark.parametrize("steps", [12, 25, 6])
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_euler_linspace_visits_diffusers_fractional_timesteps(name, steps, pred, x_T, noises, monkeypatch):
    """Euler on linspace spacing: diffusers tells the network linspace(0, T-1, n) unrounded and
    interpolates σ between training timesteps; so do we (Grid.model_timesteps)."""
    schedule = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    ref = with_float64_alphas(sd_scheduler(name, "linspace", pred), schedule)
    ref.set_timesteps(steps)
    grid = sampler_grid(name, schedule, steps=steps, spacing="linspace", steps_offset=1)
    assert grid.model_timesteps is not None  # 999 / (steps - 1) is not whole for these
    np.testing.assert_allclose(grid.model_timesteps, ref.timesteps.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(grid.timesteps, np.round(ref.timesteps.numpy()).astype(np.int64))
    np.testing.assert_allclose(grid.sigmas, ref.sigmas.numpy().astype(np.float64), rtol=1e-6)
    expected, told_ref = float_net_loop(name, ref, x_T, noises, monkeypatch)
    states, told = [], []
    sample(name, recording(net, told), grid.start(x_T), grid, prediction_type=pred, rng=ListRNG(noises),
           callback=lambda info: states.append(info["x"]))
    np.testing.assert_allclose(told, told_ref, rtol=0, atol=1e-4)
    errors = [np.abs(a - b).max() / np.abs(b).max() for a, b in zip(states, expected)]
    assert max(errors) < TOL, errors


def test_euler_linspace_img2img_starts_at_diffusers_sigma(x_T):
    """img2img with fractional timesteps: the kept steps and add_noise at the interpolated σ."""
    schedule = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    ref = with_float64_alphas(sd_scheduler("euler", "linspace", "epsilon"), schedule)
    ref.set_timesteps(20)
    begin = 20 - int(20 * 0.45)
    ref.set_begin_index(begin)
    grid = sampler_grid("euler", schedule, steps=20, spacing="linspace", strength=0.45)
    np.testing.assert_allclose(grid.model_timesteps, ref.timesteps[begin:].numpy(), atol=1e-4)
    x0 = np.tanh(x_T[::-1]).astype(np.float64)
    noisy = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(x_T.astype(np.float64)), ref.timesteps[begin:][:1])
    noisy = noisy.numpy() / np.sqrt(1.0 + float(ref.sigmas[begin]) ** 2)
    np.testing.assert_allclose(grid.start(x_T, x0), noisy, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps", [8, 20])
def test_karras_on_cosine_differs_from_diffusers_by_at_most_one_timestep(steps):
    """The deviation grid.py states: for the cosine schedule diffusers' DPM-Solver truncates t(σ) (an
    int64 cast of an unrounded float32 value); we round. The σ the solver uses agree to float32 ᾱ's
    precision (diffusers' 1 - ᾱ_0 keeps few digits: 2.6e-4 relative on this schedule)."""
    schedule = make_schedule("cosine", 1000)
    ref = DPMSolverMultistepScheduler(1000, beta_schedule="squaredcos_cap_v2", use_karras_sigmas=True,
                                      algorithm_type="dpmsolver++")
    ref.set_timesteps(steps)
    grid = sampler_grid("dpmpp_2m_karras", schedule, steps=steps)
    gap = grid.timesteps - ref.timesteps.numpy()
    assert gap.min() >= 0 and gap.max() <= 1 and gap.any()
    np.testing.assert_allclose(grid.sigmas, ref.sigmas.numpy().astype(np.float64), rtol=1e-3)
