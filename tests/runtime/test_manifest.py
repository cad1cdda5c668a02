"""studio.json: what is written is what is read; every bad bundle is a BundleError naming file and field."""
import json
import os
import shutil

import pytest

from desktop.runtime import manifest as mf
from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import BundleError, read_manifest, validate_manifest


def copy(bundles, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(bundles[name], dst)
    return dst


def edit(path, fn):
    data = json.loads((path / "studio.json").read_text())
    fn(data)
    (path / "studio.json").write_text(json.dumps(data))


def test_round_trip_and_hashes(bundles):
    m = read_manifest(bundles["latent_text"])
    assert m.kind == "latent" and m.conditioning.text.max_length == 5
    assert set(m.sha256) == set(m.files.values())
    assert validate_manifest(m.to_dict(), bundles["latent_text"]) == m
    assert m.sha256["unet/model.onnx"] == mf.sha256_file(bundles["latent_text"] / "unet/model.onnx")
    index = json.loads((bundles["latent_text"] / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "OnnxRuntimeModel"] and "vae_decoder" in index


def test_sampler_names_match_diffusion():
    from diffusion.samplers import SAMPLERS
    from diffusion.spacing import SPACINGS
    assert mf.SAMPLERS == tuple(SAMPLERS) and mf.SPACINGS == tuple(SPACINGS)


@pytest.mark.parametrize("change, field, words", [
    (lambda d: d["image"].__setitem__("height", -3), "image.height", "must be an integer from 1 to 8192, got -3"),
    (lambda d: d["image"].__setitem__("width", "8"), "image.width", "an integer from 1 to 8192"),
    # issue 13: sizes that would exhaust memory are refused before anything is allocated
    (lambda d: d["image"].__setitem__("width", 10**6), "image.width", "from 1 to 8192, got 1000000"),
    (lambda d: d["schedule"].__setitem__("num_train_timesteps", 10**8), "schedule.num_train_timesteps",
     "from 2 to 100000"),
    (lambda d: d.__setitem__("name", "\x1b[31mred\x1b[0m"), "name", "printable text"),
    (lambda d: d.__setitem__("name", "x" * 300), "name", "at most 200 characters"),
    (lambda d: d.__setitem__("kind", "video"), "kind", "one of 'pixel', 'latent'"),
    (lambda d: d["schedule"].__setitem__("beta_end", 2.0), "schedule.beta_end", "(0.0, 1.0]"),
    (lambda d: d.__setitem__("prediction_type", "noise"), "prediction_type", "'epsilon'"),
    (lambda d: d["unet"].__setitem__("in_channels", 4), "unet.in_channels", "3 diffused"),
    (lambda d: d["defaults"].__setitem__("sampler", "heun"), "defaults.sampler", "dpmpp_2m"),
    (lambda d: d["defaults"].__setitem__("steps", 0), "defaults.steps", "positive integer"),
    (lambda d: d["conditioning"]["class"].__setitem__("names", ["a", "a"]), "conditioning.class.names", "distinct"),
    (lambda d: d.pop("schedule"), "schedule", "missing"),
    (lambda d: d["files"].pop("unet"), "files.unet", "missing"),
    (lambda d: d.__setitem__("format_version", 99), "format_version", "newer"),
    (lambda d: d["sha256"].__setitem__("unet/model.onnx", "xyz"), "sha256.unet/model.onnx", "hexadecimal"),
])
def test_bad_fields_name_the_field(bundles, tmp_path, change, field, words):
    path = copy(bundles, "pixel_class", tmp_path)
    edit(path, change)
    with pytest.raises(BundleError) as e:
        open_bundle(path)
    assert e.value.file == "studio.json" and e.value.field == field
    assert f"'{field}'" in str(e.value) and words in str(e.value)


def test_semantic_label_colour_checked(bundles, tmp_path):
    path = copy(bundles, "pixel_semantic", tmp_path)
    edit(path, lambda d: d["conditioning"]["mask"]["labels"][1].__setitem__("color", [0, 300, 0]))
    with pytest.raises(BundleError, match=r"conditioning.mask.labels\[1\].color"):
        open_bundle(path)


def test_bad_json(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    (path / "studio.json").write_text('{"format": "diffusion-studio-bundle",')
    with pytest.raises(BundleError, match="studio.json: not valid JSON") as e:
        open_bundle(path)
    assert e.value.file == "studio.json"


def test_missing_file(bundles, tmp_path):
    path = copy(bundles, "latent_text", tmp_path)
    (path / "vae_decoder/model.onnx").unlink()
    with pytest.raises(BundleError, match="vae_decoder/model.onnx.*missing") as e:
        open_bundle(path)
    assert e.value.file == "vae_decoder/model.onnx" and e.value.field == "files.vae_decoder"


def test_wrong_hash(bundles, tmp_path):
    path = copy(bundles, "latent_text", tmp_path)
    with open(path / "text_encoder/model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="text_encoder/model.onnx: contents do not match the sha256") as e:
        open_bundle(path)
    assert e.value.file == "text_encoder/model.onnx" and e.value.field == "sha256.text_encoder/model.onnx"


@pytest.mark.parametrize("rel", ["../x.onnx", "/etc/passwd", "unet/../../x.onnx", "C:\\model.onnx"])
def test_file_names_outside_the_bundle(bundles, tmp_path, rel):
    path = copy(bundles, "pixel_class", tmp_path)
    (tmp_path / "x.onnx").write_bytes((path / "unet/model.onnx").read_bytes())
    edit(path, lambda d: d["files"].__setitem__("unet", rel))
    with pytest.raises(BundleError, match="inside the bundle") as e:
        open_bundle(path)
    assert e.value.field == "files.unet"


def test_symlink_to_outside(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    outside = tmp_path / "outside.onnx"
    os.replace(path / "unet/model.onnx", outside)
    os.symlink(outside, path / "unet/model.onnx")
    with pytest.raises(BundleError, match="links to outside") as e:
        open_bundle(path)
    assert e.value.field == "files.unet"


def test_write_manifest_refuses_missing_file(tmp_path):
    data = json.loads(json.dumps({
        "format": "diffusion-studio-bundle", "format_version": 1, "name": "x", "kind": "pixel",
        "image": {"height": 8, "width": 8, "channels": 1}, "latent": None,
        "schedule": {"name": "linear", "num_train_timesteps": 10}, "prediction_type": "epsilon",
        "files": {"unet": "unet/model.onnx"}, "unet": {"in_channels": 1, "out_channels": 1}}))
    m = mf.manifest_from_dict(data)
    with pytest.raises(BundleError, match="does not exist"):
        mf.write_manifest(tmp_path, m)
    assert not (tmp_path / "studio.json").exists()
