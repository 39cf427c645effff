"""evaluate_methods on the one pipeline: the same mask policy as compare, one row per method."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camkit.models.resnet import ModelInfo
from camkit.pipeline.compare import Comparer
from camkit.pipeline.evaluate import evaluate_methods


@pytest.fixture
def data(tmp_path):
    """images/a.png (64×80) with a mask of another size (32×40), images/b.png with none."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(
            str(tmp_path / "images" / f"{name}.png"),
            rng.integers(0, 255, (64, 80, 3), dtype=np.uint8),
        )
    mask = np.zeros((32, 40), np.uint8)
    mask[8:24, 10:30] = 255
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    return tmp_path


def test_compare_and_evaluate_apply_the_same_mask_policy(model, data):
    info = ModelInfo("resnet50", 2048, 10, tuple(f"c{i}" for i in range(10)), input_size=64)
    image, mask = data / "images" / "a.png", data / "masks" / "a.png"
    with pytest.raises(ValueError, match=r"40×32 but image .* is 80×64") as from_evaluate:
        evaluate_methods(model, info, data, ["gradcam"], steps=2)
    row, *_ = next(Comparer(model, info).compare([image], [mask]))
    assert row["status"] == "error" and row["error"] == str(from_evaluate.value)
    (row,) = evaluate_methods(model, info, data, ["gradcam"], steps=2, resize_mask=True)
    assert row["images"] == 2 and 0 <= row["energy_in_mask"] <= 1  # b has no mask: skipped
    compared, *_ = next(Comparer(model, info, resize_mask=True).compare([image], [mask]))
    assert compared["status"] == "ok"
