"""Opening bundles: ONNX sessions checked against the manifest, SD-style folders, provider choice."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from onnx import TensorProto as TP

from desktop.runtime import providers
from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import BundleError, read_manifest, write_manifest
from desktop.runtime.pipeline import GenerationRequest, generate
from desktop.runtime.providers import ProviderError
from tests.helpers.tiny_bundles import save_onnx, text_encoder_onnx, unet_onnx, unet_weights, vae_decoder_onnx, vae_encoder_onnx

ROOT = Path(__file__).resolve().parents[2]


def copy(bundles, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(bundles[name], dst)
    return dst


def rehash(path):
    write_manifest(path, read_manifest(path))


def test_open_reports_provider_and_inputs(bundles):
    b = open_bundle(bundles["latent_text"])
    assert b.provider in providers.PREFERENCE and b.provider_short in ("cpu", "cuda", "directml", "coreml")
    assert set(b.unet.inputs) == {"sample", "timestep", "encoder_hidden_states"}
    assert "attention_mask" in b.text.model.inputs
    assert b.model_hash == b.manifest.sha256["unet/model.onnx"]


@pytest.mark.parametrize("bad, field", [
    (dict(text=False, classes=False), "unet.inputs.class_labels"),  # the manifest says class, the graph takes none
    (dict(text=True, classes=True), "unet.inputs.encoder_hidden_states"),  # the graph takes an input nobody feeds
    (dict(classes=True, timestep_name="t"), "unet.inputs.timestep"),
])
def test_onnx_with_the_wrong_inputs(bundles, tmp_path, bad, field):
    path = copy(bundles, "pixel_class", tmp_path)
    save_onnx(unet_onnx(unet_weights(3, 3, 3), 3, 3, **bad), path / "unet/model.onnx")
    rehash(path)
    with pytest.raises(BundleError) as e:
        open_bundle(path)
    assert e.value.file == "unet/model.onnx" and e.value.field == field
    assert "unet/model.onnx" in str(e.value)


def test_onnx_with_the_wrong_channel_count(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    weights = unet_weights(4, 3, 3)
    save_onnx(unet_onnx(weights, 4, 3, classes=True), path / "unet/model.onnx")  # sample declares 4 channels
    rehash(path)
    with pytest.raises(BundleError, match="4 channels.*in_channels = 3") as e:
        open_bundle(path)
    assert e.value.field == "unet.inputs.sample"


def test_text_encoder_with_wrong_dtype(bundles, tmp_path):
    path = copy(bundles, "latent_text", tmp_path)
    save_onnx(text_encoder_onnx(ids_type=TP.FLOAT), path / "text_encoder/model.onnx")
    rehash(path)
    with pytest.raises(BundleError, match="input 'input_ids' must be tensor\\(int64\\) or tensor\\(int32\\), got tensor\\(float\\)") as e:
        open_bundle(path)
    assert e.value.file == "text_encoder/model.onnx"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_onnx_file(bundles, tmp_path, damage):
    path = copy(bundles, "latent_text", tmp_path)
    f = path / "vae_decoder/model.onnx"
    data = f.read_bytes()
    f.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not an onnx file" * 10, "empty": b""}[damage])
    rehash(path)
    with pytest.raises(BundleError, match="vae_decoder/model.onnx: not a valid ONNX model") as e:
        open_bundle(path)
    assert e.value.file == "vae_decoder/model.onnx" and e.value.field == "files.vae_decoder"


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle"):
        open_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such model folder"):
        open_bundle(tmp_path / "nope")


# ---------------------------------------------------------------------------- SD-style folders


def make_sd_folder(root: Path) -> Path:
    """A miniature optimum-style SD 1.x ONNX folder: CLIP BPE tokenizer, float timestep, int32 ids."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "c": 3, "a": 4, "t</w>": 5, "ca": 6,
             "cat</w>": 7, "t": 8, "c</w>": 9}
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer/vocab.json").write_text(json.dumps(vocab))
    (root / "tokenizer/merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    (root / "tokenizer/special_tokens_map.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    (root / "tokenizer/tokenizer_config.json").write_text(json.dumps({"model_max_length": 7}))
    (root / "scheduler").mkdir()
    (root / "scheduler/scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "beta_end": 0.012, "num_train_timesteps": 100, "steps_offset": 1}))
    (root / "model_index.json").write_text(json.dumps({"_class_name": "OnnxStableDiffusionPipeline",
                                                       "unet": ["diffusers", "OnnxRuntimeModel"]}))
    save_onnx(unet_onnx(unet_weights(4, 4), 4, 4, text=True, spatial=(4, 4)), root / "unet/model.onnx")
    save_onnx(text_encoder_onnx(attention_mask=False, ids_type=TP.INT32), root / "text_encoder/model.onnx")
    save_onnx(vae_decoder_onnx(4, factor=8), root / "vae_decoder/model.onnx")
    save_onnx(vae_encoder_onnx(4, factor=8), root / "vae_encoder/model.onnx")
    return root


@pytest.mark.slow
def test_sd_style_folder(tmp_path):
    b = open_bundle(make_sd_folder(tmp_path / "sd"))
    m = b.manifest
    assert b.source == "sd-onnx" and m.kind == "latent"
    assert (m.image.height, m.image.width, m.latent.height) == (32, 32, 4)
    assert m.latent.scale_factor == pytest.approx(0.18215)
    assert m.schedule["name"] == "scaled_linear" and m.schedule["num_train_timesteps"] == 100
    assert m.conditioning.text.max_length == 7 and m.conditioning.text.pad_id == 1
    ids = b.text.tokenizer.encode("A cat").ids
    assert ids == [0, 2, 7, 1, 1, 1, 1]  # BOS, "a</w>", "cat</w>", EOS, padding with EOS
    result = generate(b, GenerationRequest(prompt="a cat", steps=3, seed=1))
    assert result.images[0].shape == (32, 32, 3)


def test_sd_style_folder_without_unet(tmp_path):
    root = make_sd_folder(tmp_path / "sd")
    shutil.rmtree(root / "unet")
    with pytest.raises(BundleError, match="without unet/model.onnx"):
        open_bundle(root)


# ---------------------------------------------------------------------------- providers


def test_auto_provider_is_quiet(bundles, capfd):
    providers._failed.clear()  # force a fresh attempt at every listed provider
    b = open_bundle(bundles["pixel_class"])
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    assert b.provider in providers.ort.get_available_providers()


@pytest.mark.slow
def test_auto_provider_is_quiet_in_a_fresh_process(bundles):
    code = ("import sys; from desktop.runtime.bundle import open_bundle; "
            "b = open_bundle(sys.argv[1]); print(b.provider)")
    out = subprocess.run([sys.executable, "-c", code, str(bundles["latent_text"])], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.strip() in providers.PREFERENCE


def test_forced_cpu_and_unknown_provider(bundles):
    assert open_bundle(bundles["pixel_class"], provider="cpu").provider == "CPUExecutionProvider"
    with pytest.raises(ProviderError, match="unknown execution provider 'warp'"):
        open_bundle(bundles["pixel_class"], provider="warp")


def test_forced_provider_that_cannot_load_is_an_error(bundles):
    import onnxruntime as ort
    b = open_bundle(bundles["pixel_class"])
    if b.provider == "CUDAExecutionProvider":
        pytest.skip("CUDA really loads here")
    with pytest.raises(ProviderError, match="'cuda'"):
        open_bundle(bundles["pixel_class"], provider="cuda")
    assert ort.get_available_providers()  # still usable afterwards


def test_bad_preview_map(bundles, tmp_path):
    path = copy(bundles, "latent_text", tmp_path)
    (path / "preview/linear.json").write_text(json.dumps({"weight": [[1, 2, 3]], "bias": [0, 0, 0]}))
    rehash(path)
    with pytest.raises(BundleError, match="preview/linear.json: preview weight must be 4x3") as e:
        open_bundle(path)
    assert e.value.field == "files.preview"
