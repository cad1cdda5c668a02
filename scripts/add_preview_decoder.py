"""Give a finished latent bundle a learned live-preview decoder (in place).

    .venv/bin/python scripts/add_preview_decoder.py BUNDLE [--steps 1500] [--data shapes]
    .venv/bin/python scripts/add_preview_decoder.py BUNDLE --from OTHER_BUNDLE

Rebuilds the bundle's VAE from its own graphs, trains the tiny decoder on the VAE's decodes of the
data set's images (default: the data set its provenance names), exports it as preview/decoder.onnx
(checked against PyTorch), removes the linear map and rewrites studio.json with the new hashes
(model_index.json stays as export wrote it); the U-Net, and so the model hash, are unchanged. The
shipped latent models got theirs this way: 5-8 minutes of training each on 2 CPU cores with nothing
else running (torch threads: OMP_NUM_THREADS), plus a minute or two encoding the training images.

`--from OTHER_BUNDLE` copies that bundle's decoder instead of training one, for a bundle with the
same VAE decoder (checked by decoding the same latents with both): a U-Net fine-tuned with
`train --init OTHER_BUNDLE --vae OTHER_BUNDLE` keeps its model's preview, and git no new binary.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--steps", type=int, default=1500, help="training steps (default %(default)s)")
    parser.add_argument("--width", type=int, default=48, help="channels of the decoder (default %(default)s)")
    parser.add_argument("--data", help="shapes, landscapes or an image folder (default: the bundle's provenance)")
    parser.add_argument("--from", dest="source", type=Path, metavar="BUNDLE",
                        help="copy this bundle's decoder (same VAE decoder) instead of training one")
    args = parser.parse_args(argv)
    from export.preview_net import add_preview_decoder, copy_preview_decoder

    try:
        if args.source:
            copy_preview_decoder(args.bundle, args.source)
        else:
            add_preview_decoder(args.bundle, data=args.data, steps=args.steps, width=args.width)
    except (OSError, ValueError, RuntimeError) as exc:  # BundleError is a ValueError
        print(f"add_preview_decoder: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
