"""Training configs: named TOML presets under `engine/presets/`, merged onto defaults and validated.

A config is a plain nested dict with the sections below (every key has a default, so a preset or
a user file only says what differs). `load_config(name_or_path)` accepts a preset name
(`"tiny-pixel"`) or a path to a `.toml` file; unknown sections/keys and bad values raise
`ConfigError` naming the file, the field and what was expected. `dump_toml(cfg)` writes the
resolved config that a run folder keeps as `config.toml` (a tiny writer: the standard library
reads TOML but does not write it); `rebuild_command(cfg, out)` the `diffusion-studio train` line that
makes the same config again (a model's provenance records it).

    kind            "vae" | "pixel" | "latent"
    description     one plain sentence on what the preset makes (the app's Train window shows it)
    vae             latent runs: path to a VAE run folder (or its model/ or model/vae folder)
    [dataset]       name (shapes|landscapes|digits|folder), path, size, count, seed, grayscale, flip,
                    augment ("" | "affine": pixel models only, a small random rotation, scale and
                    shift of every training image, `engine.train.random_affine`)
    [model]         block_out_channels, layers_per_block, attention (per level), attention_head_dim,
                    norm_num_groups, cross_attention_dim (0 = the text encoder's dim),
                    latent_channels (VAE), disc_channels (VAE patch discriminator)
    [conditioning]  text ("minilm" | "scratch" | ""), class (bool), mask ("inpaint"|"semantic"|""),
                    cond_drop_prob, inpaint_full_prob (mask "inpaint": share of training masks that
                    cover the whole image, i.e. plain generation; the rest are boxes and strokes)
    [schedule]      name, T, beta_start, beta_end, cosine_s
    [training]      steps, batch, lr, warmup, ema_decay, grad_clip, mixed_precision
                    ("auto" = bf16 on CUDA, off on CPU | "no" | "bf16" | "fp16"), checkpoint_every,
                    sample_every, log_every, seed, prediction_type, num_workers, sample_steps,
                    max_seconds (wall-clock budget; 0 = none; the run ends early with its final model),
                    init (fine-tuning: a trained run or model folder whose U-Net weights start the run)
    [defaults]      sampler, steps, guidance (0 = automatic), spacing: the bundle's defaults
    [vae_loss]      recon ("l1"|"l2"), kl_weight, perceptual_weight, perceptual_weights (path,
                    optional), adv_weight, adv_start, adaptive_weight
"""
from __future__ import annotations

import copy
import math
import shlex
import tomllib
from pathlib import Path

from diffusion import defaults as fallback_table
from diffusion.checks import is_number
from diffusion.samplers import SAMPLERS
from diffusion.schedule import SCHEDULES

PRESETS = Path(__file__).resolve().parent / "presets"

KINDS = ("vae", "pixel", "latent")

DEFAULTS: dict = {
    "kind": "pixel",
    "name": "",
    "description": "",
    "vae": "",
    "dataset": {"name": "shapes", "path": "", "size": 32, "count": 1000, "seed": 0, "grayscale": False, "flip": False,
                "augment": ""},
    "model": {
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "attention": [False, True],
        "attention_head_dim": 8,
        "norm_num_groups": 8,
        "cross_attention_dim": 0,
        "latent_channels": 4,
        "disc_channels": 32,
    },
    "conditioning": {"text": "", "class": False, "mask": "", "cond_drop_prob": 0.1, "inpaint_full_prob": 0.1},
    # What the exported bundle offers first in the app and `generate` (guidance 0 = automatic:
    # diffusion.defaults.fallback_guidance). Chosen from the model's evaluation, not at training time.
    "defaults": {"sampler": fallback_table.SAMPLER, "steps": fallback_table.STEPS, "guidance": 0.0,
                 "spacing": fallback_table.SPACING},
    "schedule": {"name": "linear", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02, "cosine_s": 0.008},
    "training": {
        "steps": 1000,
        "batch": 16,
        "lr": 2e-4,
        "warmup": 100,
        "ema_decay": 0.999,
        "grad_clip": 1.0,
        "mixed_precision": "auto",
        "checkpoint_every": 500,
        "sample_every": 500,
        "log_every": 10,
        "seed": 0,
        "prediction_type": "epsilon",
        "num_workers": 0,
        "sample_steps": 20,
        "max_seconds": 0.0,
        "init": "",
    },
    "vae_loss": {
        "recon": "l1",
        "kl_weight": 1e-6,
        "perceptual_weight": 0.1,
        "perceptual_weights": "",
        "adv_weight": 0.1,
        "adv_start": 1000,
        "adaptive_weight": True,
    },
}

CHOICES = {
    ("kind",): KINDS,
    ("dataset", "name"): ("shapes", "landscapes", "digits", "folder"),
    ("dataset", "augment"): ("", "affine"),
    ("conditioning", "text"): ("", "minilm", "scratch"),
    ("conditioning", "mask"): ("", "inpaint", "semantic"),
    ("schedule", "name"): SCHEDULES,
    ("training", "mixed_precision"): ("auto", "no", "bf16", "fp16"),
    ("training", "prediction_type"): ("epsilon", "v_prediction"),
    ("vae_loss", "recon"): ("l1", "l2"),
    ("defaults", "sampler"): SAMPLERS,
    ("defaults", "spacing"): ("leading", "trailing", "linspace"),
}


class ConfigError(ValueError):
    """A config file or preset name that cannot be used; the message names the file and field."""


def preset_names() -> list[str]:
    folder = PRESETS
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _merge(base: dict, over: dict, source: str, prefix: str = "") -> None:
    for key, value in over.items():
        where = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown field '{where}'; expected one of {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{where}' must be a [section], got {value!r}")
            _merge(base[key], value, source, where + ".")
            continue
        expected = type(base[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{source}: '{where}' must be {expected.__name__}, got {value!r}")
        base[key] = value


def validate(cfg: dict, source: str = "config") -> dict:
    for path, allowed in CHOICES.items():
        value = cfg
        for part in path:
            value = value[part]
        if value not in allowed:
            raise ConfigError(f"{source}: '{'.'.join(path)}' = {value!r}; expected one of {list(allowed)}")
    m, t = cfg["model"], cfg["training"]
    if len(m["attention"]) != len(m["block_out_channels"]):
        raise ConfigError(
            f"{source}: 'model.attention' has {len(m['attention'])} entries but 'model.block_out_channels' "
            f"has {len(m['block_out_channels'])}; give one true/false per level"
        )
    if any(c % m["norm_num_groups"] for c in m["block_out_channels"]):
        raise ConfigError(f"{source}: 'model.norm_num_groups' = {m['norm_num_groups']} must divide every block_out_channels")
    for key in ("steps", "batch"):
        if t[key] < 1:
            raise ConfigError(f"{source}: 'training.{key}' must be >= 1, got {t[key]}")
    for key, lo, hi, open_lo in (("lr", 0.0, 1.0, False), ("ema_decay", 0.0, 1.0, False), ("grad_clip", 0.0, 1e6, False),
                                 ("max_seconds", 0.0, 1e9, False), ("warmup", 0.0, 1e9, False)):
        v = t[key]
        if not is_number(v) or not math.isfinite(v) or not (
                (lo < v if open_lo else lo <= v) and v <= hi):
            raise ConfigError(f"{source}: 'training.{key}' must be a number in {'(' if open_lo else '['}{lo:g}, "
                              f"{hi:g}], got {v!r}")
    if not 0.0 <= cfg["conditioning"]["cond_drop_prob"] < 1.0:
        raise ConfigError(f"{source}: 'conditioning.cond_drop_prob' must be in [0, 1)")
    if not 0.0 <= cfg["conditioning"]["inpaint_full_prob"] <= 1.0:
        raise ConfigError(f"{source}: 'conditioning.inpaint_full_prob' must be in [0, 1]")
    if cfg["dataset"]["augment"] and (cfg["kind"] != "pixel" or cfg["conditioning"]["mask"] == "semantic"):
        raise ConfigError(f"{source}: 'dataset.augment' = {cfg['dataset']['augment']!r} is for pixel models without "
                          "label maps (a latent run caches each image's latent)")
    if cfg["kind"] == "latent" and not cfg["vae"]:
        raise ConfigError(f"{source}: a latent run needs 'vae' = path to a trained VAE run")
    if cfg["dataset"]["name"] == "folder" and not cfg["dataset"]["path"]:
        raise ConfigError(f"{source}: dataset 'folder' needs 'dataset.path' (or --data PATH)")
    if cfg["dataset"]["size"] % 2 ** (len(m["block_out_channels"]) - 1):
        raise ConfigError(f"{source}: 'dataset.size' must be divisible by 2^(levels-1)")
    return cfg


def resolve_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    preset = PRESETS / f"{name_or_path}.toml"
    if not preset.is_file():
        raise ConfigError(f"'{name_or_path}' is neither a .toml file nor a preset; presets: {', '.join(preset_names())}")
    return preset


def load_config(name_or_path: str | Path | dict, overrides: dict | None = None) -> dict:
    """Defaults <- preset/file (or a dict) <- overrides (same nested shape), then validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if isinstance(name_or_path, dict):
        source, data = "config", name_or_path
    else:
        path = resolve_config_path(name_or_path)
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
        if not data.get("name"):
            data = {**data, "name": path.stem}
    _merge(cfg, copy.deepcopy(data), source)
    if overrides:
        _merge(cfg, copy.deepcopy(overrides), "overrides")
    return validate(cfg, source)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(cfg: dict) -> str:
    """Scalars first, then one [section] per nested dict (one level, as configs have)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def differences(base: dict, cfg: dict, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, value) for every field of `cfg` whose value differs from `base`'s."""
    out = []
    for key, value in cfg.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out += differences(base[key], value, f"{prefix}{key}.")
        elif base.get(key) != value:
            out.append((prefix + key, value))
    return out


def rebuild_command(cfg: dict, out: str) -> str:
    """The command that trains this config again into `out`: its preset with a `--set` for every
    field that differs from the preset (an --init, a --batch, a --set); a config that is no preset
    is the run folder's own config.toml."""
    if cfg["name"] not in preset_names():
        return f"diffusion-studio train {shlex.quote(out)}/config.toml --out {shlex.quote(out)}"
    sets = [f"{key}={_toml_value(value)}" for key, value in differences(load_config(cfg["name"]), cfg)]
    return shlex.join(["diffusion-studio", "train", cfg["name"], *(a for s in sets for a in ("--set", s)), "--out", out])
