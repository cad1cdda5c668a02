"""Run in the peers venv: optimum's ORTDiffusionPipeline on one of our bundles (what a user of optimum
does with it). `python peers_ort_pipeline.py BUNDLE IN.npz OUT.npz`; IN holds latents [1,C,h,w],
prompt, steps, guidance; OUT gets images [1,H,W,3] in [0, 1] and the pipeline and scheduler class."""
import sys

import numpy as np
import torch
from optimum.onnxruntime import ORTDiffusionPipeline

bundle, inputs, out = sys.argv[1:4]
data = np.load(inputs)
pipe = ORTDiffusionPipeline.from_pretrained(bundle)
latents = torch.from_numpy(data["latents"])
h, w = (int(s) * 2 ** (len(pipe.vae_decoder.config.block_out_channels) - 1) for s in latents.shape[2:])
result = pipe(str(data["prompt"]), num_inference_steps=int(data["steps"]), guidance_scale=float(data["guidance"]),
              height=h, width=w, latents=latents, output_type="np")
np.savez(out, images=np.asarray(result.images), pipeline=type(pipe).__name__, scheduler=type(pipe.scheduler).__name__)
