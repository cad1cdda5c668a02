"""`diffusion-studio generate` / `info` end to end on tiny bundles, and no torch on the way."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.runtime import generate_cli, info_cli
from desktop.runtime.pngmeta import read_recipe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generate_writes_png_with_recipe_and_from_png_reproduces(bundles, tmp_path, capsys):
    out = tmp_path / "out"
    rc = generate_cli.main(["--model", str(bundles["latent_text"]), "--prompt", "red cat", "--negative", "dog",
                            "--seed", "4", "--batch", "2", "--steps", "3", "--out", str(out), "--provider", "cpu"])
    assert rc == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written] == ["latent_text-4.png", "latent_text-5.png"]
    req = read_recipe(written[1])
    assert (req.prompt, req.negative_prompt, req.seed, req.steps) == ("red cat", "dog", 5, 3)
    again = tmp_path / "again"
    assert generate_cli.main(["--from-png", written[1], "--model", str(bundles["latent_text"]),
                              "--out", str(again), "--quiet"]) == 0
    (copy,) = list(again.iterdir())
    np.testing.assert_array_equal(np.array(Image.open(copy)), np.array(Image.open(written[1])))


def test_generate_model_by_name_from_user_folder(bundles, tmp_path, monkeypatch, capsys):
    import shutil
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    shutil.copytree(bundles["pixel_class"], tmp_path / "home/models/digits-ish")
    assert generate_cli.main(["--model", "digits-ish", "--class", "two", "--quiet"]) == 0
    (path,) = capsys.readouterr().out.split()
    assert Path(path).parent == tmp_path / "home/outputs"
    # --from-png alone finds the model by the name in the recipe
    assert generate_cli.main(["--from-png", path, "--quiet"]) == 0


def test_generate_out_png_names_the_file_and_never_overwrites(bundles, tmp_path, capsys):
    run = lambda out, *more: generate_cli.main(["--model", str(bundles["pixel_class"]), "--class", "two", "--steps", "2",  # noqa: E731
                                                "--out", out, "--quiet", *more])
    assert run(str(tmp_path / "pics" / "cat.png"), "--batch", "2") == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "pics" / n) for n in ("cat.png", "cat-1.png")]
    first = (tmp_path / "pics" / "cat.png").read_bytes()
    assert run(str(tmp_path / "pics" / "cat.PNG"), "--seed", "9") == 0  # taken (on this file system or not): a new name
    (third,) = capsys.readouterr().out.split()
    assert Path(third).parent == tmp_path / "pics" and Path(third).name not in ("cat.png", "cat-1.png")
    assert (tmp_path / "pics" / "cat.png").read_bytes() == first
    (tmp_path / "dir.png").mkdir()  # an existing folder is a folder, whatever its name
    assert run(str(tmp_path / "dir.png")) == 0
    (path,) = capsys.readouterr().out.split()
    assert Path(path).parent == tmp_path / "dir.png" and Path(path).name == "pixel_class-0.png"
    assert run(str(tmp_path / "new.png") + "/") == 0  # a trailing separator says folder
    (path,) = capsys.readouterr().out.split()
    assert Path(path).parent == tmp_path / "new.png"


def test_generate_errors_are_one_line_exit_2(bundles, tmp_path, capsys):
    cases = [
        (["--model", str(tmp_path / "missing")], "no model"),
        (["--model", str(bundles["pixel_class"]), "--class", "nine"], "class 'nine' is not one of"),
        (["--model", str(bundles["pixel_inpaint"]), "--mask", str(tmp_path / "nomask.png")], "needs an init_image"),
        (["--prompt", "cat"], "--model"),
        (["--model", str(bundles["pixel_class"]), "--provider", "warp"], "unknown execution provider"),
        (["--model", str(bundles["pixel_class"]), "--sampler", "lcm"], "for latent consistency models only"),
    ]
    for argv, words in cases:
        assert generate_cli.main(argv + ["--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and err.startswith("diffusion-studio generate: error:")
    assert not (tmp_path / "o").exists()


def test_generate_init_mask_from_files(bundles, tmp_path, capsys):
    init = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    Image.fromarray(init).save(tmp_path / "init.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert generate_cli.main(["--model", str(bundles["pixel_inpaint"]), "--init", str(tmp_path / "init.png"),
                              "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    (path,) = capsys.readouterr().out.split()
    got = np.array(Image.open(path))
    np.testing.assert_array_equal(got[:, :4], init[:, :4])
    from desktop.runtime.pngmeta import read_recipe
    assert read_recipe(path).seamless is True
    assert generate_cli.main(["--from-png", path, "--model", str(bundles["pixel_inpaint"]), "--no-seamless", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    (raw,) = capsys.readouterr().out.split()
    assert read_recipe(raw).seamless is False
    raw_image = np.array(Image.open(raw))
    np.testing.assert_array_equal(raw_image[:, :4], init[:, :4])
    assert not np.array_equal(raw_image, got)  # the blend changed the generated half


def test_info(bundles, capsys):
    assert info_cli.main([str(bundles["pixel_semantic"])]) == 0
    text = capsys.readouterr().out
    assert "pixel diffusion, 8x8" in text and "label map: 0=sky" in text and "unet/model.onnx" in text
    assert "provider:" in text and "ddim" in text
    assert "scheduler:   spacing" in text and "steps_offset 0" in text and "clips x0" in text
    assert info_cli.main(["landscapes"]) == 0  # the shipped bundle: roles such as vae_decoder_config
    files = capsys.readouterr().out.split("  files:\n")[1].splitlines()[:-1]
    assert len(files) > 3 and all(re.fullmatch(r"    \w+ {2,}\S+  sha256 \w{12}\.\.\.", f) for f in files), files
    assert info_cli.main([str(bundles["latent_text"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["conditioning"]["text"]["max_length"] == 5
    assert info_cli.main(["/nonexistent/model"]) == 2


@pytest.mark.slow
def test_generating_does_not_import_torch(bundles, tmp_path):
    code = ("import sys; from desktop.cli import main; "
            f"rc = main(['generate', '--model', {str(bundles['latent_text'])!r}, '--prompt', 'cat', "
            f"'--init', {str(tmp_path / 'i.png')!r}, '--out', {str(tmp_path)!r}, '--quiet']); "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers', 'engine', "
            "'onnx', 'PySide6'}); print(rc, bad)")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "i.png")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 []"
