"""generate(): parity with a direct numpy run, seeds, cancel, inpainting, img2img, request checks."""
import numpy as np
import pytest
from PIL import Image

from diffusion.guidance import cfg_denoiser
from diffusion.noise import BatchRNG
from diffusion.samplers import Cancelled, sample, sampler_grid, samplers_for_model
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, RequestError, generate, to_uint8
from tests.helpers.tiny_bundles import LABELS, load_weights, unet_numpy


@pytest.fixture(scope="module")
def opened(bundles):
    return {name: open_bundle(path, provider="cpu") for name, path in bundles.items()}


def last_x(bundle, request):
    steps = []
    result = generate(bundle, request, on_step=steps.append)
    return result, steps[-1].x_t, steps


@pytest.mark.parametrize("sampler", samplers_for_model(lcm=False))  # LCM: tests/runtime/test_lcm_runtime.py
def test_parity_with_direct_numpy_sampling(bundles, opened, sampler):
    """The runtime (ONNX, batched CFG) equals diffusion/ samplers over the numpy U-Net."""
    b = opened["pixel_class"]
    w = load_weights(bundles["pixel_class"])
    req = GenerationRequest(class_name="two", sampler=sampler, steps=6, guidance=2.5, seed=11, batch_size=2)
    result, x_runtime, _ = last_x(b, req)
    seeds = [11, 12]
    denoiser = cfg_denoiser(lambda x, t, **c: unet_numpy(w, x, t, **c),
                            {"class_labels": np.array([2])}, {"class_labels": np.array([3])}, 2.5)
    grid = sampler_grid(sampler, b.schedule, steps=6, spacing="trailing")
    x = sample(sampler, denoiser, grid.start(BatchRNG(seeds, stream=0).randn((3, 8, 8))).astype(np.float32), grid,
               prediction_type="epsilon", clip_x0=True, rng=BatchRNG(seeds, stream=1))  # pixel models clip x0
    np.testing.assert_allclose(x_runtime, x, atol=1e-4)
    assert np.abs(to_uint8(x).astype(int) - np.stack(result.images).astype(int)).max() <= 1
    assert result.unet_calls == 6  # guidance batched: one U-Net call per step


def test_parity_latent_text(bundles, opened):
    b = opened["latent_text"]
    w = load_weights(bundles["latent_text"])
    req = GenerationRequest(prompt="a red cat", negative_prompt="ugly", sampler="ddim", steps=4, guidance=3.0, seed=5)
    result, x_runtime, _ = last_x(b, req)
    states = b.text.encode(["ugly", "a red cat"])
    denoiser = cfg_denoiser(lambda x, t, **c: unet_numpy(w, x, t, **c), {"encoder_hidden_states": states[1:]},
                            {"encoder_hidden_states": states[:1]}, 3.0)
    x = sample("ddim", denoiser, BatchRNG([5], stream=0).randn((4, 8, 8)),
               sampler_grid("ddim", b.schedule, steps=4, spacing="trailing"), prediction_type="epsilon")
    np.testing.assert_allclose(x_runtime, x, atol=1e-4)
    assert result.images[0].shape == (16, 16, 3)


@pytest.mark.parametrize("name, extra", [("pixel_class", {"class_name": "one", "sampler": "ddpm"}),
                                         ("latent_text", {"prompt": "blue house"})])
def test_per_image_seeds_and_determinism(opened, name, extra):
    b = opened[name]
    three = generate(b, GenerationRequest(seed=40, batch_size=3, steps=5, **extra))
    one = generate(b, GenerationRequest(seed=42, batch_size=1, steps=5, **extra))
    assert three.seeds == [40, 41, 42]
    np.testing.assert_array_equal(three.images[2], one.images[0])
    again = generate(b, GenerationRequest(seed=40, batch_size=3, steps=5, **extra))
    for a, c in zip(three.images, again.images):
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(three.images[0], three.images[1])


def test_negative_prompt_and_guidance_change_the_image(opened):
    b = opened["latent_text"]
    base = generate(b, GenerationRequest(prompt="red tree", seed=1)).images[0]
    neg = generate(b, GenerationRequest(prompt="red tree", negative_prompt="dog", seed=1)).images[0]
    plain = generate(b, GenerationRequest(prompt="red tree", guidance=1.0, seed=1))
    assert not np.array_equal(base, neg) and not np.array_equal(base, plain.images[0])
    assert plain.unet_calls == 5  # guidance 1: no unconditional half


def test_cancel_stops_within_one_unet_call(opened):
    b = opened["pixel_class"]
    calls = []
    original = b.unet.run

    def counting(*a, **k):
        calls.append(1)
        return original(*a, **k)

    b.unet.run = counting
    try:
        with pytest.raises(Cancelled) as stopped:
            generate(b, GenerationRequest(class_name="one", steps=20), cancel=lambda: len(calls) >= 3)
    finally:
        del b.unet.run
    assert len(calls) == 3
    assert (stopped.value.step, stopped.value.steps) == (4, 20)  # "before step 4 of 20": three steps ran


def test_cancel_before_anything(opened):
    with pytest.raises(Cancelled):
        generate(opened["latent_text"], GenerationRequest(prompt="cat"), cancel=lambda: True)


@pytest.mark.parametrize("name", ["pixel_inpaint", "pixel_class", "latent_inpaint"])
def test_inpainting_keeps_unmasked_pixels_exactly(opened, name):
    b = opened[name]
    H = b.manifest.image.height
    rng = np.random.default_rng(0)
    init = rng.integers(0, 256, (H, H, 3), dtype=np.uint8)
    mask = np.zeros((H, H))
    mask[: H // 2, :] = 1.0
    mask[H // 2, 0] = 0.5
    result = generate(b, GenerationRequest(init_image=init, mask=mask, seed=3, batch_size=2, sampler="ddpm", steps=5))
    for im in result.images:
        np.testing.assert_array_equal(im[mask == 0], init[mask == 0])
        assert not np.array_equal(im[mask == 1], init[mask == 1])


def test_seamless_inpainting_blends_the_generated_region_into_the_kept_pixels(opened):
    from diffusion.inpaint import poisson_blend

    b = opened["pixel_class"]
    H = b.manifest.image.height
    init = np.full((H, H, 3), 200, np.uint8)  # a flat bright picture; the tiny model generates noise
    mask = np.zeros((H, H)); mask[2:6, 2:6] = 1.0
    kw = dict(init_image=init, mask=mask, seed=4, sampler="ddim", steps=4)
    hard = generate(b, GenerationRequest(**kw, seamless=False)).images[0]
    soft = generate(b, GenerationRequest(**kw)).images[0]  # seamless is the default
    np.testing.assert_array_equal(soft[mask == 0], init[mask == 0])
    np.testing.assert_array_equal(hard[mask == 0], init[mask == 0])
    expected = np.clip(np.round(poisson_blend(hard.astype(np.float64), init.astype(np.float64), mask)), 0, 255)
    np.testing.assert_array_equal(soft, expected.astype(np.uint8))
    ring = np.zeros((H, H), bool); ring[2:6, 2] = ring[2:6, 5] = ring[2, 2:6] = ring[5, 2:6] = True
    assert np.abs(soft[ring].astype(float) - 200).mean() < np.abs(hard[ring].astype(float) - 200).mean()


def test_inpainting_previews_show_the_kept_pixels(opened):
    b = opened["latent_inpaint"]
    H = b.manifest.image.height
    init = np.random.default_rng(3).integers(0, 256, (H, H, 3), dtype=np.uint8)
    mask = np.zeros((H, H)); mask[:, : H // 2] = 1.0
    previews = []
    generate(b, GenerationRequest(init_image=init, mask=mask, seed=1, steps=3, sampler="ddim"),
             on_step=lambda info: previews.append(info.preview[0]))
    assert len(previews) == 3
    for p in previews:
        np.testing.assert_array_equal(p[:, H // 2:], init[:, H // 2:])
    assert not np.array_equal(previews[0][:, : H // 2], init[:, : H // 2])


def test_inpaint_model_gets_mask_channels(opened):
    """The inpaint U-Net's sample input is [x_t, mask, init (1 - mask)] (docs/ARCHITECTURE.md conventions)."""
    b = opened["pixel_inpaint"]
    init = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8)); mask[:4] = 1
    seen = []
    original = b.unet.run
    b.unet.run = lambda feeds, output=None: (seen.append(feeds["sample"]), original(feeds, output))[1]
    try:
        generate(b, GenerationRequest(init_image=init, mask=mask, seed=0, steps=2, batch_size=2))
    finally:
        del b.unet.run
    x = seen[0]
    assert x.shape == (2, 7, 8, 8)
    np.testing.assert_array_equal(x[:, 3], np.broadcast_to(mask, (2, 8, 8)))
    expected = (init.transpose(2, 0, 1) / 127.5 - 1) * (1 - mask)
    np.testing.assert_allclose(x[:, 4:], np.broadcast_to(expected, (2, 3, 8, 8)), atol=1e-6)


def test_inpaint_model_without_an_image_sees_the_encoded_zero_image(opened):
    """Plain generation with an inpainting model: mask 1 everywhere and the all-zero image, through
    the VAE encoder for a latent model, as in training (engine.train masked_latents)."""
    b = opened["latent_inpaint"]
    seen, encoded = [], []
    unet_run, enc_run = b.unet.run, b.vae_encoder.run

    def fake_encoder(feeds, output=None):  # a real VAE does not map the zero image to a zero latent
        encoded.append(feeds["sample"])
        return np.full_like(enc_run(feeds, output), 0.25)
    b.unet.run = lambda feeds, output=None: (seen.append(feeds["sample"]), unet_run(feeds, output))[1]
    b.vae_encoder.run = fake_encoder
    try:
        generate(b, GenerationRequest(seed=0, steps=2, batch_size=2))
    finally:
        del b.unet.run, b.vae_encoder.run
    H = b.manifest.image.height
    assert len(encoded) == 1 and encoded[0].shape == (1, 3, H, H) and not encoded[0].any()
    x, C = seen[0], b.manifest.diffused_channels
    np.testing.assert_array_equal(x[:, C], 1.0)
    np.testing.assert_allclose(x[:, C + 1:], 0.25 * b.manifest.latent.scale_factor, rtol=1e-6)


def test_img2img_runs_the_remaining_steps(opened):
    b = opened["pixel_class"]
    init = np.full((8, 8, 3), 30, np.uint8)
    weak = generate(b, GenerationRequest(init_image=init, strength=0.4, steps=5, seed=2, class_name="one"))
    full = generate(b, GenerationRequest(init_image=init, strength=1.0, steps=5, seed=2, class_name="one"))
    assert weak.unet_calls == 2 and full.unet_calls == 5
    dist = lambda r: np.abs(r.images[0].astype(int) - init.astype(int)).mean()  # noqa: E731
    assert dist(weak) < dist(full)


def test_latent_img2img(opened):
    b = opened["latent_text"]
    init = np.full((16, 16, 3), 128, np.uint8)
    r = generate(b, GenerationRequest(prompt="cat", init_image=init, strength=0.6, steps=5))
    assert r.unet_calls == 3 and r.images[0].shape == (16, 16, 3)


def test_semantic_labels(opened, tmp_path):
    b = opened["pixel_semantic"]
    labels = np.zeros((8, 8), np.int64)
    labels[4:] = 2
    none = generate(b, GenerationRequest(seed=1)).images[0]
    a = generate(b, GenerationRequest(labels=labels, seed=1)).images[0]
    assert not np.array_equal(none, a)
    colours = np.array([LABELS[i]["color"] for i in labels.ravel()], np.uint8).reshape(8, 8, 3)
    Image.fromarray(colours).save(tmp_path / "labels.png")
    from_png = generate(b, GenerationRequest(labels=str(tmp_path / "labels.png"), seed=1)).images[0]
    np.testing.assert_array_equal(a, from_png)


def test_previews_every_step(opened):
    for name in ("pixel_class", "latent_text"):
        b = opened[name]
        infos = []
        generate(b, GenerationRequest(steps=4, batch_size=2), on_step=infos.append)
        H = b.manifest.image.height
        assert [i.step for i in infos] == [1, 2, 3, 4]
        assert all(len(i.preview) == 2 and i.preview[0].shape == (H, H, 3) and i.preview[0].dtype == np.uint8
                   for i in infos)


def test_a_preview_is_rendered_only_when_asked_for_and_once(opened, monkeypatch):
    from desktop.runtime import pipeline

    calls = []
    real = pipeline.latent_preview
    monkeypatch.setattr(pipeline, "latent_preview", lambda *a, **k: calls.append(1) or real(*a, **k))
    b, request = opened["latent_text"], GenerationRequest(steps=4, seed=2)
    infos = []
    quiet = generate(b, request, on_step=infos.append)     # a progress bar: nothing looks at the previews
    assert len(infos) == 4 and calls == []
    assert np.array_equal(quiet.images[0], generate(b, request).images[0])
    first = infos[1].preview
    assert infos[1].preview is first and len(calls) == 1   # rendered once, kept
    assert np.array_equal(first[0], infos[1].render()[0])  # what a later look renders is the same picture


def test_grey_model_gives_grey_rgb(opened):
    im = generate(opened["pixel_gray"], GenerationRequest(seed=3)).images[0]
    assert im.shape == (8, 8, 3) and (im[..., 0] == im[..., 1]).all() and (im[..., 1] == im[..., 2]).all()


@pytest.mark.parametrize("name, request_kw, message", [
    ("pixel_inpaint", dict(init_image=np.zeros((8, 8, 3), np.uint8), mask=np.zeros((4, 6))),
     "mask is 6x4 but the image is 8x8"),
    ("pixel_inpaint", dict(mask=np.zeros((8, 8))), "a mask needs an init_image"),
    ("pixel_class", dict(class_name="seven"), "class 'seven' is not one of this model's classes: zero, one, two"),
    ("pixel_class", dict(class_index=3), "class_index must be from 0 to 2"),
    ("latent_text", dict(class_name="one"), "this model takes no class"),
    ("pixel_class", dict(labels=np.zeros((8, 8), int)), "takes no label map"),
    ("pixel_semantic", dict(labels=np.full((8, 8), 3)), "from 0 to 2"),
    ("pixel_class", dict(init_image=np.zeros((4, 4, 3), np.uint8)), "init_image is 4x4 but the output is 8x8"),
    ("pixel_class", dict(sampler="heun"), "sampler must be one of dpmpp_2m, dpmpp_2m_karras"),
    ("pixel_class", dict(steps=0), "steps must be an integer from 1 to 100"),
    ("pixel_class", dict(height=0), "height must be a positive multiple of 1"),
    ("latent_text", dict(width=13), "width must be a positive multiple of 2"),
    ("pixel_class", dict(strength=0.0, init_image=np.zeros((8, 8, 3), np.uint8)), "strength"),
])
def test_bad_requests(opened, name, request_kw, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        generate(opened[name], GenerationRequest(**request_kw))


def test_prompt_to_a_model_without_text_is_ignored_with_a_note(opened):
    b = opened["pixel_class"]
    with_prompt = generate(b, GenerationRequest(prompt="a cat", seed=9))
    without = generate(b, GenerationRequest(seed=9))
    assert with_prompt.warnings and "prompt was ignored" in with_prompt.warnings[0]
    np.testing.assert_array_equal(with_prompt.images[0], without.images[0])


def test_request_dict_round_trip():
    req = GenerationRequest(prompt="p", init_image=np.arange(48, dtype=np.uint8).reshape(4, 4, 3),
                            mask=np.linspace(0, 1, 16).reshape(4, 4), labels=np.eye(4, dtype=np.int64), seed=3)
    back = GenerationRequest.from_dict(req.to_dict())
    np.testing.assert_array_equal(back.init_image, req.init_image)
    np.testing.assert_allclose(back.mask, req.mask, atol=1 / 65535)
    np.testing.assert_array_equal(back.labels, req.labels)
    assert back.prompt == "p" and back.seed == 3


def test_other_sizes_with_dynamic_axes(opened):
    im = generate(opened["latent_text"], GenerationRequest(prompt="cat", height=8, width=24, steps=2)).images[0]
    assert im.shape == (8, 24, 3)


def test_latent_preview_is_the_linear_map_smoothly_upsampled(opened, bundles):
    """At DPM++'s last step x_t = x̂_0, so the preview is exactly the preview map applied to x_t, then
    upsampled bilinearly (PIL's bilinear resize of each channel is the oracle)."""
    from PIL import Image
    import json
    from desktop.runtime.preview import latent_preview
    b = opened["latent_text"]
    infos = []
    generate(b, GenerationRequest(prompt="cat", sampler="dpmpp_2m", steps=3), on_step=infos.append)
    pm = json.loads((bundles["latent_text"] / "preview/linear.json").read_text())
    weight, bias = np.array(pm["weight"], np.float32), np.array(pm["bias"], np.float32)
    x = infos[-1].x_t
    rgb = np.einsum("bchw,ck->bkhw", x, weight) + bias[None, :, None, None]
    h, w = rgb.shape[2:]
    pil = np.stack([np.asarray(Image.fromarray(ch.astype(np.float32), "F").resize((2 * w, 2 * h), Image.BILINEAR))
                    for ch in rgb[0]])[None]
    got = np.stack(infos[-1].preview).astype(int)
    assert np.abs(got - to_uint8(pil).astype(int)).max() <= 1       # float32 rounding at .5 boundaries
    assert len(np.unique(got[0, :, :, 0])) > len(np.unique(to_uint8(rgb)[0, :, :, 0]))  # smooth, not blocks
    assert latent_preview(x, None, 2).shape == (1, 3, 16, 16)
