"""Single-file checkpoints: one ``.safetensors`` in the original LDM / A1111 layout -> ``LoadedModel``.

Stable Diffusion 1.x and 2.x checkpoints as A1111, InvokeAI and model sites share them hold the U-Net
(``model.diffusion_model.*``), the VAE (``first_stage_model.*``) and the text encoder
(``cond_stage_model.*``) in one file. ``load_single_file`` converts one offline with diffusers'
single-file loader (``from_single_file``), never a hub lookup:

- The family comes from the keys: ``cond_stage_model.transformer.*`` is CLIP ViT-L (SD 1.x),
  ``cond_stage_model.model.*`` OpenCLIP ViT-H (SD 2.x); SDXL (``conditioner.*``), inpainting
  (9-channel) and other layouts get a sentence saying so.
- The configs ship in ``engine/sd_configs/<family>/``: ``original.yaml`` (the LDM description:
  U-Net, VAE, betas, latent scale) and the diffusers configs of the text encoder, tokenizer and
  scheduler. SD 2.x: v-prediction at 768x768 (``sd2``), as diffusers decides for a checkpoint
  without a training step (only SD 2 base, step 875,000, is epsilon); ``prediction_type="epsilon"``
  selects SD 2 base at 512x512 (``sd2-base``).
- ``config=FOLDER`` replaces all that for other architectures (a tiny test model, a fine-tune with
  other widths): a diffusers-layout folder of component configs (model_index.json, unet/, vae/,
  text_encoder/ config.json, tokenizer/, scheduler/), whose architecture is used as it is.
- The tokenizer is not in the file: ``tokenizer=FOLDER`` (vocab.json + merges.txt, or
  tokenizer.json, e.g. an SD folder's tokenizer/), else the config folder's own, else CLIP's
  vocabulary from an installed open-clip-torch (``engine.clip_vocab``).
- Pickles (``.ckpt``, ``.pt``, ``.pth``, ``.bin``, ``.pkl``) are refused before anything is read:
  unpickling a file runs code it names.

The converted pipeline is saved as a diffusers folder under ``work_dir`` and loaded with
``engine.loaded.load_model``, so it is checked like any diffusers folder; the caller keeps
``work_dir`` until the export is done.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from engine.clip_vocab import installed_bpe_file, write_clip_vocabulary
from engine.loaded import ModelLoadError, load_model

CONFIGS = Path(__file__).resolve().parent / "sd_configs"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
PREDICTION_TYPES = ("epsilon", "v_prediction")
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
CLIP_KEY = "cond_stage_model.transformer."
OPEN_CLIP_KEY = "cond_stage_model.model."


def is_single_file(path: str | Path) -> bool:
    """A file (not a folder) that export should treat as a single-file checkpoint (or refuse as a pickle)."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES)


def check_suffix(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"{path}: a {suffix} checkpoint is a Python pickle, and opening a pickle runs whatever code it "
            "names, so Diffusion Studio does not open it; convert it to .safetensors with a tool you trust "
            "and export that file")
    if suffix != ".safetensors":
        raise ModelLoadError(f"{path}: expected a .safetensors checkpoint or a model folder")


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, read from the safetensors header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc})") from exc


def detect_family(shapes: dict, where: Path, prediction_type: str | None) -> str:
    """"sd1", "sd2" or "sd2-base" from the checkpoint's keys (module docstring)."""
    if any(k.startswith("conditioner.embedders.") for k in shapes):
        raise ModelLoadError(f"{where}: an SDXL checkpoint; only Stable Diffusion 1.x and 2.x single files are "
                             "supported")
    if UNET_IN not in shapes:
        raise ModelLoadError(f"{where}: no Stable Diffusion U-Net in it (no {UNET_IN}); a single-file checkpoint "
                             "holds model.diffusion_model.*, first_stage_model.* and cond_stage_model.*")
    if shapes[UNET_IN][1] != 4:
        raise ModelLoadError(f"{where}: its U-Net takes {shapes[UNET_IN][1]} input channels (an inpainting or "
                             "other special model); single-file import supports text-to-image models (4); "
                             "export its diffusers folder instead")
    if not any(k.startswith("first_stage_model.") for k in shapes):
        raise ModelLoadError(f"{where}: it holds no VAE (first_stage_model.*)")
    if any(k.startswith(OPEN_CLIP_KEY) for k in shapes):
        return "sd2" if prediction_type in (None, "v_prediction") else "sd2-base"
    if any(k.startswith(CLIP_KEY) for k in shapes):
        return "sd1"
    raise ModelLoadError(f"{where}: it holds no text encoder (cond_stage_model.*)")


def _copy_tokenizer(source: Path, dest: Path) -> None:
    files = [n for n in ("vocab.json", "merges.txt", "tokenizer.json") if (source / n).is_file()]
    if not ({"vocab.json", "merges.txt"} <= set(files) or "tokenizer.json" in files):
        raise ModelLoadError(f"{source}: no tokenizer files (vocab.json + merges.txt, or tokenizer.json)")
    for name in files:
        shutil.copyfile(source / name, dest / name)


def prepare_configs(config: Path, work: Path, *, tokenizer: Path | None, prediction_type: str | None) -> Path:
    """A copy of the config folder under `work` with its tokenizer files and the chosen prediction type."""
    out = work / "configs"
    shutil.copytree(config, out, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "original.yaml"))
    tok = out / "tokenizer"
    tok.mkdir(exist_ok=True)
    has_own = (tok / "tokenizer.json").is_file() or (tok / "vocab.json").is_file()
    if tokenizer is not None:
        _copy_tokenizer(tokenizer, tok)
    elif not has_own:
        bpe = installed_bpe_file()
        if bpe is None:
            raise ModelLoadError("single-file checkpoints carry no tokenizer: pass --tokenizer FOLDER (vocab.json "
                                 "+ merges.txt, e.g. the tokenizer/ of any Stable Diffusion folder) or install "
                                 "open-clip-torch, which ships CLIP's vocabulary")
        write_clip_vocabulary(bpe, tok)
    if prediction_type is not None:
        path = out / "scheduler" / "scheduler_config.json"
        cfg = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**cfg, "prediction_type": prediction_type}, indent=2), encoding="utf-8")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_single_file(path: str | Path, *, work_dir: str | Path, config: str | Path | None = None,
                     prediction_type: str | None = None, tokenizer: str | Path | None = None):
    """The LoadedModel of a single-file checkpoint (module docstring); raises ModelLoadError with one sentence."""
    path = Path(path)
    check_suffix(path)
    if prediction_type not in (None, *PREDICTION_TYPES):
        raise ModelLoadError(f"prediction type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
    shapes = checkpoint_shapes(path)
    if config is None:
        family = detect_family(shapes, path, prediction_type)
        config, original = CONFIGS / family, CONFIGS / family / "original.yaml"
    else:
        family, config, original = "custom", Path(config), None
        if not (config / "model_index.json").is_file():
            raise ModelLoadError(f"{config}: not a diffusers config folder (no model_index.json)")
    work = Path(work_dir)
    configs = prepare_configs(config, work, tokenizer=Path(tokenizer) if tokenizer else None,
                              prediction_type=prediction_type)
    folder = work / path.stem
    _convert(path, configs, original, folder, family)
    model = load_model(folder)
    model.name = path.stem
    model.provenance = {"source": f"single-file checkpoint {path.name}", "sha256": _sha256(path),
                        "family": family, "inferred": True}
    return model


def _convert(path: Path, configs: Path, original: Path | None, folder: Path, family: str) -> None:
    """diffusers' from_single_file (offline), saved as a diffusers folder."""
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(configs), original_config=str(original) if original else None,
            local_files_only=True, safety_checker=None, requires_safety_checker=False)
    except Exception as exc:  # diffusers reports mismatches with many exception types
        raise ModelLoadError(f"{path}: diffusers could not read it as a {family} checkpoint ({exc})") from exc
    if family == "sd2-base":  # diffusers sizes every SD 2.x U-Net for 768x768
        pipe.unet.register_to_config(sample_size=64)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe
