"""The reference pipelines our images are compared with, on the same initial latents and noise.

- "torch": diffusers' StableDiffusion(Img2Img|Inpaint)Pipeline on the torch pipeline a fixture was
  exported from (rebuilt by tests/fixtures/sd/tiny_sd.py); runs in our test venv.
- "optimum": optimum's ORTStableDiffusion(Img2Img|Inpaint)Pipeline on the fixture folder itself;
  runs in the peers venv (`python tests/parity/reference.py IN.npz OUT.npz`).
- "legacy": diffusers' OnnxStableDiffusion(Img2Img|Inpaint)Pipeline (the ONNX pipelines of the
  legacy export era) on the fixture folder; peers venv.

Inputs (a dict, or an .npz for the subprocess): mode ("txt2img" | "img2img" | "inpaint"), folder,
variant, scheduler ("ddim" | "dpmpp_2m"), scheduler_config (the file whose settings to use; default
the folder's), prompt, guidance, steps, seed; latents [1,4,h,w] for
txt2img and inpainting; for img2img init_latents (scaled, [1,4,h,w]) and strength; for inpainting
mask [1,1,H,W] in {0,1} and masked_latents (scaled). Output: images [N,H,W,3] float in [0,1].
Noise the pipelines draw themselves (img2img's) comes from torch.Generator().manual_seed(seed), drawn
first, so the caller can draw the same with `torch_noise`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SCHEDULERS = {"ddim": "DDIMScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler"}
TASK = {"txt2img": "", "img2img": "Img2Img", "inpaint": "Inpaint"}


def torch_noise(seed: int, shape) -> np.ndarray:
    """The first draw of torch.Generator().manual_seed(seed) (what img2img's prepare_latents adds)."""
    import torch
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed))).numpy()


def load(kind: str, inputs: dict):
    import diffusers
    task = TASK[str(inputs["mode"])]
    folder = str(inputs["folder"])
    if kind == "torch":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "sd"))
        import tiny_sd
        cls = getattr(diffusers, f"StableDiffusion{task}Pipeline")
        pipe = cls.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    elif kind == "optimum":
        import optimum.onnxruntime as ort_pipelines
        cls = getattr(ort_pipelines, f"ORTStableDiffusion{task}Pipeline")
        pipe = cls.from_pretrained(folder, provider="CPUExecutionProvider")
    else:
        cls = getattr(diffusers, f"OnnxStableDiffusion{task}Pipeline")
        pipe = cls.from_pretrained(folder, provider="CPUExecutionProvider", safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    # The scheduler from the config our runtime reads (the fixture's): diffusers treats keys a config
    # leaves out as "use your own default", so SD 1.5's published config (no timestep_spacing) gives
    # DPM-Solver linspace spacing, while the exporters' re-saved config says "leading" explicitly.
    config = json.loads(Path(str(inputs.get("scheduler_config") or Path(folder) / "scheduler" /
                                 "scheduler_config.json")).read_text())
    pipe.scheduler = getattr(diffusers, SCHEDULERS[str(inputs["scheduler"])]).from_config(config)
    return pipe


def run(kind: str, inputs: dict) -> np.ndarray:
    import torch
    pipe = load(kind, inputs)
    mode = str(inputs["mode"])
    common = dict(prompt=str(inputs["prompt"]), negative_prompt="", guidance_scale=float(inputs["guidance"]),
                  num_inference_steps=int(inputs["steps"]), output_type="np")
    as_torch = (lambda a: torch.from_numpy(np.asarray(a, np.float32))) if kind != "legacy" else \
        (lambda a: np.asarray(a, np.float32))
    generator = torch.Generator().manual_seed(int(inputs["seed"])) if kind != "legacy" else \
        np.random.RandomState(int(inputs["seed"]))
    if mode == "txt2img":
        out = pipe(**common, latents=as_torch(inputs["latents"]), generator=generator)
    elif mode == "img2img":
        out = pipe(**common, image=as_torch(inputs["init_latents"]), strength=float(inputs["strength"]),
                   generator=generator)
    else:
        out = pipe(**common, image=as_torch(np.zeros_like(inputs["mask"]).repeat(3, axis=1)),
                   mask_image=as_torch(inputs["mask"]), masked_image_latents=as_torch(inputs["masked_latents"]),
                   latents=as_torch(inputs["latents"]), generator=generator, strength=1.0)
    return np.asarray(out.images, np.float32)


if __name__ == "__main__":  # in the peers venv: reference.py KIND IN.npz OUT.npz
    kind, src, dst = sys.argv[1:4]
    data = dict(np.load(src, allow_pickle=False))
    np.savez(dst, images=run(kind, {k: (v.item() if v.ndim == 0 else v) for k, v in data.items()}))
