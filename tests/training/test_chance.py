"""learned_nothing: validation no better than guessing says so, in one line naming both numbers."""

import math

import pytest

from camkit.training.chance import chance_margin, learned_nothing


def test_near_chance_accuracy_is_flagged_with_both_numbers():
    warning = learned_nothing(0.27, 1.52, classes=4, count=1000)
    assert warning is not None and "\n" not in warning
    assert "accuracy 0.270 vs chance 0.250" in warning
    assert f"loss 1.520 vs ln 4 = {math.log(4):.3f}" in warning
    assert "more epochs" in warning and "--pretrained imagenet" in warning and "labels" in warning


def test_a_uniform_guess_is_flagged_even_when_its_argmax_is_right():
    assert learned_nothing(0.80, math.log(4) * 1.02, classes=4, count=1000) is not None


@pytest.mark.parametrize(
    ("accuracy", "loss", "classes", "count"),
    [(0.90, 0.30, 4, 1000), (0.62, 0.60, 2, 1000), (0.40, 0.9, 10, 1000)],
)
def test_a_clear_lead_over_chance_is_not_flagged(accuracy, loss, classes, count):
    assert learned_nothing(accuracy, loss, classes, count) is None


def test_the_margin_grows_on_small_validation_sets():
    assert chance_margin(4, 10_000) == 0.05
    assert chance_margin(4, 12) == pytest.approx(math.sqrt(0.25 * 0.75 / 12))
    assert learned_nothing(0.33, 1.0, classes=4, count=12) is not None  # 4 of 12: luck
    assert learned_nothing(0.33, 1.0, classes=4, count=10_000) is None


def test_no_verdict_without_classes_or_images():
    assert learned_nothing(1.0, 0.0, classes=1, count=10) is None
    assert learned_nothing(0.0, 0.0, classes=4, count=0) is None
