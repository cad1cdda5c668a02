"""Properties every sampler keeps: shapes and finiteness for any valid arguments, clear errors for
bad ones, guidance, batch invariance, cancellation, non-finite detection, inpainting's blend."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffusion import (
    SAMPLERS,
    BatchRNG,
    Cancelled,
    NonFiniteError,
    cfg_denoiser,
    initial_noise,
    inpaint_hook,
    make_schedule,
    sample,
    sample_repaint,
)
from diffusion.grid import karras_grid, spaced_grid
from diffusion.inpaint import _repaint_plan
from diffusion.samplers import NEEDS_RNG, sampler_grid, sampler_spec

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def net(x, t):
    """Elementwise (so batch items are independent), bounded, depends on t."""
    t = np.asarray(t, dtype=np.float32).reshape(-1, *([1] * (x.ndim - 1)))
    return np.tanh(x * 0.9 + np.cos(t / 7.0)).astype(np.float32)


def kwargs_for(name, batch, seed=0):
    return {"rng": BatchRNG.from_seed(seed, batch)} if name in NEEDS_RNG else {}


class Counter:
    def __init__(self, fn=net):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t, **kw):
        self.calls += 1
        return self.fn(x, t, **kw)


# --------------------------------------------------------------------------------- any valid input


@pytest.mark.slow
@SETTINGS
@given(name=st.sampled_from(SAMPLERS), schedule=st.sampled_from(["linear", "cosine", "scaled_linear"]),
       T=st.integers(1, 60), data=st.data(), spacing=st.sampled_from(["leading", "trailing", "linspace"]),
       pred=st.sampled_from(["epsilon", "v_prediction", "sample"]), batch=st.integers(1, 3))
def test_any_valid_arguments_give_finite_images(name, schedule, T, data, spacing, pred, batch):
    steps = data.draw(st.integers(1, min(T, 50) if name == "lcm" else T), label="steps")
    s = make_schedule(schedule, T)
    x_T = initial_noise(1, batch, (2, 3, 3))
    model, infos = Counter(), []
    grid = sampler_grid(name, s, steps=steps, spacing=spacing)
    out = sample(name, model, grid.start(x_T), grid, prediction_type=pred, callback=infos.append,
                 **kwargs_for(name, batch))
    assert out.shape == x_T.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert model.calls == steps == len(infos)
    assert [i["step"] for i in infos] == list(range(1, steps + 1))
    assert all(set(i) == {"step", "steps", "t", "x", "x0"} for i in infos)
    ts = [i["t"] for i in infos]
    assert 0 <= ts[-1] and ts[0] < T
    if sampler_spec(name).grid is karras_grid:  # σ falls strictly; rounded timesteps may repeat near 0
        assert ts == sorted(ts, reverse=True)
    else:
        assert ts == sorted(set(ts), reverse=True)
    np.testing.assert_array_equal(infos[-1]["x"], out)


@pytest.mark.slow
@SETTINGS
@given(name=st.sampled_from(SAMPLERS), steps=st.integers(1, 12), seed=st.integers(0, 2**31),
       soft=st.booleans())
def test_inpaint_keeps_known_pixels_exactly(name, steps, seed, soft):
    s = make_schedule("linear", 50)
    rng = np.random.default_rng(seed)
    known = rng.uniform(-1, 1, (2, 3, 4, 4)).astype(np.float32)
    mask = (rng.uniform(size=(2, 1, 4, 4)) > 0.5).astype(np.float32)
    if soft:  # soft edges, but some exact zeros stay
        mask = np.where(mask > 0, rng.uniform(0.2, 1.0, mask.shape), 0.0).astype(np.float32)
    x_T = initial_noise(seed, 2, (3, 4, 4))
    seen = []
    hook = inpaint_hook(s, known, mask, BatchRNG.from_seed(seed, 2))
    out = sample(name, net, x_T, sampler_grid(name, s, steps=steps),
                 hook=lambda x, t: (seen.append(t), hook(x, t))[1], **kwargs_for(name, 2, seed))
    keep = np.broadcast_to(mask == 0, out.shape)
    np.testing.assert_array_equal(out[keep], known[keep])
    assert seen[-1] == -1 and len(seen) == steps
    assert not np.allclose(out[~keep], known[~keep])


def test_repaint_keeps_known_pixels_and_resamples():
    s = make_schedule("linear", 100)
    rng = np.random.default_rng(0)
    known = rng.uniform(-1, 1, (2, 1, 4, 4)).astype(np.float32)
    mask = np.zeros((4, 4), np.float32)
    mask[1:3, 1:3] = 1
    model = Counter()
    infos = []
    out = sample_repaint(model, initial_noise(0, 2, (1, 4, 4)), spaced_grid(s, steps=20), known, mask, schedule=s,
                         jump_length=5, resamples=3, rng=BatchRNG.from_seed(0, 2), callback=infos.append)
    keep = np.broadcast_to(mask == 0, out.shape)
    np.testing.assert_array_equal(out[keep], known[keep])
    # jump points at levels 14, 9, 4 (every 5 steps), each passed 3 times: 20 + 3 * 2 * 5 calls.
    assert model.calls == 50 == len(infos) == infos[-1]["steps"]
    assert np.isfinite(out).all()
    plan = _repaint_plan(20, 5, 3)
    assert sum(m == "up" for m, _ in plan) == 30 and plan[-1] == ("down", 0)


# ------------------------------------------------------------------------------------- bad input


def bad_calls():
    s = make_schedule("linear", 10)
    x = np.zeros((2, 1, 2, 2), np.float32)
    rng = BatchRNG.from_seed(0, 2)
    g = spaced_grid(s, steps=5)
    return [
        (lambda: sample("heun", net, x, g), "unknown sampler 'heun'"),
        (lambda: sampler_grid("heun", s, steps=5), "unknown sampler 'heun'"),
        (lambda: sampler_grid("ddim", s, steps=11), "steps must be between 1 and"),
        (lambda: sampler_grid("ddim", s, steps=0), "steps must be between 1 and"),
        (lambda: sampler_grid("dpmpp_2m", s, steps=2.5), "steps must be an integer"),
        (lambda: sampler_grid("ddim", s, steps=5, spacing="uniform"), "unknown spacing 'uniform'"),
        (lambda: sampler_grid("ddim", s, steps=5, steps_offset=10), "steps_offset=10"),
        (lambda: sampler_grid("ddim", s, steps=5, strength=0), r"strength must be a number in \(0, 1\]"),
        (lambda: sampler_grid("euler", s, steps=5, strength=1.5), "strength must be"),
        (lambda: sampler_grid("lcm", make_schedule("linear", 100), steps=60), "an LCM takes at most 50 steps"),
        (lambda: sampler_grid("ddim", "linear", steps=5), "schedule must be a Schedule"),
        (lambda: sample("ddim", net, x, s), "grid must be a Grid"),
        (lambda: sample("ddim", net, x, g, prediction_type="score"), "unknown prediction_type 'score'"),
        (lambda: sample("ddpm", net, x, g, rng=rng, variance="learned"), "unknown variance 'learned'"),
        (lambda: sample("ddpm", net, x, g), "needs rng"),
        (lambda: sample("euler_a", net, x, g), "needs rng"),
        (lambda: sample("lcm", net, x, g), "needs rng"),
        (lambda: sample("ddpm", net, x, g, rng=BatchRNG.from_seed(0, 3)), "rng has 3 generators"),
        (lambda: sample("ddim", net, x, g, eta=0.5), "needs rng"),
        (lambda: sample("ddim", net, x, g, eta=2.0), "eta must be"),
        (lambda: sample("dpmpp_2m", net, x, g, eta=0.5), "does not take eta"),
        (lambda: sample("unipc", net, x, g, steps=5), "does not take steps"),
        (lambda: sample("ddim", lambda x, t: x[:1], x, g), "model returned shape"),
        (lambda: sample("ddim", net, np.full_like(x, np.nan), g), "x_T contains NaN"),
        (lambda: sample("ddim", net, x.astype(np.int32), g), "x_T must be a float array"),
        (lambda: sample("ddim", "net", x, g), "model must be callable"),
        (lambda: sample("ddim", net, x, g, callback=3), "callback must be callable"),
        (lambda: sample("ddim", net, x, g, hook=lambda x, t: x[:1]), "hook returned shape"),
        (lambda: inpaint_hook(s, x, np.full((2, 2), 1.5), rng), r"values must be in \[0, 1\]"),
        (lambda: inpaint_hook(s, x, np.ones((3, 3)), rng), "does not broadcast"),
        (lambda: sample_repaint(net, x, g, x, np.ones((2, 2)), schedule=s, jump_length=0, rng=rng), "jump_length"),
        (lambda: sample_repaint(net, x, g, x[:, :, :1], np.ones((2, 1)), schedule=s, rng=rng), "does not fit x_T"),
        (lambda: cfg_denoiser(net, {"a": x}, {"b": x}, 2.0), "same inputs"),
        (lambda: cfg_denoiser(net, {}, {}, float("nan")), "guidance scale"),
        (lambda: BatchRNG([-1]), "non-negative integer"),
        (lambda: initial_noise(0, 0, (1,)), "batch must be"),
    ]


@pytest.mark.parametrize("index", range(len(bad_calls())))
def test_bad_arguments_raise_value_error_naming_the_problem(index):
    call, message = bad_calls()[index]
    with pytest.raises(ValueError, match=message):
        call()


@SETTINGS
@given(name=st.sampled_from(SAMPLERS), T=st.integers(1, 50), steps=st.integers(-5, 100))
def test_steps_outside_one_to_T_are_refused(name, T, steps):
    s = make_schedule("linear", T)
    x = np.zeros((1, 1, 1, 1), np.float32)
    if 1 <= steps <= T:
        assert sample(name, net, x, sampler_grid(name, s, steps=steps), **kwargs_for(name, 1)).shape == x.shape
    else:
        expected = f"steps must be between 1 and num_train_timesteps \\({T}\\), got {steps}"
        with pytest.raises(ValueError, match=expected):
            sampler_grid(name, s, steps=steps)


# -------------------------------------------------------------------------------------- guidance


def conditional_net(x, t, label, context):
    """Output depends on the conditioning inputs, per batch item."""
    return (net(x, t) + label.reshape(-1, 1, 1, 1) + context.mean(axis=(1, 2)).reshape(-1, 1, 1, 1)).astype(np.float32)


@pytest.mark.slow
@SETTINGS
@given(scale=st.floats(-2, 10), seed=st.integers(0, 1000))
def test_cfg_combines_one_batched_call(scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    t = np.full(3, 7)
    cond = {"label": np.array([0.5, 1.0, -1.0], np.float32), "context": rng.standard_normal((3, 4, 5))}
    uncond = {"label": np.zeros(1, np.float32), "context": np.zeros((1, 4, 5))}  # batch 1 is repeated
    calls = []

    def model(x2, t2, **kw):
        calls.append((x2, t2, kw))
        return conditional_net(x2, t2, **kw)

    out = cfg_denoiser(model, cond, uncond, scale)(x, t)
    assert len(calls) == 1
    x2, t2, kw = calls[0]
    np.testing.assert_array_equal(x2, np.concatenate([x, x]))
    np.testing.assert_array_equal(t2, np.concatenate([t, t]))
    np.testing.assert_array_equal(kw["label"][:3], 0)  # unconditional half first
    c = conditional_net(x, t, **cond)
    u = conditional_net(x, t, np.zeros(3, np.float32), np.zeros((3, 4, 5)))
    np.testing.assert_allclose(out, u + scale * (c - u), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cfg_denoiser(model, cond, uncond, 1.0)(x, t), c, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cfg_denoiser(model, cond, uncond, 0.0)(x, t), u)


@pytest.mark.parametrize("name", SAMPLERS)
def test_guided_sampling_calls_the_network_once_per_step(name):
    s = make_schedule("linear", 100)
    model = Counter(conditional_net)
    cond = {"label": np.ones(2, np.float32), "context": np.ones((2, 1, 1))}
    uncond = {"label": np.zeros(2, np.float32), "context": np.zeros((2, 1, 1))}
    sample(name, cfg_denoiser(model, cond, uncond, 3.0), initial_noise(0, 2, (1, 2, 2)), sampler_grid(name, s, steps=9),
           **kwargs_for(name, 2))
    assert model.calls == 9


# ------------------------------------------------------------------------------ batch invariance


@pytest.mark.slow
@SETTINGS
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 15), variance=st.sampled_from(["beta", "beta_tilde"]))
def test_batch_size_never_changes_an_image(seed, steps, variance):
    s = make_schedule("cosine", 50)
    shape = (2, 3, 3)
    grid = spaced_grid(s, steps=steps)
    batch = sample("ddpm", net, initial_noise(seed, 3, shape), grid, variance=variance,
                   rng=BatchRNG.from_seed(seed, 3))
    for i in range(3):
        alone = sample("ddpm", net, initial_noise(seed + i, 1, shape), grid, variance=variance,
                       rng=BatchRNG.from_seed(seed + i, 1))
        np.testing.assert_array_equal(batch[i], alone[0])
    assert not np.array_equal(batch[0], batch[1])


def test_initial_noise_and_sampler_noise_are_different_streams():
    assert not np.array_equal(initial_noise(5, 1, (8,)), BatchRNG.from_seed(5, 1).randn((8,)))
    np.testing.assert_array_equal(BatchRNG([5, 6]).randn(3), BatchRNG.from_seed(5, 2).randn((3,)))
    assert initial_noise(5, 2, (4, 4)).dtype == np.float32


# ------------------------------------------------------------------------- cancel and non-finite


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("after", [0, 1, 4])
def test_cancel_stops_before_the_next_network_call(name, after):
    s = make_schedule("linear", 100)
    model = Counter()
    with pytest.raises(Cancelled) as info:
        sample(name, model, initial_noise(0, 1, (1, 2, 2)), sampler_grid(name, s, steps=10),
               cancel=lambda: model.calls >= after, **kwargs_for(name, 1))
    assert model.calls == after and info.value.step == after + 1


@pytest.mark.parametrize("name", SAMPLERS)
def test_non_finite_model_output_names_the_step(name):
    s = make_schedule("linear", 100)
    model = Counter(lambda x, t: net(x, t) if t[0] > 40 else np.full_like(x, np.nan))
    grid = sampler_grid(name, s, steps=10, spacing="trailing")
    step = int(np.argmax(grid.timesteps <= 40)) + 1  # trailing spacing: step 7, timestep 39
    with pytest.raises(NonFiniteError, match=f"at step {step} of 10") as info:
        sample(name, model, initial_noise(0, 1, (1, 2, 2)), grid, **kwargs_for(name, 1))
    assert info.value.step == step and info.value.t == grid.timesteps[step - 1]
    assert grid.timesteps[step - 2] > 40


def test_hook_sees_each_next_timestep():
    s = make_schedule("linear", 100)
    seen = []
    sample("ddim", net, initial_noise(0, 1, (1, 1, 1)), spaced_grid(s, steps=4),
           hook=lambda x, t: (seen.append(t), x)[1])
    assert seen == [50, 25, 0, -1]
