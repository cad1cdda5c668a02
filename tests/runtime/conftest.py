import pytest

from tests.helpers.tiny_bundles import make_bundle


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """Paths of tiny bundles of every kind (made once; tests that damage one copy it first)."""
    root = tmp_path_factory.mktemp("bundles")
    return {
        "pixel_class": make_bundle(root / "pixel_class", "pixel", "class"),
        "pixel_gray": make_bundle(root / "pixel_gray", "pixel", None, channels=1),
        "latent_text": make_bundle(root / "latent_text", "latent", "text", size=16),
        "pixel_inpaint": make_bundle(root / "pixel_inpaint", "pixel", "inpaint"),
        "latent_inpaint": make_bundle(root / "latent_inpaint", "latent", "inpaint", size=16),
        "pixel_semantic": make_bundle(root / "pixel_semantic", "pixel", "semantic"),
    }
