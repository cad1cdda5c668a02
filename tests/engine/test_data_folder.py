"""engine.data.folder: image folders with classes, captions, masks and label maps."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import DataError, ImageFolderDataset

pytestmark = pytest.mark.slow  # PyTorch: the data sets give tensors

torch.set_num_threads(1)


def save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **kw)
    return path


def solid(rgb, h=8, w=8):
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def test_bad_files_are_skipped_with_a_warning_naming_them(tmp_path):
    good = [save(tmp_path / "a" / "ok.png", solid((255, 0, 0))),
            save(tmp_path / "b" / "ok.jpg", solid((0, 255, 0))),
            save(tmp_path / "b" / "ok.webp", solid((0, 0, 255)))]
    full = save(tmp_path / "tmp" / "big.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3)))
    truncated = tmp_path / "a" / "truncated.png"
    truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    full.unlink()
    (tmp_path / "tmp").rmdir()
    fake = tmp_path / "a" / "notes.png"
    fake.write_text("this is not an image")
    empty = tmp_path / "b" / "empty.jpg"
    empty.write_bytes(b"")
    (tmp_path / "a" / "readme.md").write_text("ignored: not an image suffix")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    for bad in (truncated, fake, empty):
        assert str(bad) in messages
    assert sorted(s.path for s in ds.skipped) == sorted([truncated, fake, empty])
    assert sorted(ds.files) == sorted(good)
    assert ds.classes == ["a", "b"]
    assert sorted(ds[i]["class"] for i in range(len(ds))) == [0, 1, 1]


def test_classes_come_from_the_first_subfolder_and_captions_from_txt(tmp_path):
    save(tmp_path / "zebra" / "deep" / "deeper" / "x.png", solid((10, 10, 10)))
    save(tmp_path / "apple" / "y.png", solid((20, 20, 20)))
    (tmp_path / "apple" / "y.txt").write_text("  a red apple\n", encoding="utf-8")
    save(tmp_path / "loose.png", solid((30, 30, 30)))
    save(tmp_path / ".hidden" / "h.png", solid((40, 40, 40)))
    ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["apple", "zebra"]
    by_name = {p.name: ds[i] for i, p in enumerate(ds.files)}
    assert set(by_name) == {"x.png", "y.png", "loose.png"}
    assert by_name["x.png"]["class"] == 1 and by_name["x.png"]["caption"] == ""
    assert by_name["y.png"]["class"] == 0 and by_name["y.png"]["caption"] == "a red apple"
    assert by_name["loose.png"]["class"] == -1
    assert "mask" not in by_name["y.png"] and "labels" not in by_name["y.png"]


def test_pixels_map_to_minus_one_one(tmp_path):
    a = np.zeros((4, 4, 3), np.uint8)
    a[:, 2:] = 255
    save(tmp_path / "bw.png", a)
    x = ImageFolderDataset(tmp_path)[0]["image"]
    assert x.dtype == torch.float32 and x.shape == (3, 4, 4)
    assert torch.all(x[:, :, :2] == -1) and torch.all(x[:, :, 2:] == 1)


def test_sidecars_are_not_images_and_crop_flip_keep_them_aligned(tmp_path):
    """Image colour encodes the label, so any misalignment after crop + flip shows."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (16, 24)).astype(np.uint8)
    palette = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)], np.uint8)
    save(tmp_path / "c" / "img.png", palette[labels])
    save(tmp_path / "c" / "img.labels.png", labels)
    save(tmp_path / "c" / "img.mask.png", (labels == 1) * 255)
    ds = ImageFolderDataset(tmp_path, size=16, crop="random", flip=True)
    assert len(ds) == 1 and ds.has_labels and ds.has_masks
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        item = ds[0]
        lab, img, mask = item["labels"], item["image"], item["mask"]
        assert lab.dtype == torch.int64 and lab.shape == (16, 16)
        assert mask.shape == (1, 16, 16) and img.shape == (3, 16, 16)
        expected = torch.from_numpy(palette[lab.numpy()]).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.equal(img, expected)
        assert torch.equal(mask[0], (lab == 1).float())
        seen.add(lab.numpy().tobytes())
    assert len(seen) > 4  # crops and flips really vary


def test_nearest_resize_keeps_label_values_valid(tmp_path):
    labels = np.zeros((40, 40), np.uint8)
    labels[:20, :20], labels[20:, :] = 3, 7
    img = np.zeros((40, 40, 3), np.uint8)
    img[labels == 3] = (200, 0, 0)
    img[labels == 7] = (0, 200, 0)
    save(tmp_path / "x.png", img)
    lab = Image.fromarray(labels).convert("P")
    lab.putpalette([0, 0, 0] * 3 + [255, 0, 0] + [0, 0, 0] * 3 + [0, 255, 0] + [0] * (768 - 24))
    lab.save(tmp_path / "x.labels.png")  # a palette PNG: the index is the label
    item = ImageFolderDataset(tmp_path, size=13)[0]
    out = item["labels"].numpy()
    assert set(np.unique(out)) == {0, 3, 7}
    red = item["image"][0].numpy() > 0.2
    assert (red[out == 3]).mean() > 0.9 and (~red[out != 3]).mean() > 0.9


def test_grayscale_and_tiny_images_are_upscaled(tmp_path):
    save(tmp_path / "tiny.png", solid((255, 0, 0), h=3, w=5))
    ds = ImageFolderDataset(tmp_path, size=12, channels=1)
    x = ds[0]["image"]
    assert x.shape == (1, 12, 12)
    gray = np.asarray(Image.fromarray(solid((255, 0, 0))).convert("L"))[0, 0]
    assert torch.allclose(x, torch.full_like(x, gray / 127.5 - 1), atol=1e-6)
    assert ImageFolderDataset(tmp_path, size=12)[0]["image"].shape == (3, 12, 12)


def test_mismatched_or_rgb_label_map_skips_the_item(tmp_path):
    save(tmp_path / "good.png", solid((1, 2, 3)))
    save(tmp_path / "rgb.png", solid((1, 2, 3)))
    save(tmp_path / "rgb.labels.png", solid((1, 2, 3)))
    save(tmp_path / "small.png", solid((1, 2, 3)))
    save(tmp_path / "small.mask.png", np.zeros((4, 4), np.uint8))
    with pytest.warns(UserWarning) as record:
        ds = ImageFolderDataset(tmp_path)
    assert [p.name for p in ds.files] == ["good.png"]
    text = " ".join(str(r.message) for r in record)
    assert "rgb.labels.png" in text and "mode RGB" in text and "small.mask.png" in text


def test_empty_or_all_bad_folder_is_a_data_error_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        ImageFolderDataset(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="a.png"), pytest.raises(DataError, match="none readable"):
        ImageFolderDataset(bad)
    with pytest.raises(DataError, match="not a folder"):
        ImageFolderDataset(tmp_path / "missing")
    assert issubclass(DataError, ValueError)


def test_batches_with_a_dataloader(tmp_path):
    for i in range(5):
        save(tmp_path / ("even" if i % 2 == 0 else "odd") / f"{i}.png", solid((i * 50, 0, 0), 20, 30))
        (tmp_path / ("even" if i % 2 == 0 else "odd") / f"{i}.txt").write_text(f"number {i}")
    loader = torch.utils.data.DataLoader(ImageFolderDataset(tmp_path, size=8), batch_size=5)
    batch = next(iter(loader))
    assert batch["image"].shape == (5, 3, 8, 8)
    assert sorted(batch["caption"]) == [f"number {i}" for i in range(5)]
    assert sorted(batch["class"].tolist()) == [0, 0, 0, 1, 1]
