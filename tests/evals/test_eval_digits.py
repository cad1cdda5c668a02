"""The digits judge, validated on real digits (the ground truth), never on a generator."""
import numpy as np
import pytest

from benchmarks.evals import digits


@pytest.fixture(scope="module")
def judge():
    return digits.load_judge()


@pytest.mark.slow  # fits the judge (scikit-learn) for seconds
def test_classifier_is_accurate_on_held_out_real_digits(judge):
    assert judge.heldout_accuracy >= 0.97
    assert len(judge.x_heldout) > 400 and not set(map(bytes, judge.x_heldout[:50])) & set(map(bytes, judge.x_train))


@pytest.mark.slow
def test_real_digits_score_perfectly_through_the_image_path(judge):
    # held-out digits rendered as a generator would show them: 16x16 RGB uint8, dark ink on white
    x = judge.x_heldout.reshape(-1, 8, 8) / 16.0
    big = np.kron(x, np.ones((2, 2)))
    rgb = (np.stack([1.0 - big] * 3, axis=-1) * 255).round().astype(np.uint8)
    np.testing.assert_allclose(digits.to_digit_levels(rgb), judge.x_heldout, atol=16 / 255 + 1e-9)
    scores = digits.score_digits(rgb, judge.y_heldout, judge)
    assert scores["accuracy"] >= 0.97
    assert min(scores["per_class"].values()) >= 0.9
    assert 0.8 <= scores["diversity"] <= 1.2
    assert scores["distinct_nn"] >= 0.8


@pytest.mark.slow
def test_frechet_is_small_for_real_and_large_for_noise(judge):
    real = digits.pca_frechet(judge, judge.x_heldout, judge.x_train)
    noise = np.random.default_rng(0).uniform(0, 16, size=judge.x_heldout.shape)
    fake = digits.pca_frechet(judge, noise, judge.x_train)
    assert real < 15 and fake > 20 * real
    # a single class against all digits is far too
    ones = judge.x_heldout[judge.y_heldout == 1]
    assert digits.pca_frechet(judge, ones, judge.x_train) > 5 * real


def test_frechet_distance_of_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 2))
    b = rng.normal(size=(20000, 2)) * 2.0 + np.array([3.0, 0.0])
    # |mu|^2 + Tr(I + 4I - 2 * 2I) = 9 + 2
    assert digits.frechet_distance(a, b) == pytest.approx(11.0, rel=0.05)


@pytest.mark.slow
def test_mode_collapse_is_caught(judge):
    # every sample of a class is the same real digit: labels right, diversity gone
    picks = np.array([np.flatnonzero(judge.y_heldout == c)[0] for c in range(10)])
    collapsed = np.repeat(judge.x_heldout[picks], 10, axis=0).reshape(-1, 8, 8) / 16.0
    labels = np.repeat(np.arange(10), 10)
    scores = digits.score_digits(collapsed, labels, judge)
    assert scores["accuracy"] == 1.0
    assert scores["diversity"] < 0.05
    assert scores["distinct_nn"] == pytest.approx(0.1)
    assert scores["frechet"] > digits.real_reference(10)["frechet"]


@pytest.mark.slow
def test_wrong_labels_lower_accuracy(judge):
    x = judge.x_heldout.reshape(-1, 8, 8) / 16.0
    scores = digits.score_digits(x, (judge.y_heldout + 1) % 10, judge)
    assert scores["accuracy"] < 0.05


def test_bad_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="expected images"):
        digits.to_digit_levels(np.zeros((4, 4)))


@pytest.mark.slow  # PyTorch: the training digits come from engine.data
def test_nearest_train_fraction_tells_copies_from_fresh_digits():
    train = digits.training_images(16).reshape(-1, 16, 16).astype(np.uint8)
    # copies of training digits sit closer to a training image than any fresh digit would
    assert digits.nearest_train_fraction(train[:100]) == 1.0
    # real digits, each measured without its own copy: about half, by construction of the threshold
    assert 0.4 <= digits.nearest_train_fraction(train, leave_one_out=True) <= 0.6
    # noise and blank images are far from every digit
    rng = np.random.default_rng(0)
    assert digits.nearest_train_fraction(rng.integers(0, 256, (50, 16, 16), dtype=np.uint8)) == 0.0
    # float images in 0..1 are read as 0..255
    assert digits.nearest_train_fraction(train[:20].astype(np.float32) / 255.0) == 1.0
