"""Bundles that name the providers their graphs run on (studio.json "providers"), the fallback
sentence, and the manifest field itself."""
import dataclasses
import json
import shutil

import pytest

from desktop.runtime import manifest as manifest_mod
from desktop.runtime import providers
from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import BundleError, read_manifest, write_manifest


def with_providers(bundles, tmp_path, names):
    path = tmp_path / "b"
    shutil.copytree(bundles["pixel_class"], path)
    m = read_manifest(path)
    write_manifest(path, dataclasses.replace(m, providers=tuple(names)))
    return path


def cuda_loads(bundles) -> bool:
    return open_bundle(bundles["pixel_class"]).provider == providers.CUDA


def test_providers_are_written_with_format_version_2(bundles, tmp_path):
    path = with_providers(bundles, tmp_path, ["cpu", "cuda"])
    data = json.loads((path / "studio.json").read_text())
    assert data["providers"] == ["cpu", "cuda"] and data["format_version"] == 2
    plain = json.loads((bundles["pixel_class"] / "studio.json").read_text())
    assert plain["providers"] is None and plain["format_version"] == 1
    assert open_bundle(path, provider="cpu").provider == providers.CPU


@pytest.mark.parametrize("value", ["cpu", [], ["cpu", "cpu"], ["warp"], [1]])
def test_bad_providers_field(bundles, tmp_path, value):
    path = with_providers(bundles, tmp_path, ["cpu"])
    data = json.loads((path / "studio.json").read_text())
    data["providers"] = value
    (path / "studio.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="field 'providers' must be") as e:
        open_bundle(path, verify=False)
    assert e.value.field == "providers"


def test_a_cpu_bundle_refuses_a_forced_gpu(bundles, tmp_path):
    path = with_providers(bundles, tmp_path, ["cpu"])
    with pytest.raises(providers.ProviderError, match="optimised for cpu and cannot run on cuda"):
        open_bundle(path, provider="cuda")
    assert open_bundle(path).provider == providers.CPU  # auto picks among the bundle's providers


def test_a_cuda_bundle_without_cuda_says_so_in_one_sentence(bundles, tmp_path):
    if cuda_loads(bundles):
        pytest.skip("CUDA really loads here")
    path = with_providers(bundles, tmp_path, ["cuda"])
    with pytest.raises(providers.ProviderError) as e:
        open_bundle(path)
    text = str(e.value)
    assert "optimised for cuda" in text and "export the model again" in text and "\n" not in text
    with pytest.raises(providers.ProviderError, match="cannot run on cpu"):
        open_bundle(path, provider="cpu")


def test_fallback_note_names_the_provider_that_did_not_load(monkeypatch):
    monkeypatch.setattr(providers, "_failed", {providers.CUDA: "has too little free memory (2.0 GiB, needs 5.1)"})
    assert providers.fallback_note(providers.CPU) == "CUDA has too little free memory (2.0 GiB, needs 5.1): running on cpu"
    assert providers.fallback_note(providers.CPU, allowed=[providers.CPU]) is None
    assert providers.fallback_note(providers.CUDA) is None


def test_every_manifest_provider_name_is_one_users_can_type():
    assert set(manifest_mod.EXECUTION_PROVIDERS) <= set(providers.ALIASES)


def test_cuda_libraries_are_preloaded_once_and_silently_where_a_gpu_shows(bundles, monkeypatch, capsys):
    import warnings

    calls = []

    def fake_preload():
        calls.append(1)
        print("Failed to load libcudnn.so.9: not found")
        warnings.warn("Failed to register bundled CUDA plugin EP")

    monkeypatch.setattr(providers.ort, "preload_dlls", fake_preload, raising=False)
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [providers.CUDA, providers.CPU])
    monkeypatch.setattr(providers, "_cuda_preload", {})
    monkeypatch.setattr(providers, "_failed", {})
    monkeypatch.setattr(providers, "nvidia_gpu_visible", lambda: False)
    open_bundle(bundles["pixel_class"])
    assert calls == [] and providers.preload_cuda_libraries() is None  # no GPU shows: nothing loaded
    monkeypatch.setattr(providers, "nvidia_gpu_visible", lambda: True)
    monkeypatch.setattr(providers, "_failed", {})  # the first attempt's CUDA did not load: forgotten
    open_bundle(bundles["pixel_class"])
    open_bundle(bundles["pixel_gray"])
    assert calls == [1]  # once per process
    assert "libcudnn.so.9" in providers.preload_cuda_libraries() and "plugin EP" in providers.preload_cuda_libraries()
    assert calls == [1]  # asking again reads what the one call printed
    out = capsys.readouterr()
    assert "Failed" not in out.out + out.err
