"""The one pipeline: inputs of every kind, batching by size, maps on each image, masks and
metrics, the one record schema — and export built on the same pieces."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from camkit.data.inputs import Input
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.records import flat_row, raw_arrays, record
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings, settings_tag


@pytest.fixture
def classifier(model):
    from camkit.models.resnet import ModelInfo

    info = ModelInfo("resnet50", 2048, 10, tuple(f"c{i}" for i in range(10)), input_size=64)
    return model, info


@pytest.fixture
def folder(tmp_path):
    """p/same.png and q/same.png (70×90) with masks of the same names."""
    rng = np.random.default_rng(0)
    for sub in ("p", "q"):
        (tmp_path / "images" / sub).mkdir(parents=True)
        (tmp_path / "masks" / sub).mkdir(parents=True)
        image = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "images" / sub / "same.png"), image)
        mask = np.zeros((70, 90), np.uint8)
        mask[10:40, 20:60] = 255
        cv2.imwrite(str(tmp_path / "masks" / sub / "same.png"), mask)
    return tmp_path


def test_results_match_the_explainer_on_each_image(classifier, folder):
    from camkit.data.images import preprocess, read_image
    from camkit.explainer import Explainer

    model, info = classifier
    results = list(explain_images(model, info, folder / "images", Settings(targets="top-2")))
    assert [r.key for r in results] == ["p/same.png", "q/same.png"]
    image = read_image(folder / "images" / "q" / "same.png")
    expected = Explainer(model)(preprocess(image, 64), "top-2")
    close = {"rtol": 1e-5, "atol": 1e-4}  # a batch of two vs one: float rounding only
    torch.testing.assert_close(results[1].heatmaps.maps, expected.maps, **close)
    torch.testing.assert_close(results[1].maps, expected.on_image((70, 90), index=0), **close)
    assert results[1].heatmaps.align == "rf" and results[1].heatmaps.geometry == expected.geometry
    assert results[1].maps.shape == (2, 70, 90) and results[1].mask is None


def test_masks_metrics_and_the_record_schema(classifier, folder):
    model, info = classifier
    settings = Settings(size=64).resolved(model, info)
    masks = MaskSource(folder=folder / "masks")
    first, _ = explain_images(model, info, folder / "images", settings, masks)
    assert first.mask.shape == (70, 90) and first.metrics["mask_share"] == pytest.approx(
        1200 / 6300
    )
    entry = record(first, info, settings)
    assert entry["status"] == "ok" and entry["input"].endswith("same.png")
    assert {"predictions", "targets", "metrics", "layer", "method", "path", "output_stride",
            "smoothing", "fusion", "autocast", "input_size", "image_size"} <= set(entry)  # fmt: skip
    assert entry["image_size"] == [70, 90] and entry["input_size"] == [64, 64]
    json.dumps(entry)  # plain JSON values
    arrays = raw_arrays(first, settings)
    assert arrays["maps"].dtype == np.float32 and str(arrays["key"]) == "p/same.png"
    row = flat_row(entry)
    assert row["class_id"] == entry["targets"][0]["class_id"] and "pointing_game" in row


def test_the_mask_policy_is_the_same_everywhere(classifier, folder, tmp_path):
    model, info = classifier
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((30, 20), np.uint8))
    one = [folder / "images" / "p" / "same.png"]
    (result,) = explain_images(model, info, one, None, MaskSource(file=small))
    assert "20×30 but image" in result.error and "--resize-mask" in result.error
    (result,) = explain_images(model, info, one, None, MaskSource(file=small, resize=True))
    assert result.ok and result.mask.shape == (70, 90)
    arrays = [Input("a", image=np.zeros((40, 40, 3), np.uint8), mask=np.ones((20, 20), bool))]
    (result,) = explain_images(model, info, arrays)
    assert "20×20 but image" in result.error
    # one file's key is its name: masks/same.* is looked for, masks/q/same.png found
    (result,) = explain_images(model, info, one, None, MaskSource(folder=folder / "masks"))
    assert "no mask for same.png" in result.error and str(folder / "masks") in result.error
    (result,) = explain_images(model, info, one, None, MaskSource(folder=folder / "masks" / "q"))
    assert result.ok


def test_bad_inputs_fail_alone_and_in_order(classifier, folder, tmp_path):
    model, info = classifier
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    tiny = np.zeros((10, 12, 3), np.uint8)
    paths = [folder / "images" / "p" / "same.png", broken, folder / "images" / "q" / "same.png"]
    results = list(explain_images(model, info, paths))
    assert [r.ok for r in results] == [True, False, True] and "cannot decode" in results[1].error
    (native,) = explain_images(model, info, [tiny], Settings(size=0))
    assert "smaller than one cell" in native.error  # only at native size
    (resized,) = explain_images(model, info, [tiny])
    assert resized.ok and resized.maps.shape[-2:] == (10, 12)


def test_native_size_batches_images_of_each_size(classifier):
    model, info = classifier
    images = [np.full((64, 64, 3), 9, np.uint8), np.full((96, 64, 3), 9, np.uint8)]
    results = list(explain_images(model, info, images, Settings(size=0)))
    assert [r.heatmaps.input_size for r in results] == [(64, 64), (96, 64)]
    assert [tuple(r.heatmaps.maps.shape[-2:]) for r in results] == [(2, 2), (3, 2)]


def test_settings_are_checked_once_before_any_image(classifier):
    model, info = classifier
    with pytest.raises(ValueError, match="class 12 is out of range"):
        next(explain_images(model, info, [np.zeros((64, 64, 3), np.uint8)], Settings(targets=[12])))
    with pytest.raises(ValueError, match="needs several layers"):
        Settings(fusion="max").resolved(model, info)
    fused = Settings(layer="layer4.2,layer3.5").resolved(model, info)
    assert fused.fusion == "mean"
    (result,) = explain_images(model, info, [np.zeros((64, 64, 3), np.uint8)], fused)
    assert result.heatmaps.fusion == "mean" and record(result, info, fused)["fusion"] == "mean"


def test_settings_tags_keep_outputs_of_different_settings_apart():
    tags = {
        settings_tag(Settings(layer="layer4.2", **options), "layer4.2", 224)
        for options in (
            {},
            {"eigen_smooth": True},
            {"output_stride": 16},
            {"targets": [3]},
            {"targets": "top-3"},
            {"size": 448},
            {"size": 0},
            {"aug_smooth": True},
        )
    }
    assert len(tags) == 8 and settings_tag(Settings(layer="layer4.2"), "layer4.2", 224) == "gradcam"
    assert settings_tag(Settings(layer="layer3.5"), "layer4.2") == "gradcam@layer3.5"
