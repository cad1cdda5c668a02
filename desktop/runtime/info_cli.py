"""`diffusion-studio info`: what a model bundle is and what it accepts."""
from __future__ import annotations

import argparse
import json
import sys

from .manifest import BundleError

PROG = "diffusion-studio info"


def describe(bundle) -> str:
    m = bundle.manifest
    c = m.conditioning
    lines = [f"{m.name}: {m.description}".rstrip(": "),
             f"  kind:        {m.kind} diffusion, {m.image.width}x{m.image.height}, {m.image.channels} channel(s)"]
    if m.latent:
        lines.append(f"  latent:      {m.latent.channels}x{m.latent.height}x{m.latent.width}, "
                     f"scale factor {m.latent.scale_factor:g}")
    s = m.schedule
    lines.append(f"  schedule:    {s['name']}, T={s['num_train_timesteps']}, predicts {m.prediction_type}")
    accepts = []
    if c.text:
        accepts.append(f"text prompt (up to {c.text.max_length} tokens)")
    if c.class_:
        accepts.append(f"class ({len(c.class_.names)}): {', '.join(c.class_.names)}")
    if c.mask and c.mask.kind == "inpaint":
        accepts.append("inpainting mask + init image")
    if c.mask and c.mask.kind == "semantic":
        accepts.append("label map: " + ", ".join(f"{i}={l.name} rgb{tuple(l.color)}" for i, l in enumerate(c.mask.labels)))
    if bundle.vae_encoder is not None or m.kind == "pixel":
        accepts.append("init image (img2img)")
    lines.append("  accepts:     " + ("; ".join(accepts) if accepts else "nothing (unconditional)"))
    from .image_size import size_options
    lines.append(f"  sizes:       {size_options(bundle).describe()}")
    origin = f"{bundle.sd.scheduler.class_name or 'unnamed'} config: " if bundle.sd is not None else ""
    lines.append(f"  scheduler:   {origin}spacing {m.defaults.spacing}, steps_offset {m.steps_offset}"
                 + ("" if m.set_alpha_to_one else ", DDIM's last step ends at alpha_bar_0")
                 + (", clips x0" if m.clip_x0 else ""))
    for note in bundle.notes:
        lines.append(f"  note:        {note}")
    d = m.defaults
    lines.append(f"  defaults:    sampler {d.sampler}, {d.steps} steps, guidance {d.guidance:g}, spacing {d.spacing}")
    lines.append(f"  precision:   {m.precision}")
    lines.append(f"  provider:    {bundle.provider_short}" + (f" ({bundle.provider_note})" if bundle.provider_note else ""))
    if m.providers:
        lines.append(f"  graphs for:  {', '.join(m.providers)} (optimised at export)")
    if m.provenance:
        lines.append("  provenance:  " + json.dumps(m.provenance, sort_keys=True))
    lines.append("  files:")
    width = max(map(len, m.files), default=0) + 2
    for role, rel in m.files.items():
        digest = m.sha256.get(rel)
        lines.append(f"    {role:<{width}}{rel}" + (f"  sha256 {digest[:12]}..." if digest else ""))
    lines.append(f"  model hash:  {bundle.model_hash[:10]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="Describe a model bundle and what it accepts.")
    p.add_argument("model", help="model name (bundled or in your models folder) or a bundle folder")
    p.add_argument("--provider", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = p.parse_args(argv)
    from .bundle import open_bundle
    from .generate_cli import one_line
    from .paths import find_model
    from .providers import ProviderError
    try:
        bundle = open_bundle(find_model(args.model), provider=args.provider)
    except (BundleError, ProviderError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps(bundle.manifest.to_dict(), indent=2) if args.json else describe(bundle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
