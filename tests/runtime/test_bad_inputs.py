"""The bad-input matrix of issue 13 on the command line: every case exits with its code, says what
is wrong in one line on stderr, prints no traceback, and loses or leaves nothing.

`run(argv)` calls `desktop.cli.main` in-process (a traceback would fail the test by itself); the
cases that need a real process (pipes, signals, mounts) run one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.cli import main as studio_main
from desktop.runtime import pngmeta
from desktop.runtime.pngmeta import read_recipe
from tests.helpers.namespaces import unshare_or_skip

ROOT = Path(__file__).resolve().parents[2]


def run(argv, capsys) -> tuple[int, list[str], list[str]]:
    code = studio_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.strip().splitlines()


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def assert_one_line(err: list[str], *words: str) -> None:
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for w in words:
        assert w in err[0], (w, err[0])


# --------------------------------------------------------------------------------------------
# --out: checked before any work is done


def test_out_that_is_a_file_is_refused_before_generating(bundles, tmp_path, capsys, monkeypatch):
    (tmp_path / "out").write_text("my notes")
    from desktop.runtime import pipeline
    monkeypatch.setattr(pipeline, "generate", lambda *a, **k: pytest.fail("generated before checking --out"))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 2 and out == []
    assert_one_line(err, str(tmp_path / "out"), "is a file, not a folder")
    assert (tmp_path / "out").read_text() == "my notes"


def test_out_on_a_read_only_or_full_disk_is_refused_before_generating(bundles, tmp_path, capsys, monkeypatch):
    import errno

    from desktop.runtime import fileio

    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    real_open = fileio.os.open
    monkeypatch.setattr(fileio.os, "open", lambda path, *a, **k: refuse() if ".ds_" in str(path) else real_open(path, *a, **k))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--out", tmp_path / "ro", "--quiet"], capsys)
    assert code == 2 and out == []
    assert_one_line(err, str(tmp_path / "ro"), "Read-only file system")
    monkeypatch.setattr(fileio.os, "open", real_open)
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, 1 << 30, 1000))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--out", tmp_path / "full", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "full"), "full", "needed")
    assert tree(tmp_path) == []


def test_disk_full_part_way_through_a_batch_reports_what_was_saved(bundles, tmp_path, capsys, monkeypatch):
    import errno

    real = pngmeta.save_png
    calls = []

    def save_png(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)
    monkeypatch.setattr(pngmeta, "save_png", save_png)
    out_dir = tmp_path / "out"
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--batch", "8", "--steps", "2",
                          "--out", out_dir, "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "saved 2 of 8 image(s)", str(out_dir), "image 3 could not be written",
                    "No space left on device")
    assert [Path(p).name for p in out] == ["pixel_class-0.png", "pixel_class-1.png"]
    assert tree(out_dir) == ["pixel_class-0.png", "pixel_class-1.png"]
    assert read_recipe(out[1]).seed == 1


def test_what_a_killed_run_left_in_the_output_folder_is_cleaned_by_the_next(bundles, tmp_path, capsys):
    """A dead writer's temporary, and an hour-old one of an earlier version, go; the user's files stay."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftovers = [f".ds_pixel_class-0.png.tmp-{int(dead.stdout)}-0123abcd.png", ".writing-k2j3.png"]
    for name in leftovers + ["mine.png", ".hidden"]:
        (out_dir / name).write_text("x")
    os.utime(out_dir / ".writing-k2j3.png", (0, 0))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--steps", "2", "--out", out_dir,
                          "--quiet"], capsys)
    assert code == 0, err
    assert tree(out_dir) == [".hidden", "mine.png", "pixel_class-0.png"]


REAL_DISK_FULL = r"""
import sys
from pathlib import Path
from desktop.runtime import pngmeta

disk = Path(sys.argv[1])
real = pngmeta.save_png
count = [0]

def save_png(*a, **k):
    count[0] += 1
    if count[0] == 3:  # another program fills the disk while the batch is being saved
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
    return real(*a, **k)

pngmeta.save_png = save_png
from desktop.cli import main
sys.exit(main(["generate", "--model", "digits", "--class", "4", "--batch", "8", "--steps", "2",
               "--out", str(disk / "out"), "--quiet"]))
"""


@pytest.mark.slow
def test_a_really_full_disk_part_way_through_a_batch(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=1m tmpfs {disk} && "
              f"{sys.executable} -c '{REAL_DISK_FULL}' {disk}; code=$?; ls -a {disk}/out; exit $code")
    out = subprocess.run([*unshare_or_skip("mount"), "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert_one_line(err, "saved 2 of 8 image(s)", "image 3 could not be written (No space left on device)")
    listing = out.stdout.split()
    assert [Path(p).name for p in listing if p.endswith(".png") and "/" in p] == ["digits-0.png", "digits-1.png"]
    assert sorted(n for n in listing if not n.startswith("/")) == [".", "..", "digits-0.png", "digits-1.png"]


# --------------------------------------------------------------------------------------------
# Recipes are untrusted input (issue 13) and A1111 PNGs are read honestly (issue 11.5)


def _recipe_png(path: Path, recipe: dict | None = None, parameters: str | None = None, size=(16, 16)) -> Path:
    import json

    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    if recipe is not None:
        info.add_text("diffusion-studio", json.dumps(recipe), zip=True)
    Image.new("RGB", size).save(path, pnginfo=info)
    return path


def _made_png(bundle, tmp_path, capsys, *extra) -> Path:
    code, out, err = run(["generate", "--model", bundle, "--steps", "2", "--out", tmp_path / "made", "--quiet",
                          *extra], capsys)
    assert code == 0, err
    return Path(out[-1])


def _edited(png: Path, tmp_path: Path, edit) -> Path:
    recipe = dict(pngmeta.read_recipe_dict(png))
    recipe.pop("notes"), recipe.pop("source")
    edit(recipe)
    return _recipe_png(tmp_path / f"edited-{len(list(tmp_path.iterdir()))}.png", recipe)


@pytest.mark.parametrize("edit,words", [
    (lambda r: r["request"].update(init_image="/etc/hostname"), "field 'init_image' names a file"),
    (lambda r: r["request"].update(mask=str(ROOT / "README.md")), "field 'mask' names a file"),
    (lambda r: r.update(model=5), "field 'model' must be an object"),
    (lambda r: r["request"].update(prompt=5), "field 'prompt' must be text"),
    (lambda r: r.update(request=[1, 2]), "field 'request' must be an object"),
    (lambda r: r["request"].update(steps="20"), "field 'steps' must be an integer"),
    (lambda r: r["request"].update(seed=2**70), "field 'seed' must be an integer"),
    (lambda r: r["request"].update(guidance=float("nan")), "field 'guidance' must be a number"),
    (lambda r: r["request"].update(labels={"png": "bm90IGEgcG5n"}), "field 'labels' is not a valid inline PNG"),
    (lambda r: r["request"].update(init_image={"png": 5}), "field 'init_image' must be an inline image"),
    (lambda r: r["model"].update(hash="not hex"), "field 'model.hash' must be hexadecimal"),
    (lambda r: r["request"].update(width=100000, height=100000), "field 'height' must be from 1 to 8192"),
    (lambda r: r["request"].update(batch_size=10**6), "field 'batch_size' must be from 1 to 64"),
])
def test_malformed_recipes_give_one_sentence(bundles, tmp_path, capsys, edit, words):
    png = _edited(_made_png(bundles["pixel_class"], tmp_path, capsys), tmp_path, edit)
    code, out, err = run(["generate", "--from-png", png, "--model", bundles["pixel_class"], "--out",
                          tmp_path / "o", "--quiet"], capsys)
    assert code == 2 and out == []
    assert_one_line(err, png.name, words)
    assert not (tmp_path / "o").exists()


def test_a_recipe_size_far_beyond_the_model_falls_back_to_its_own_with_a_note(bundles, tmp_path, capsys):
    """A recipe of 2048x2048 replayed on an 8x8 model allocated and ran at 2048x2048."""
    png = _edited(_made_png(bundles["pixel_class"], tmp_path, capsys), tmp_path,
                  lambda r: r["request"].update(width=2048, height=2048))
    code, out, err = run(["generate", "--from-png", png, "--model", bundles["pixel_class"], "--out", tmp_path / "o",
                          "--quiet"], capsys)
    assert code == 0, err
    assert_one_line(err[:1], "note: not applied from the recipe: size 2048x2048 (this model makes 8x8 images)")
    assert len(err) == 2 and err[1].startswith("1 image(s), ")  # the usual summary
    assert Image.open(out[0]).size == (8, 8)


def test_a_recipe_never_follows_a_model_path(bundles, tmp_path, capsys):
    """A recipe naming a bundle by its path (outside the models folders) is not opened."""
    png = _edited(_made_png(bundles["pixel_class"], tmp_path, capsys), tmp_path,
                  lambda r: (r["model"].update(name=str(bundles["pixel_class"]), hash="ab" * 32),
                             r["request"].update(model=str(bundles["pixel_class"]))))
    code, out, err = run(["generate", "--from-png", png, "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "is not installed", "hash abababab", "--model")


def test_a_hash_that_matches_nothing_installed_says_so(bundles, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    shutil.copytree(bundles["pixel_class"], tmp_path / "home" / "models" / "pixel_class")
    png = _edited(_made_png("pixel_class", tmp_path, capsys), tmp_path, lambda r: r["model"].update(hash="cd" * 32))
    code, out, err = run(["generate", "--from-png", png, "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "made with model 'pixel_class' (hash cdcdcdcdcd)", "is a different model", "--model")
    # the user can still choose it
    code, out, err = run(["generate", "--from-png", png, "--model", "pixel_class", "--out", tmp_path / "o",
                          "--quiet"], capsys)
    assert code == 0


def test_a_bundle_given_by_path_replays_with_from_png_alone(bundles, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    elsewhere = shutil.copytree(bundles["pixel_class"], tmp_path / "downloads" / "my bundle")
    png = _made_png(elsewhere, tmp_path, capsys, "--class", "two", "--seed", "9")
    code, out, err = run(["generate", "--from-png", png, "--out", tmp_path / "again", "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.array(Image.open(out[0])), np.array(Image.open(png)))
    assert str(elsewhere) in (tmp_path / "home" / "known_models.json").read_text()


def test_a_seed_near_2_63_in_a_batch_replays(bundles, tmp_path, capsys):
    seed = 2**63 - 2
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--seed", seed, "--batch", "2", "--steps",
                          "2", "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 0, err
    last = Path(out[-1])
    assert pngmeta.read_recipe(last).seed == 2**63 - 1
    code, again, err = run(["generate", "--from-png", last, "--model", bundles["pixel_class"], "--out",
                            tmp_path / "again", "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.array(Image.open(again[0])), np.array(Image.open(last)))
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--seed", 2**63 - 1, "--batch", "2",
                          "--out", tmp_path / "o2", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "seed")


def test_an_a1111_png_lists_what_it_cannot_apply_in_one_note(bundles, tmp_path, capsys):
    png = _recipe_png(tmp_path / "a1111.png", parameters=(
        "a cat <lora:catLora:0.7>\nNegative prompt: dog\nSteps: 3, Sampler: Heun, CFG scale: 7, Seed: 5, "
        "Size: 512x768, Model hash: 0123456789, Model: sd15, Clip skip: 2, Hires upscale: 2, Version: v1.9.4"))
    code, out, err = run(["generate", "--from-png", png, "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "model 'sd15' (hash 0123456789) is not installed", "--model")
    code, out, err = run(["generate", "--from-png", png, "--model", bundles["pixel_class"], "--out", tmp_path / "o",
                          "--quiet"], capsys)
    assert code == 0, err
    (note,) = [line for line in err if line.startswith("note: not applied from the recipe:")]
    for words in ("LoRA catLora (0.7)", "clip skip 2", "hires fix", "Heun", "size 512x768", "noise generator"):
        assert words in note, (words, note)
    assert pngmeta.read_recipe(out[0]).seed == 5


def test_strength_without_init_is_refused(bundles, tmp_path, capsys):
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--strength", "0.5", "--out",
                          tmp_path / "o", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "--strength needs --init")


@pytest.mark.slow
def test_reading_a_recipe_never_decodes_the_pixels(bundles, tmp_path, capsys):
    """A 20000x20000 PNG (a 50 KB file, 1.2 GB decoded) replays from its recipe; Pillow would refuse it."""
    import json
    import struct
    import zlib

    recipe = pngmeta.read_recipe_dict(_made_png(bundles["pixel_class"], tmp_path, capsys, "--seed", "3"))
    recipe.pop("notes"), recipe.pop("source")
    side = 20000
    raw = zlib.compressobj(9)
    row = b"\0" + b"\0" * (side // 8)
    idat = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    text = b"diffusion-studio\0\0" + zlib.compress(json.dumps(recipe).encode())
    png = tmp_path / "huge.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                    + chunk(b"zTXt", text) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    assert png.stat().st_size < 200_000
    code, out, err = run(["generate", "--from-png", png, "--model", bundles["pixel_class"], "--out",
                          tmp_path / "o", "--quiet"], capsys)
    assert code == 0, err
    assert pngmeta.read_recipe(out[0]).seed == 3


# --------------------------------------------------------------------------------------------
# Tracebacks where a sentence belongs


@pytest.mark.parametrize("name", ["x" * 300, "\x1b[31mred\x1b[0m\x07", "a\0b", "../../etc"])
def test_long_or_escaped_model_names(tmp_path, capsys, monkeypatch, name):
    # "../../etc" must resolve to a folder that does not exist, wherever the checkout lives
    # (from /tmp/ci it was /etc: a real folder, so the message was "not a model bundle").
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    for sub in ("generate", "info"):
        argv = [sub, "--model", name, "--out", tmp_path / "o"] if sub == "generate" else [sub, name]
        code, out, err = run(argv, capsys)
        assert code == 2 and out == []
        assert_one_line(err, "no model")
        assert "\x1b" not in err[0] and "\x07" not in err[0] and "\0" not in err[0]
        assert len(err[0]) < 600


@pytest.mark.slow
def test_info_into_a_closed_pipe_is_quiet():
    """`diffusion-studio info digits | head -1` printed a BrokenPipeError traceback. `true` closes the
    pipe before anything is written, so the write always fails."""
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m desktop info digits | true; echo $?"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "141"  # what a program stopped by SIGPIPE returns
    assert proc.stderr == "", proc.stderr


def test_a_deeply_nested_studio_json(bundles, tmp_path, capsys):
    path = shutil.copytree(bundles["pixel_class"], tmp_path / "deep")
    (path / "studio.json").write_text('{"provenance": ' + "[" * 100000 + "]" * 100000 + "}")
    for argv in (["info", path], ["generate", "--model", path, "--out", tmp_path / "o"]):
        code, out, err = run(argv, capsys)
        assert code == 2
        assert_one_line(err, "studio.json", "nested more than 64 levels")


@pytest.mark.parametrize("edit,words", [
    (lambda d: d["schedule"].update(num_train_timesteps=10**8), "schedule.num_train_timesteps"),
    (lambda d: d["image"].update(height=10**6, width=10**6), "image.height"),
    (lambda d: d["conditioning"].update(text={"max_length": 100000, "hidden_size": 6}), "conditioning.text.max_length"),
])
def test_memory_bombs_in_a_manifest_are_refused_before_allocating(bundles, tmp_path, capsys, edit, words):
    import json
    import resource
    path = shutil.copytree(bundles["pixel_class"], tmp_path / "bomb")
    data = json.loads((path / "studio.json").read_text())
    edit(data)
    (path / "studio.json").write_text(json.dumps(data))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err = run(["info", path], capsys)
    assert code == 2
    assert_one_line(err, words)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing big was allocated


# --------------------------------------------------------------------------------------------
# Images given with --init / --mask


def _huge_png(path: Path, side: int = 20000) -> Path:
    """A 20000x20000 1-bit PNG: about 30 KB on disk, 400 million pixels decoded."""
    import struct
    import zlib

    z = zlib.compressobj(9)
    row = b"\0" * (1 + side // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--init", "--mask"])
def test_a_huge_png_as_init_or_mask_is_refused_before_decoding(bundles, tmp_path, capsys, option):
    huge = _huge_png(tmp_path / "huge.png")
    init = tmp_path / "init.png"
    Image.new("RGB", (8, 8)).save(init)
    argv = ["generate", "--model", bundles["pixel_inpaint"], "--out", tmp_path / "o", "--quiet"]
    argv += ["--init", huge] if option == "--init" else ["--init", init, "--mask", huge]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert_one_line(err, "too large to use" if option == "--init" else "too large to use")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_an_init_image_of_another_size_is_refused_from_its_header(bundles, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000)).save(big)
    code, out, err = run(["generate", "--model", bundles["pixel_inpaint"], "--init", big, "--out", tmp_path / "o",
                          "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, "init_image is 4000x3000 but the output is 8x8")


def test_a_16_bit_init_image_keeps_its_range(bundles, tmp_path, capsys):
    """A 16-bit grey PNG was converted by clipping every value above 255: pure white."""
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, resolve_request

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    path = tmp_path / "sixteen.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    r, _ = resolve_request(open_bundle(bundles["pixel_inpaint"], provider="cpu"),
                           GenerationRequest(init_image=str(path), strength=0.5))
    expected = np.round(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(r.init_image[..., 0], expected)
    assert r.init_image.min() == 0 and r.init_image.max() == 245  # not all white


def test_a_mask_drawn_in_the_alpha_channel(bundles, tmp_path):
    """A mask painted as opacity (black everywhere, opaque where to generate) read as empty."""
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, resolve_request

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:3, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.new("RGB", (8, 8), (90, 90, 90)).save(tmp_path / "init.png")
    r, _ = resolve_request(open_bundle(bundles["pixel_inpaint"], provider="cpu"),
                           GenerationRequest(init_image=str(tmp_path / "init.png"), mask=str(tmp_path / "alpha.png")))
    assert r.mask[:3].min() == 1.0 and r.mask[3:].max() == 0.0
    grey = np.zeros((8, 8), np.uint8)
    grey[:, :2] = 255
    Image.fromarray(grey).save(tmp_path / "grey.png")  # an ordinary mask still reads by brightness
    r, _ = resolve_request(open_bundle(bundles["pixel_inpaint"], provider="cpu"),
                           GenerationRequest(init_image=str(tmp_path / "init.png"), mask=str(tmp_path / "grey.png")))
    assert r.mask[:, :2].min() == 1.0 and r.mask[:, 2:].max() == 0.0


# --------------------------------------------------------------------------------------------
# train (the engine extra)


@pytest.mark.slow
@pytest.mark.parametrize("argv,words", [
    (["--lr", "nan"], "'training.lr' must be a number in [0, 1], got nan"),
    (["--lr", "-1"], "'training.lr' must be a number"),
    (["--max-seconds", "inf"], "'training.max_seconds' must be a number"),
])
def test_train_refuses_bad_numbers(tmp_path, capsys, argv, words):
    pytest.importorskip("torch")
    code, out, err = run(["train", "tiny-pixel", "--out", tmp_path / "run", *argv], capsys)
    assert code == 2
    assert_one_line(err, words)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_out_that_is_a_file(tmp_path, capsys):
    pytest.importorskip("torch")
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run(["train", "tiny-pixel", "--steps", "1", "--out", tmp_path / "notes.txt"], capsys)
    assert code == 2
    assert_one_line(err, "notes.txt is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("size", [2048, 100000])
def test_a_size_far_beyond_the_model_is_refused_before_allocating(bundles, tmp_path, capsys, size):
    """2048x2048 on a model made for 8x8 (its U-Net takes any size) allocated and ran."""
    code, out, err = run(["generate", "--model", bundles["pixel_class"], "--width", size, "--height", size,
                          "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 2
    assert_one_line(err, f"height {size} is too large for this model: at most 32")


@pytest.mark.slow
def test_an_sd_folder_given_by_path_replays_with_from_png_alone(tmp_path, capsys, monkeypatch):
    """Issue 11.5: SD folders record no hash; the lookup hashes their U-Net once and caches it."""
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    folder = shutil.copytree(ROOT / "tests" / "fixtures" / "sd" / "optimum-sd1", tmp_path / "my sd")
    png = _made_png(folder, tmp_path, capsys, "--prompt", "a red cube", "--steps", "2", "--seed", "5")
    code, out, err = run(["generate", "--from-png", png, "--out", tmp_path / "again", "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.array(Image.open(out[0])), np.array(Image.open(png)))
    assert "hash" in (tmp_path / "home" / "model_hashes.json").read_text()


# --------------------------------------------------------------------------------------------
# Bundles that passed validation but crashed later: on the command line too (exit 2, one line)


def _more_class_names(path: Path) -> None:
    import json
    data = json.loads((path / "studio.json").read_text())
    data["conditioning"]["class"]["names"] += ["three", "four"]
    (path / "studio.json").write_text(json.dumps(data))


def _fixed_size_unet(path: Path) -> None:
    from desktop.runtime.manifest import read_manifest, write_manifest
    from tests.helpers.tiny_bundles import CLASS_NAMES, save_onnx, unet_onnx, unet_weights
    save_onnx(unet_onnx(unet_weights(3, 3, len(CLASS_NAMES)), 3, 3, classes=True, spatial=(16, 16)),
              path / "unet/model.onnx")
    write_manifest(path, read_manifest(path))


def _unhashed_external_data(path: Path) -> None:
    import json

    import onnx

    from desktop.runtime.manifest import read_manifest, write_manifest
    onnx.save(onnx.load(str(path / "unet/model.onnx")), str(path / "unet/model.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=100)
    write_manifest(path, read_manifest(path))
    data = json.loads((path / "studio.json").read_text())
    del data["sha256"]["unet/weights.bin"]
    (path / "studio.json").write_text(json.dumps(data))


@pytest.mark.parametrize("name,damage,words", [
    ("pixel_class", _more_class_names, "conditioning.class.names"),
    ("pixel_class", _fixed_size_unet, "fixed size 16 on axis 2, but studio.json field 'image.height' says 8"),
    ("pixel_class", _unhashed_external_data, "'unet/weights.bin', which studio.json does not hash"),
    ("latent_text", lambda path: (path / "studio.json").unlink(), "studio.json is missing"),
])
def test_a_bundle_that_would_crash_later_is_refused_at_open(bundles, tmp_path, capsys, name, damage, words):
    path = shutil.copytree(bundles[name], tmp_path / "damaged")
    damage(path)
    before = tree(path)
    for argv in (["info", path], ["generate", "--model", path, "--out", tmp_path / "o", "--quiet"]):
        code, out, err = run(argv, capsys)
        assert code == 2 and out == [], (argv, out)
        assert_one_line(err, words)
    assert tree(path) == before and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# export --overwrite replaces only a bundle (the command line; the writer's own tests are in tests/export)


@pytest.mark.parametrize("make,words", [
    ("thesis_folder", "is a folder that is not a model bundle (it has no studio.json)"),
    ("file", "is a file, not a model bundle"),
    ("symlink", "is a symbolic link"),
    ("bundle_with_user_file", "holds files that are not part of its bundle (thesis.txt)"),
    ("bundle_without_overwrite", "already exists; pass --overwrite to replace it"),
])
def test_export_overwrite_refuses_what_is_not_a_bundle(bundles, tmp_path, capsys, make, words):
    """Refused before the source is read and before PyTorch is imported (a fast test:
    tests/helpers/fast_target.py)."""
    out = tmp_path / "out"
    if make == "thesis_folder":
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
    elif make == "file":
        out.write_text("years of work")
    elif make == "symlink":
        (tmp_path / "target").mkdir()
        (tmp_path / "target" / "thesis.txt").write_text("years of work")
        out.symlink_to(tmp_path / "target")
    else:
        shutil.copytree(bundles["pixel_class"], out)
        if make == "bundle_with_user_file":
            (out / "thesis.txt").write_text("years of work")
    snapshot = {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    overwrite = [] if make == "bundle_without_overwrite" else ["--overwrite"]
    code, stdout, err = run(["export", tmp_path / "no-source-needed", out, *overwrite], capsys)
    assert code == 2 and stdout == []
    assert_one_line(err, str(out), words)
    assert {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")} == snapshot


@pytest.mark.parametrize("case,words", [
    ("other_options", "a bundle SOURCE only takes --int8 (the other options need the model it was exported from)"),
    ("damaged_bundle", "studio.json: not valid JSON"),
    ("thesis_folder", "is a folder that is not a model bundle (it has no studio.json)"),
])
def test_export_int8_of_a_bundle_refuses_bad_input_in_one_sentence(bundles, tmp_path, capsys, case, words):
    """`export BUNDLE OUT --int8` (no PyTorch): exit 2, one sentence, nothing written."""
    source, out, options = bundles["pixel_class"], tmp_path / "out", ["--int8"]
    if case == "other_options":
        options.append("--fp16")
    elif case == "damaged_bundle":
        source = shutil.copytree(source, tmp_path / "damaged")
        (source / "studio.json").write_text("{not json")
    else:
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
        options.append("--overwrite")
    snapshot = {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    code, stdout, err = run(["export", source, out, *options], capsys)
    assert code == 2 and stdout == []
    assert_one_line(err, words)
    assert {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")} == snapshot


# --------------------------------------------------------------------------------------------
# --out on a really read-only or full file system (a tmpfs in a private mount namespace)

@pytest.mark.parametrize("mount,words", [
    ("ro,size=1m", "cannot be created in"),
    ("size=64k", "is on a disk that is (nearly) full"),
])
def test_out_on_a_really_read_only_or_full_disk(tmp_path, mount, words):
    """No monkeypatching: a tmpfs mounted read-only, or one already full, checked before generating."""
    disk = tmp_path / "disk"
    disk.mkdir()
    fill = f"head -c 60k /dev/zero > {disk}/filler; " if "64k" in mount else ""
    code = (f"mount -t tmpfs -o {mount} tmpfs {disk} && {fill}"
            f"{sys.executable} -m desktop generate --model digits --batch 64 --out {disk}/out --quiet; "
            f"code=$?; ls -A {disk}; exit $code")
    out = subprocess.run([*unshare_or_skip("mount"), "sh", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stderr
    assert_one_line(out.stderr.strip().splitlines(), f"{disk}/out", words, "Read-only file system" if "ro" in mount else "needed")
    assert out.stdout.split() == (["filler"] if fill else [])  # no folder, no temporary, no half PNG


# --------------------------------------------------------------------------------------------
# Ctrl+C in train


@pytest.mark.slow
def test_ctrl_c_in_train_says_interrupted_and_where_the_checkpoint_is(tmp_path):
    """It exited 0 and printed "run folder" as if finished."""
    import json
    import signal

    pytest.importorskip("torch")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "desktop", "train", "tiny-pixel", "--out", str(run_dir),
                             "--steps", "100000", "--progress", "json", "--device", "cpu",
                             "--set", "training.sample_every=0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait for the first training step, then press Ctrl+C
            if json.loads(line).get("event") == "step":
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert_one_line(stderr.strip().splitlines(), "stopped with a checkpoint at", str(run_dir), "--resume")
    assert "Traceback" not in stderr and "run folder" not in stdout + stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "paused" and events[-1]["model"] is None
    assert events[-2]["event"] == "checkpoint" and events[-2]["reason"] == "interrupted"
    assert Path(events[-2]["path"]).is_file() and Path(events[-2]["path"]).is_relative_to(run_dir)


# --------------------------------------------------------------------------------------------
# Files follow the umask (they were 0600)


def test_generated_pngs_follow_the_umask(bundles, tmp_path):
    out = subprocess.run(["sh", "-c", f"umask 022; {sys.executable} -m desktop generate --model "
                                      f"{bundles['pixel_class']} --steps 2 --batch 2 --out {tmp_path / 'o'} --quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [tmp_path / "o", *(tmp_path / "o").iterdir()]}
    assert modes == {"o": "0o755", "pixel_class-0.png": "0o644", "pixel_class-1.png": "0o644"}
