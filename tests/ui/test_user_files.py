"""settings.json and history.json are read, not trusted (issue 13): no value in them stops the app."""
from __future__ import annotations

import json
import math

import pytest

from desktop.ui import dirs
from desktop.ui.history import History
from desktop.ui.settings import DEFAULTS, Settings
from tests.ui.conftest import run_and_wait

BAD_SETTINGS = {
    "overlay_opacity": "x", "preview_every": "x", "output_dir": 5, "provider": ["cuda"], "theme": 3,
    "recent_prompts": "not a list", "show_noisy": "yes", "live_painting": None, "model_names": [1, 2],
    "window_geometry": {"a": 1}, "window_state": 7, "last_model": False,
}


@pytest.mark.parametrize("key", list(BAD_SETTINGS))
def test_a_wrong_type_keeps_the_default_and_the_rest(home, key):
    path = dirs.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: BAD_SETTINGS[key], "provider": "cpu" if key != "provider" else ["x"]}))
    s = Settings()
    assert s[key] == DEFAULTS[key]
    if key != "provider":
        assert s["provider"] == "cpu"


def test_infinite_and_huge_numbers(home):
    path = dirs.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"overlay_opacity": 1e309, "preview_every": 1e309}')
    s = Settings()
    assert s["overlay_opacity"] == 0.5 and s["preview_every"] == 1 and math.isfinite(s["overlay_opacity"])


def test_the_app_starts_and_generates_with_bad_settings_and_history(qtbot, open_window, home):
    dirs.settings_file().parent.mkdir(parents=True, exist_ok=True)
    dirs.settings_file().write_text(json.dumps(BAD_SETTINGS))
    dirs.history_file().parent.mkdir(parents=True, exist_ok=True)
    dirs.history_file().write_text(json.dumps([
        {"path": 5, "recipe": {}}, {"path": "x.png", "recipe": {"seed": "zero"}}, "not an entry",
        {"path": "y.png", "recipe": {"init_image": "/etc/passwd"}},
        {"path": "z.png", "recipe": {"seed": 3, "prompt": "ok"}, "created": float("inf")},
        {"path": "good.png", "recipe": {"seed": 3, "prompt": "ok"}},
    ], allow_nan=True))
    w = open_window()
    assert [e.path for e in w.model.history.entries] == ["good.png"]
    run_and_wait(qtbot, w.model)
    assert w.model.result_paths and w.model.result_paths[0].parent == home["home"] / "outputs"


@pytest.mark.parametrize("text", ["{", "[" * 100000, "\xff\xfe", '{"a": ' * 3000 + "1" + "}" * 3000])
def test_a_corrupt_file_is_kept_aside_and_the_defaults_used(home, text):
    path = dirs.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1"))
    assert Settings()["provider"] == "auto"
    assert path.with_suffix(".json.corrupt").read_bytes() == text.encode("latin-1")
    hist = dirs.history_file()
    hist.parent.mkdir(parents=True, exist_ok=True)
    hist.write_bytes(text.encode("latin-1"))
    assert len(History()) == 0


def test_an_a1111_png_dropped_on_the_app_says_what_is_not_applied(qtbot, open_window, home):
    from PIL import Image, PngImagePlugin

    from desktop.ui.widgets.dialogs import recipe_rows
    from desktop.runtime.pngmeta import read_recipe_dict

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat <lora:catLora:0.7>\nSteps: 3, Sampler: Heun, CFG scale: 7, Seed: 5, "
                                "Size: 8x8, Model: sd15, Clip skip: 2")
    png = home["tmp"] / "a1111.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    w = open_window()
    with qtbot.waitSignal(w.model.message, timeout=5000,
                          check_params_cb=lambda text: "not applied here" in text) as blocker:
        assert w.model.restore_png(png)
    assert "LoRA catLora (0.7)" in blocker.args[0] and "clip skip 2" in blocker.args[0]
    assert w.model.params.seed == 5
    rows = dict(recipe_rows(read_recipe_dict(png)))
    assert "Heun" in rows["Not applied here"]
