"""LoadedModel: save_model/load_model round trips, plain diffusers folders, refusing pickles."""
import json
import pickle

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

from engine.loaded import LoadedModel, ModelLoadError, load_model, save_model
from engine.text import ScratchTextEncoder, train_wordpiece

pytestmark = pytest.mark.slow  # PyTorch: diffusers models

torch.set_num_threads(1)

PROMPTS = ["a red circle", "", "a blue square on green grass"]


def tiny_pixel_unet(num_class_embeds=4, in_channels=1):
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8, in_channels=in_channels, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=num_class_embeds,
    ).eval()


def tiny_cond_unet(cross_attention_dim, in_channels=4):
    torch.manual_seed(1)
    return UNet2DConditionModel(
        sample_size=4, in_channels=in_channels, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, norm_num_groups=4, attention_head_dim=4,
    ).eval()


def tiny_vae():
    torch.manual_seed(2)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=4, layers_per_block=1, sample_size=8, scaling_factor=0.7,
    ).eval()


def perturb(module, seed=3):
    """Random weights everywhere (diffusers zero-inits some output layers, hiding mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return module


def pixel_model():
    return LoadedModel(
        kind="pixel", unet=perturb(tiny_pixel_unet()),
        schedule={"name": "cosine", "num_train_timesteps": 100, "beta_start": 1e-4, "beta_end": 0.02, "cosine_s": 0.008},
        prediction_type="v_prediction", image_size=8, image_channels=1, class_names=["zero", "one", "two"],
        defaults={"sampler": "ddim", "steps": 10, "guidance": 2.0, "spacing": "trailing"},
        provenance={"source": "test", "steps": 12, "metrics": {"fid": 1.5}}, name="digits-test",
    )


def latent_model(text_encoder, in_channels=4, mask=None):
    return LoadedModel(
        kind="latent", unet=perturb(tiny_cond_unet(text_encoder.dim, in_channels)),
        schedule={"name": "scaled_linear", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "cosine_s": 0.008},
        prediction_type="epsilon", image_size=8, image_channels=3, vae=perturb(tiny_vae(), 4), scale_factor=0.7,
        text_encoder=text_encoder, mask=mask, defaults={"sampler": "dpmpp_2m", "steps": 20, "guidance": 5.0},
        provenance={"source": "test"}, name="landscapes-test",
    )


def small_scratch():
    torch.manual_seed(5)
    te = ScratchTextEncoder(max_length=8, dim=16, layers=1, heads=2)
    perturb(te, 6)
    return te.eval()


METADATA = ["kind", "schedule", "prediction_type", "image_size", "image_channels", "scale_factor",
            "class_names", "mask", "defaults", "provenance", "name"]


def assert_same_metadata(a: LoadedModel, b: LoadedModel):
    for key in METADATA:
        assert getattr(a, key) == getattr(b, key), key
    assert a.metadata() == b.metadata()
    assert (a.in_channels, a.latent_channels, a.condition_channels) == (b.in_channels, b.latent_channels, b.condition_channels)


def test_pixel_round_trip_same_outputs_and_metadata(tmp_path):
    model = pixel_model()
    save_model(model, tmp_path / "run" / "model")
    for path in (tmp_path / "run", tmp_path / "run" / "model"):  # run folder and model folder
        back = load_model(path)
        assert_same_metadata(model, back)
        assert type(back.unet) is UNet2DModel and back.vae is None and back.text_encoder is None
        x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 77]), torch.tensor([0, 3])
        with torch.no_grad():
            assert torch.allclose(model.unet(x, t, class_labels=y).sample, back.unet(x, t, class_labels=y).sample, atol=1e-6)
    assert model.condition_channels == 0 and model.latent_channels is None
    sched = json.loads((tmp_path / "run" / "model" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["beta_schedule"] == "squaredcos_cap_v2" and sched["prediction_type"] == "v_prediction"
    assert sched["num_train_timesteps"] == 100
    assert (tmp_path / "run" / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_saved_scheduler_config_loads_in_diffusers_with_the_same_betas(tmp_path):
    from diffusers import DDPMScheduler

    save_model(pixel_model(), tmp_path / "m")
    sched = DDPMScheduler.from_pretrained(str(tmp_path / "m" / "scheduler"))
    # DDPM cosine (Nichol & Dhariwal): beta_t = min(1 - abar(t+1)/abar(t), 0.999), abar = cos^2(((t/T)+s)/(1+s) pi/2)
    import math

    T, s = 100, 0.008
    f = [math.cos(((i / T) + s) / (1 + s) * math.pi / 2) ** 2 for i in range(T + 1)]
    betas = torch.tensor([min(1 - f[i + 1] / f[i], 0.999) for i in range(T)])
    assert torch.allclose(sched.betas.double(), betas.double(), atol=1e-6)


def test_latent_text_round_trip_same_outputs_and_metadata(tmp_path):
    model = latent_model(small_scratch(), in_channels=9, mask={"kind": "inpaint"})
    assert model.condition_channels == 5 and model.latent_channels == 4 and model.latent_size == 4
    save_model(model, tmp_path / "model")
    assert (tmp_path / "model" / "text_encoder" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "tokenizer" / "tokenizer.json").is_file()
    back = load_model(tmp_path / "model")
    assert_same_metadata(model, back)
    assert back.text_encoder.spec() == model.text_encoder.spec()
    assert type(back.vae) is AutoencoderKL and type(back.unet) is UNet2DConditionModel
    with torch.no_grad():
        states_a, states_b = model.text_encoder.encode(PROMPTS), back.text_encoder.encode(PROMPTS)
        assert torch.equal(states_a, states_b)
        x, t = torch.randn(3, 9, 4, 4), torch.tensor([0, 500, 999])
        assert torch.allclose(model.unet(x, t, states_a).sample, back.unet(x, t, states_b).sample, atol=1e-6)
        img = torch.rand(2, 3, 8, 8) * 2 - 1
        assert torch.allclose(model.vae.encode(img).latent_dist.mean, back.vae.encode(img).latent_dist.mean, atol=1e-6)
        z = torch.randn(2, 4, 4, 4)
        assert torch.allclose(model.vae.decode(z).sample, back.vae.decode(z).sample, atol=1e-6)


def test_minilm_text_model_round_trip_stores_only_the_spec(tmp_path):
    from engine.text import load_text_encoder

    model = latent_model(load_text_encoder("minilm"))
    save_model(model, tmp_path / "model")
    assert not (tmp_path / "model" / "text_encoder").exists()  # weights live in the package
    back = load_model(tmp_path / "model")
    assert back.text_encoder.spec() == model.text_encoder.spec()
    assert_same_metadata(model, back)
    with torch.no_grad():
        states = back.text_encoder.encode(PROMPTS[:2])
        x, t = torch.randn(2, 4, 4, 4), torch.tensor([10, 20])
        assert torch.allclose(model.unet(x, t, model.text_encoder.encode(PROMPTS[:2])).sample,
                              back.unet(x, t, states).sample, atol=1e-5)


def test_save_replaces_an_existing_folder_atomically(tmp_path):
    save_model(pixel_model(), tmp_path / "model")
    (tmp_path / "model" / "stale.txt").write_text("old")
    m2 = pixel_model()
    m2.name = "second"
    save_model(m2, tmp_path / "model")
    assert not (tmp_path / "model" / "stale.txt").exists()
    assert load_model(tmp_path / "model").name == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp folders left behind


def test_invalid_model_is_refused_before_writing(tmp_path):
    m = pixel_model()
    m.schedule = {"name": "sigmoid", "num_train_timesteps": 10}
    with pytest.raises(ModelLoadError, match="schedule name"):
        save_model(m, tmp_path / "model")
    assert not (tmp_path / "model").exists()


# ---------------------------------------------------------------- plain diffusers folders


def test_plain_diffusers_pixel_folder(tmp_path):
    unet = perturb(tiny_pixel_unet(num_class_embeds=None))
    unet.save_pretrained(str(tmp_path / "ddpm" / "unet"), safe_serialization=True)
    back = load_model(tmp_path / "ddpm")
    assert (back.kind, back.image_size, back.image_channels, back.class_names, back.mask) == ("pixel", 8, 1, None, None)
    assert back.schedule["name"] == "linear" and back.schedule["num_train_timesteps"] == 1000
    assert back.prediction_type == "epsilon" and back.name == "ddpm"
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 900])
    with torch.no_grad():
        assert torch.allclose(unet(x, t).sample, back.unet(x, t).sample, atol=1e-6)


def tiny_clip(tmp_path, with_tokenizer_json=True):
    """A tiny CLIPTextModel and a CLIP BPE tokenizer (byte-level alphabet + a few merges)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = [("r", "e"), ("re", "d</w>"), ("c", "a"), ("ca", "t</w>"), ("b", "l"), ("bl", "u"), ("blu", "e</w>")]
    for m in merges:
        vocab["".join(m)] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    torch.manual_seed(7)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"])
    model = CLIPTextModel(config).eval()
    model.save_pretrained(str(tmp_path / "text_encoder"), safe_serialization=True)
    tok_dir = tmp_path / "tokenizer"
    tok_dir.mkdir()
    if with_tokenizer_json:
        tokenizer.save_pretrained(str(tok_dir))
    else:
        (tok_dir / "vocab.json").write_text(json.dumps(vocab))
        (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "pad_token": "<|endoftext|>", "model_max_length": 77}))
    return model, tokenizer


def write_sd_like_folder(folder, text_model_factory):
    unet_in = 4
    model, tokenizer = text_model_factory(folder)
    unet = perturb(tiny_cond_unet(model.config.hidden_size, unet_in))
    vae = perturb(tiny_vae(), 4)
    unet.save_pretrained(str(folder / "unet"), safe_serialization=True)
    vae.save_pretrained(str(folder / "vae"), safe_serialization=True)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "timestep_spacing": "leading"}))
    return unet, vae, model, tokenizer


@pytest.mark.parametrize("with_tokenizer_json", [True, False])
def test_plain_diffusers_clip_latent_folder(tmp_path, with_tokenizer_json, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "sd"
    unet, vae, clip, tokenizer = write_sd_like_folder(folder, lambda f: tiny_clip(f, with_tokenizer_json))
    back = load_model(folder)
    assert (back.kind, back.image_size, back.image_channels, back.scale_factor) == ("latent", 8, 3, 0.7)
    assert back.schedule == {"name": "scaled_linear", "num_train_timesteps": 1000, "beta_start": 0.00085,
                             "beta_end": 0.012, "cosine_s": 0.008}
    assert back.prediction_type == "v_prediction" and back.defaults["spacing"] == "leading"
    te = back.text_encoder
    assert te.spec()["kind"] == "clip" and te.max_length == 77 and te.dim == 16 and not te.uses_attention_mask
    # tokenization equals transformers' CLIP tokenizer padded to 77 with <|endoftext|>
    ref = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    assert torch.equal(te.tokenize(PROMPTS)["input_ids"], ref["input_ids"])
    with torch.no_grad():
        expected_states = clip(input_ids=ref["input_ids"]).last_hidden_state
        states = te.encode(PROMPTS)
        assert torch.allclose(states, expected_states, atol=1e-6)
        x, t = torch.randn(3, 4, 4, 4), torch.tensor([5, 50, 500])
        assert torch.allclose(unet(x, t, expected_states).sample, back.unet(x, t, states).sample, atol=1e-6)
        z = torch.randn(1, 4, 4, 4)
        assert torch.allclose(vae.decode(z).sample, back.vae.decode(z).sample, atol=1e-6)
    # and it survives our own save/load
    save_model(back, tmp_path / "resaved")
    again = load_model(tmp_path / "resaved")
    assert_same_metadata(back, again)
    assert torch.equal(again.text_encoder.tokenize(PROMPTS)["input_ids"], ref["input_ids"])
    with torch.no_grad():
        assert torch.allclose(again.text_encoder.encode(PROMPTS), states, atol=1e-6)


def tiny_bert(folder):
    """A tiny BertModel with a WordPiece vocab.txt (no tokenizer.json)."""
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    path = train_wordpiece(["a red circle", "a blue square", "green grass and red sky"] * 3,
                           folder / "wp.json", vocab_size=120)
    vocab = Tokenizer.from_file(str(path)).get_vocab()
    tok_dir = folder / "tokenizer"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    path.unlink()
    torch.manual_seed(8)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=40)).eval()
    model.save_pretrained(str(folder / "text_encoder"), safe_serialization=True)
    return model, tok_dir


def test_plain_diffusers_bert_text_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from transformers import BertTokenizer

    folder = tmp_path / "ldm"
    unet, vae, bert, tok_dir = write_sd_like_folder(folder, tiny_bert)
    back = load_model(folder)
    te = back.text_encoder
    assert te.spec()["kind"] == "bert" and te.max_length == 40 and te.uses_attention_mask
    ref_tok = BertTokenizer(vocab=str(tok_dir / "vocab.txt"))
    ref = ref_tok(PROMPTS, padding="max_length", max_length=40, truncation=True, return_tensors="pt")
    batch = te.tokenize(PROMPTS)
    assert torch.equal(batch["input_ids"], ref["input_ids"])
    assert torch.equal(batch["attention_mask"], ref["attention_mask"])
    with torch.no_grad():
        expected = bert(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"]).last_hidden_state
        assert torch.allclose(te.encode(PROMPTS), expected, atol=1e-6)


def test_plain_diffusers_inpainting_layout_and_class_embeds(tmp_path):
    unet = tiny_pixel_unet(num_class_embeds=5, in_channels=3)  # 1 + mask 1 + masked image 1
    unet.save_pretrained(str(tmp_path / "m" / "unet"), safe_serialization=True)
    back = load_model(tmp_path / "m")
    assert back.mask == {"kind": "inpaint"} and back.condition_channels == 2
    assert back.class_names == ["0", "1", "2", "3"]  # the 5th embedding is the null class


def test_legit_pickle_weights_load_via_weights_only(tmp_path):
    unet = perturb(tiny_pixel_unet(num_class_embeds=None))
    unet.save_pretrained(str(tmp_path / "m" / "unet"), safe_serialization=False)
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.bin").is_file()
    back = load_model(tmp_path / "m")
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([3])
    with torch.no_grad():
        assert torch.allclose(unet(x, t).sample, back.unet(x, t).sample, atol=1e-6)


# ---------------------------------------------------------------- refusals


class _Sentinel:
    """Unpickling this calls open(path, "w"): the file appearing means code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_pickle_with_code_is_refused_and_never_run(tmp_path, writer):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Sentinel(control)))  # a plain unpickler does run it
    assert control.exists()
    folder = tmp_path / "evil"
    tiny_pixel_unet(num_class_embeds=None).save_pretrained(str(folder / "unet"), safe_serialization=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    sentinel = tmp_path / "pwned"
    payload = {"conv_in.weight": _Sentinel(sentinel)}
    weights = folder / "unet" / "diffusion_pytorch_model.bin"
    if writer == "torch_save":
        torch.save(payload, weights)
    else:
        weights.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelLoadError, match="refusing") as info:
        load_model(folder)
    assert "diffusion_pytorch_model.bin" in str(info.value)
    assert not sentinel.exists()


def test_missing_unet_folder_names_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no unet/") as info:
        load_model(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nowhere")


def test_bad_configs_name_the_file_and_field(tmp_path):
    unet_dir = tmp_path / "m" / "unet"
    unet_dir.mkdir(parents=True)
    (unet_dir / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON") as info:
        load_model(tmp_path / "m")
    assert str(unet_dir / "config.json") in str(info.value)

    (unet_dir / "config.json").write_text(json.dumps({"_class_name": "Transformer2DModel"}))
    with pytest.raises(ModelLoadError, match="_class_name is 'Transformer2DModel'"):
        load_model(tmp_path / "m")

    tiny_pixel_unet(num_class_embeds=None).save_pretrained(str(unet_dir), safe_serialization=True)
    (tmp_path / "m" / "scheduler").mkdir()
    (tmp_path / "m" / "scheduler" / "scheduler_config.json").write_text(json.dumps({"beta_schedule": "sigmoid"}))
    with pytest.raises(ModelLoadError, match="'beta_schedule' 'sigmoid'") as info:
        load_model(tmp_path / "m")
    assert "scheduler_config.json" in str(info.value)

    (unet_dir / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights file"):
        load_model(tmp_path / "m")


def test_studio_metadata_errors_name_the_field(tmp_path):
    save_model(pixel_model(), tmp_path / "model")
    meta_path = tmp_path / "model" / "studio_model.json"
    meta = json.loads(meta_path.read_text())
    del meta["prediction_type"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="missing field 'prediction_type'"):
        load_model(tmp_path / "model")
    meta["prediction_type"] = "epsilon"
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="newer"):
        load_model(tmp_path / "model")


def test_text_unet_without_text_encoder_is_an_error(tmp_path):
    tiny_cond_unet(16).save_pretrained(str(tmp_path / "m" / "unet"), safe_serialization=True)
    with pytest.raises(ModelLoadError, match="needs a text encoder"):
        load_model(tmp_path / "m")
