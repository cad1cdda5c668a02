"""Which image sizes a model takes: what the app's width/height control and the request checks use.

A U-Net exported with dynamic height and width takes any size whose latent is divisible by its
size divisor 2^(down blocks - 1) (each down block but the last halves it): image sides are
multiples of `step` = VAE factor x divisor (`Bundle.size_divisor`: the manifest's
`unet.size_divisor`, which export records and SD folders take from unet/config.json; for bundles
from before it, the stride-2 convolutions of the U-Net graph are counted). A size the U-Net cannot
take is refused with a sentence before anything runs. A U-Net with a fixed input size takes only
that size.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_SIDE = 8192  # pixels: beyond any model we know; memory.check_fits judges sizes below it


@dataclass(frozen=True)
class SizeOptions:
    """`default` (height, width); sides are multiples of `step` from `step` to `maximum`;
    `flexible` False: only the default size."""

    default: tuple
    step: int
    flexible: bool
    maximum: int = MAX_SIDE

    @property
    def minimum(self) -> int:
        return self.step if self.flexible else min(self.default)

    def allows(self, height: int, width: int) -> bool:
        if not self.flexible:
            return (height, width) == self.default
        return all(self.step <= v <= self.maximum and v % self.step == 0 for v in (height, width))

    def describe(self) -> str:
        h, w = self.default
        if not self.flexible:
            return f"this model only makes {w}x{h} images"
        return f"width and height must be multiples of {self.step} from {self.step} to {self.maximum}"


def size_options(bundle) -> SizeOptions:
    """The sizes `bundle` takes (see the module docstring)."""
    m = bundle.manifest
    shape = bundle.unet.inputs["sample"][1]
    fixed = any(len(shape) > i and isinstance(shape[i], int) and shape[i] > 0 for i in (2, 3))
    step = m.vae_factor * bundle.size_divisor
    default = (m.image.height, m.image.width)
    while default[0] % step or default[1] % step:  # never refuse the model's own size
        step //= 2
    return SizeOptions(default=default, step=max(1, step), flexible=not fixed)


def check_size(bundle, height: int, width: int, *, batch: int, guided: bool, available: int | None = None) -> None:
    """ValueError (one sentence) when the model cannot take height x width, or when the estimate of
    peak memory (memory.py) does not fit in what the machine has; checked before anything is allocated."""
    from . import memory
    options = size_options(bundle)
    if not options.allows(height, width):
        raise ValueError(f"{width}x{height} (width x height) is not possible: {options.describe()}")
    memory.check_fits(bundle, batch, height, width, guided=guided, step=options.step, available=available)
