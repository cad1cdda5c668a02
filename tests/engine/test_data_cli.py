"""`diffusion-studio make-dataset` writes folders that ImageFolderDataset reads back unchanged."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import ImageFolderDataset, landscapes, shapes
from engine.data.cli import main

pytestmark = pytest.mark.slow  # PyTorch: the data sets give tensors

torch.set_num_threads(1)


def test_shapes_round_trip(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["shapes", str(out), "--count", "12", "--seed", "4", "--size", "32"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"], "no temporary folder left behind"
    info = json.loads((out / "dataset.json").read_text())
    assert info["classes"] == list(shapes.SHAPES) and info["size"] == 32
    assert [lab["name"] for lab in info["labels"]] == [n for n, _ in shapes.LABELS]
    scenes = {s["file"]: s for s in map(json.loads, (out / "scenes.jsonl").read_text().splitlines())}
    assert len(scenes) == 12

    ds = ImageFolderDataset(out)
    assert len(ds) == 12 and not ds.skipped and ds.has_labels
    assert ds.info["seed"] == 4
    for i, path in enumerate(ds.files):
        rel = path.relative_to(out).as_posix()
        scene, item = scenes[rel], ds[i]
        expected = shapes.make_item(4, scene["index"], size=32)
        assert ds.classes[item["class"]] == scene["objects"][0]["shape"] == path.parent.name
        assert item["caption"] == scene["caption"] == expected.caption
        assert np.array_equal(item["labels"].numpy(), expected.labels)
        pixels = np.rint((item["image"].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        assert np.array_equal(pixels, expected.image)
    # the label map is a viewable palette PNG painted with LABELS' colours
    with Image.open(ds.files[0].with_name(ds.files[0].stem + ".labels.png")) as im:
        assert im.mode == "P" and im.getpalette()[3:6] == list(shapes.LABELS[1][1])


def test_landscapes_and_digits_round_trip(tmp_path):
    assert main(["landscapes", str(tmp_path / "land"), "--count", "6"]) == 0
    ds = ImageFolderDataset(tmp_path / "land", size=32)
    assert set(ds.classes) <= set(landscapes.LAYOUTS) and ds[0]["labels"].max() < len(landscapes.LABELS)
    assert main(["digits", str(tmp_path / "digits"), "--count", "25"]) == 0
    ds = ImageFolderDataset(tmp_path / "digits", channels=1)
    assert ds.classes == [str(d) for d in range(10)]
    for i in range(len(ds)):
        assert ds.classes[ds[i]["class"]] in ds[i]["caption"]
    assert ds[0]["image"].shape == (1, 16, 16)


def test_user_errors_are_one_line_and_return_2(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["shapes", str(busy), "--count", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(busy) in err and "not empty" in err
    assert (busy / "keep.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1

    assert main(["digits", str(tmp_path / "d"), "--count", "5000"]) == 2
    assert "1797" in capsys.readouterr().err
    assert main(["shapes", str(tmp_path / "s"), "--count", "0"]) == 2
    assert main(["shapes", str(tmp_path / "no" / "such" / "s"), "--count", "1"]) == 2
    assert main(["cats", str(tmp_path / "c")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"], "nothing written on errors"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["shapes", str(empty), "--count", "2", "--include-held-out"]) == 0
    assert json.loads((empty / "dataset.json").read_text())["includes_held_out"] is True
