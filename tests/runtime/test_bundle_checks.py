"""Bundles that pass validation but crashed later are refused at open, naming the field (issue 13)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import BundleError, read_manifest, write_manifest
from desktop.runtime.pipeline import GenerationRequest, generate
from tests.helpers.tiny_bundles import CLASS_NAMES, save_onnx, unet_onnx, unet_weights


def copy(bundles, name, tmp_path):
    return shutil.copytree(bundles[name], tmp_path / name)


def rehash(path):
    write_manifest(path, read_manifest(path))


def test_more_class_names_than_the_unet_has_embeddings(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    data = json.loads((path / "studio.json").read_text())
    data["conditioning"]["class"]["names"] = CLASS_NAMES + ["three", "four"]
    (path / "studio.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="fewer class embeddings than .*conditioning.class.names.*5 classes") as e:
        open_bundle(path, provider="cpu")
    assert e.value.field == "conditioning.class.names"


@pytest.mark.parametrize("spatial,batch,words,field", [
    ((8, 8), "B", None, None),                     # fixed at the manifest's own size: fine
    ((16, 16), "B", "fixed size 16 on axis 2, but studio.json field 'image.height' says 8", "image.height"),
    (("h", "w"), 2, "fixed batch of 2", "unet.inputs.sample"),
])
def test_fixed_onnx_dims_that_the_manifest_contradicts(bundles, tmp_path, spatial, batch, words, field):
    path = copy(bundles, "pixel_class", tmp_path)
    model = unet_onnx(unet_weights(3, 3, len(CLASS_NAMES)), 3, 3, classes=True, spatial=spatial)
    model.graph.input[0].type.tensor_type.shape.dim[0].Clear()
    if isinstance(batch, int):
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    else:
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = batch
    save_onnx(model, path / "unet/model.onnx")
    rehash(path)
    if words is None:
        open_bundle(path, provider="cpu")
        return
    with pytest.raises(BundleError, match=words) as e:
        open_bundle(path, provider="cpu")
    assert e.value.field == field


def test_external_data_that_is_not_hashed_is_refused(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    model = onnx.load(str(path / "unet/model.onnx"))
    onnx.save(model, str(path / "unet/model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=100)
    rehash(path)  # the writer hashes it, and the model hash covers it
    bundle = open_bundle(path, provider="cpu")
    hashed = read_manifest(path)
    assert "unet/weights.bin" in hashed.sha256 and bundle.model_hash == hashed.model_hash
    assert bundle.model_hash != hashed.sha256["unet/model.onnx"]
    data = json.loads((path / "studio.json").read_text())
    del data["sha256"]["unet/weights.bin"]  # what a hand-made bundle (or an older writer) leaves out
    (path / "studio.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="reads the external-data file 'unet/weights.bin', which studio.json "
                                          "does not hash") as e:
        open_bundle(path, provider="cpu")
    assert e.value.field == "sha256.unet/weights.bin"


def test_changed_external_data_changes_the_model_hash_or_is_refused(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    model = onnx.load(str(path / "unet/model.onnx"))
    onnx.save(model, str(path / "unet/model.onnx"), save_as_external_data=True, location="w.bin", size_threshold=100)
    rehash(path)
    before = open_bundle(path, provider="cpu").model_hash
    weights = bytearray((path / "unet/w.bin").read_bytes())
    weights[0] ^= 1
    (path / "unet/w.bin").write_bytes(bytes(weights))
    with pytest.raises(BundleError, match="unet/w.bin: contents do not match the sha256"):
        open_bundle(path, provider="cpu")
    rehash(path)  # someone re-hashes the changed weights: the model is a different one now
    assert open_bundle(path, provider="cpu").model_hash != before


def test_a_hand_edited_model_hash_is_refused(bundles, tmp_path):
    path = copy(bundles, "pixel_class", tmp_path)
    data = json.loads((path / "studio.json").read_text())
    data["model_hash"] = "0" * 64
    (path / "studio.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="field 'model_hash'") as e:
        open_bundle(path, provider="cpu")
    assert e.value.field == "model_hash"


def test_our_bundle_without_studio_json_does_not_open_as_an_sd_folder(bundles, tmp_path):
    path = copy(bundles, "latent_text", tmp_path)
    (path / "studio.json").unlink()
    with pytest.raises(BundleError, match="studio.json is missing; model_index.json says this folder is a "
                                          "Diffusion Studio bundle"):
        open_bundle(path, provider="cpu")


def test_the_checks_leave_a_good_bundle_working(bundles):
    bundle = open_bundle(bundles["pixel_class"], provider="cpu")
    assert bundle.unet.calls == 0  # the probe is not counted as a generation's call
    result = generate(bundle, GenerationRequest(class_name="two", steps=2))
    assert result.unet_calls == 2 and np.asarray(result.images[0]).shape == (8, 8, 3)
