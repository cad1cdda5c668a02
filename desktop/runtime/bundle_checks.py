"""Checks at open time for bundles that pass validation but would fail later (issue 13).

`studio.json` can be valid and still describe graphs that cannot run as it says. These checks run
when a bundle opens, so the failure is a `BundleError` naming the field, never a traceback half-way
through a generation:
- `check_model_hash`: the recorded model hash is that of the U-Net files.
- `check_external_data`: every external-data file an ONNX graph makes ONNX Runtime read is inside
  the bundle and hashed in studio.json (else the weights could change without the hash noticing).
- `check_fixed_dims`: an input with a fixed batch (the runtime sends any batch; guidance doubles
  it) or a fixed size that studio.json contradicts (image/latent size, channels, text length).
- `probe_class_embeddings`: a class model's U-Net runs once with the null class (the largest
  index the runtime sends); fewer class embeddings than `conditioning.class.names` + 1 fail here.
- `check_not_a_stripped_bundle`: a folder whose model_index.json says it is one of our bundles but
  whose studio.json is gone does not silently open as a Stable-Diffusion folder without hashes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from diffusion.checks import is_int

from .manifest import MANIFEST_NAME, BundleError, Manifest, model_hash_of, onnx_external_data

ONNX_ROLES = ("unet", "vae_decoder", "vae_encoder", "text_encoder")


def check_external_data(path: Path, manifest: Manifest) -> dict[str, list[str]]:
    """{role: its external-data files (bundle-relative)} for every ONNX role; each one hashed."""
    found = {}
    for role in ONNX_ROLES:
        rel = manifest.files.get(role)
        if rel is None:
            continue
        found[role] = onnx_external_data(path, rel, f"files.{role}")
        for data in found[role]:
            if data not in manifest.sha256:
                raise BundleError(f"{rel}: reads the external-data file '{data}', which {MANIFEST_NAME} does not "
                                  f"hash (sha256); export the bundle again", rel, f"sha256.{data}")
    return found


def check_model_hash(m: Manifest, unet_external: list[str]) -> None:
    """studio.json's `model_hash`, when it records one, is that of its U-Net and external data."""
    rel = m.files["unet"]
    files = [rel, *unet_external]
    if m.model_hash is None or not all(r in m.sha256 for r in files):
        return
    computed = model_hash_of({r: m.sha256[r] for r in files}, rel)
    if computed != m.model_hash:
        raise BundleError(f"{MANIFEST_NAME}: field 'model_hash' is {m.model_hash[:12]}... but the U-Net's files "
                          f"hash to {computed[:12]}...; the bundle was edited by hand", MANIFEST_NAME, "model_hash")


def fixed_dim(shape: list, i: int) -> int | None:
    """Axis i of an ONNX input shape when it is a fixed size, None when it is dynamic (a name) or absent."""
    d = shape[i] if len(shape) > i else None
    return d if is_int(d) and d > 0 else None


def expected_dims(m: Manifest) -> dict:
    """{(role, input): {axis: (size, the studio.json field that says so)}} for the fixed-size checks."""
    c = m.diffused_channels
    h, w = (m.latent.height, m.latent.width) if m.latent else (m.image.height, m.image.width)
    where = "latent" if m.latent else "image"
    dims = {("unet", "sample"): {1: (m.unet.in_channels, "unet.in_channels"), 2: (h, f"{where}.height"),
                                 3: (w, f"{where}.width")}}
    if m.conditioning.text:
        t = m.conditioning.text
        dims[("unet", "encoder_hidden_states")] = {1: (t.max_length, "conditioning.text.max_length"),
                                                   2: (t.hidden_size, "conditioning.text.hidden_size")}
        dims[("text_encoder", "input_ids")] = {1: (t.max_length, "conditioning.text.max_length")}
    if m.latent:
        dims[("vae_decoder", "latent_sample")] = {1: (c, "latent.channels"), 2: (h, "latent.height"),
                                                  3: (w, "latent.width")}
        dims[("vae_encoder", "sample")] = {1: (3, "image.channels"), 2: (m.image.height, "image.height"),
                                           3: (m.image.width, "image.width")}
    return dims


def check_fixed_dims(models: dict, m: Manifest) -> None:
    """No input fixes the batch; no fixed size contradicts studio.json (see the module docstring)."""
    batched = ("sample", "encoder_hidden_states", "class_labels", "input_ids", "attention_mask", "latent_sample")
    for role, model in models.items():
        for name, (_type, shape) in model.inputs.items():
            if name in batched and fixed_dim(shape, 0) is not None:
                raise BundleError(f"{model.file}: input '{name}' has a fixed batch of {shape[0]}; the runtime sends "
                                  "any batch (guidance doubles it), so export it with a dynamic batch axis",
                                  model.file, f"{role}.inputs.{name}")
    for (role, name), axes in expected_dims(m).items():
        model = models.get(role)
        if model is None or name not in model.inputs:
            continue
        shape = model.inputs[name][1]
        for axis, (size, field_name) in axes.items():
            got = fixed_dim(shape, axis)
            if got is not None and got != size:
                raise BundleError(f"{model.file}: input '{name}' has a fixed size {got} on axis {axis}, but "
                                  f"{MANIFEST_NAME} field '{field_name}' says {size}", MANIFEST_NAME, field_name)


def probe_class_embeddings(unet, m: Manifest) -> None:
    """Run the U-Net once at batch 1 with the null class; BundleError naming conditioning.class.names
    when it has fewer class embeddings than the names + 1 (ONNX Runtime refuses the index)."""
    if not m.conditioning.class_:
        return
    h, w = (m.latent.height, m.latent.width) if m.latent else (m.image.height, m.image.width)
    feeds = {"sample": np.zeros((1, m.unet.in_channels, h, w), np.float32),
             "class_labels": np.full(1, m.conditioning.class_.null_index, np.int64)}
    t_shape = unet.inputs["timestep"][1]
    feeds["timestep"] = np.zeros((1,) if len(t_shape) else ())
    if m.conditioning.text and "encoder_hidden_states" in unet.inputs:
        t = m.conditioning.text
        feeds["encoder_hidden_states"] = np.zeros((1, t.max_length, t.hidden_size), np.float32)
    try:
        unet.run(feeds)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several unrelated classes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if any(word in first.lower() for word in ("indices", "out of", "bounds", "gather")):
            raise BundleError(f"{unet.file}: the U-Net has fewer class embeddings than {MANIFEST_NAME} field "
                              f"'conditioning.class.names' needs ({len(m.conditioning.class_.names)} classes + the "
                              f"null class): {first}", MANIFEST_NAME, "conditioning.class.names") from None
        raise BundleError(f"{unet.file}: the U-Net does not run at the sizes {MANIFEST_NAME} gives: {first}",
                          unet.file, "unet") from None
    finally:
        unet.calls = 0


def check_not_a_stripped_bundle(path: Path, model_index: dict) -> None:
    """A folder that was one of our bundles (its model_index.json says so) without its studio.json."""
    if any(str(key).startswith("_diffusion_studio") for key in model_index):
        raise BundleError(f"{path}: {MANIFEST_NAME} is missing; model_index.json says this folder is a Diffusion "
                          f"Studio bundle, which cannot be checked without it (restore {MANIFEST_NAME} or export "
                          "the model again)", MANIFEST_NAME, None)
