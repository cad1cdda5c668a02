"""The app opens on the preferred bundled model (PREFERRED_MODELS), not on the alphabetically first."""
import json

from desktop.runtime import paths


def _fake_bundle(folder):
    folder.mkdir(parents=True)
    (folder / "studio.json").write_text(json.dumps({"name": folder.name}))


def test_bundled_models_come_in_preferred_order(tmp_path, monkeypatch):
    for name in ["aardvark", "digits", "landscapes", "shapes"]:
        _fake_bundle(tmp_path / "bundled" / name)
    monkeypatch.setattr(paths, "bundled_models_dir", lambda: tmp_path / "bundled")
    monkeypatch.setattr(paths, "user_models_dir", lambda: tmp_path / "user")
    assert [p.name for p in paths.list_models()] == ["landscapes", "shapes", "digits", "aardvark"]


def test_the_app_lists_the_same_order(tmp_path):
    from desktop.ui.model import find_model_folders

    for name in ["aardvark", "digits", "landscapes"]:
        _fake_bundle(tmp_path / name)
    assert [p.name for p in find_model_folders(tmp_path)] == ["landscapes", "digits", "aardvark"]


def test_the_shipped_default_is_a_bundled_model():
    shipped = [p.name for p in paths.list_models() if p.parent == paths.bundled_models_dir()]
    assert shipped and shipped[0] in paths.PREFERRED_MODELS
