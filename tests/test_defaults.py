"""One source for the default sampling settings: the model's manifest, else diffusion.defaults."""
from diffusion import defaults
from diffusion.samplers import SAMPLERS
from diffusion.spacing import SPACINGS


def test_the_fallback_table_names_real_settings():
    d = defaults.fallback_defaults(conditional=True)
    assert d == {"sampler": "dpmpp_2m", "steps": 20, "guidance": 3.0, "spacing": "trailing"}
    assert d["sampler"] in SAMPLERS and d["spacing"] in SPACINGS
    assert defaults.fallback_defaults(conditional=False)["guidance"] == 1.0
    assert defaults.fallback_defaults(conditional=False, num_train_timesteps=8)["steps"] == 8


def test_every_place_that_needs_a_default_uses_the_table():
    """The app before a model is open, a manifest without defaults and a training config agree."""
    from desktop.runtime.manifest import Defaults
    from desktop.ui.caps import Capabilities
    from desktop.ui.model import Params
    from engine.config import load_config

    for obj in (Defaults(), Capabilities(name="none yet"), Params()):
        assert (obj.sampler, obj.steps) == (defaults.SAMPLER, defaults.STEPS)
    cfg = load_config("tiny-pixel")["defaults"]
    assert (cfg["sampler"], cfg["steps"], cfg["spacing"]) == (defaults.SAMPLER, defaults.STEPS, defaults.SPACING)
