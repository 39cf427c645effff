"""The classifier's map next to the segmenter's own: metrics, the pipeline wiring, the panel, the CLI."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from camkit.data.images import preprocess
from camkit.metrics.localisation import (
    energy_in_mask,
    pointing_game,
    rank_correlation,
    top_region_iou,
)
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from camkit.models.resunet import ResUNet
from camkit.pipeline.masks import predict_masks
from camkit.pipeline.segmenter_maps import (
    SegmenterMaps,
    pair_metrics,
    pairs_figure,
    summary_table,
)
from camkit.regions import SegmenterExplainer
from tests.cli.helpers import one_line_error, run, save_segmenter, write_image, write_mask

INFO = {"input_size": 64, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
COLUMNS = {
    f"{name}_{metric}@{mask}"
    for name in ("classifier", "segmenter")
    for metric in ("pointing_game", "energy_in_mask")
    for mask in ("predicted", "true")
} | {"classifier_flat", "segmenter_flat", "agreement_spearman", "agreement_top20_iou",
     "predicted_mask_share", "segmenter_class_id"}  # fmt: skip


@pytest.fixture(scope="module")
def segmenter():
    """A random binary ResUNet whose head starts at p = 0.5, so its own masks are not empty."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ResUNet("unet", 1, encoder_channels=256, prior=0.5).eval()


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    images.append(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8))  # another size
    return images


def _masks(images):
    masks = []
    for image in images:
        mask = np.zeros(image.shape[:2], bool)
        mask[10:40, 20:50] = True
        masks.append(mask)
    return masks


def test_pair_metrics_are_camkits_metrics_on_the_two_maps():
    rng = np.random.default_rng(1)
    first, second = rng.random((40, 50)), rng.random((40, 50)) - 0.3
    predicted, truth = np.zeros((40, 50), bool), np.zeros((40, 50), bool)
    predicted[5:20, 5:30], truth[10:25, 10:35] = True, True
    out = pair_metrics(first, second, predicted, truth, tolerance=3.0, fraction=0.1)
    for name, heatmap in (("classifier", first), ("segmenter", second)):
        for mask_name, mask in (("predicted", predicted), ("true", truth)):
            hit = out[f"{name}_pointing_game@{mask_name}"]
            assert hit == float(pointing_game(heatmap, mask, 3.0))
            assert out[f"{name}_energy_in_mask@{mask_name}"] == energy_in_mask(heatmap, mask)
    assert out["agreement_spearman"] == rank_correlation(first, second)
    assert out["agreement_top10_iou"] == top_region_iou(first, second, 0.1)
    assert out["predicted_mask_share"] == pytest.approx(predicted.mean())
    assert out["classifier_flat"] == 0.0 and out["segmenter_flat"] == 0.0
    # no true mask: those columns are "not applicable"; a flat map is said to be flat
    alone = pair_metrics(first, np.zeros((40, 50)), predicted)
    assert alone["classifier_pointing_game@true"] is None
    assert alone["segmenter_energy_in_mask@true"] is None
    assert alone["segmenter_flat"] == 1.0 and alone["segmenter_pointing_game@predicted"] == 0.0
    assert alone["agreement_spearman"] is None  # undefined for a flat map, never NaN
    assert alone["agreement_top20_iou"] is None  # a flat map has no top region


def test_measure_explains_the_segmenter_on_each_image(segmenter, pictures):
    maps = SegmenterMaps(segmenter, INFO, layer="layer4", tolerance=5.0)
    rng = np.random.default_rng(2)
    classifier = [rng.random(image.shape[:2]).astype(np.float32) for image in pictures]
    truths = _masks(pictures)
    pairs = maps.measure(pictures, classifier, truths, keys=["a", "b", "c"])
    assert [p.key for p in pairs] == ["a", "b", "c"]
    # the segmenter's own Grad-CAM over its own mask, put on each image, as explained directly
    batch = preprocess(pictures, 64, IMAGENET_MEAN, IMAGENET_STD)
    direct = SegmenterExplainer(segmenter, "layer4")(batch)
    predicted = predict_masks(segmenter, INFO, pictures)
    for index, (pair, image) in enumerate(zip(pairs, pictures)):
        assert set(pair.metrics) == COLUMNS
        assert pair.segmenter_map.shape == pair.predicted_mask.shape == image.shape[:2]
        expected = direct.on_image(image.shape[:2], index=index)[0].numpy()
        np.testing.assert_allclose(pair.segmenter_map, expected, rtol=1e-4, atol=1e-6)
        assert np.array_equal(pair.predicted_mask, predicted[index][0] > 0)
        assert 0 < pair.predicted_mask.mean() < 1  # a non-trivial mask, so the test can fail
        assert pair.metrics == {
            **pair_metrics(
                classifier[index], pair.segmenter_map, pair.predicted_mask, truths[index], 5.0
            ),
            "segmenter_class_id": 0,
        }
    with pytest.raises(ValueError, match="one of each per image"):
        maps.measure(pictures, classifier[:2])


def test_measure_runs_the_segmenter_twice_a_batch(segmenter, pictures):
    """One plain pass (the region and the predicted masks) and the explained pass."""
    maps = SegmenterMaps(segmenter, INFO, layer="layer4")
    classifier = [np.ones(image.shape[:2], np.float32) for image in pictures]
    maps.measure(pictures, classifier)  # the first call also probes the layer's geometry
    calls = []
    handle = segmenter.register_forward_hook(lambda *_: calls.append(1))
    try:
        maps.measure(pictures, classifier)
    finally:
        handle.remove()
    assert len(calls) == 2


def test_follow_keeps_order_and_skips_failed_results(segmenter, pictures):
    from camkit.pipeline.run import Result

    maps = SegmenterMaps(segmenter, INFO)
    masks = _masks(pictures)

    def result(index):
        heat = torch.rand(1, *pictures[index].shape[:2])
        return Result(f"k{index}", None, pictures[index], maps=heat, order=[0], mask=masks[index])

    results = [result(0), Result("bad", None, error="corrupt"), result(1), result(2)]
    followed = list(maps.follow(iter(results), true_masks=True, batch_size=2))
    assert [r.key for r, _ in followed] == ["k0", "bad", "k1", "k2"]
    assert followed[1][1] is None
    for r, pair in (followed[0], followed[2], followed[3]):
        assert pair.key == r.key and np.array_equal(pair.true_mask, r.mask)
        np.testing.assert_array_equal(pair.classifier_map, r.maps[0].numpy())
    predicted_only = list(maps.follow(results[:1], true_masks=False))
    assert predicted_only[0][1].metrics["classifier_energy_in_mask@true"] is None


def test_compare_adds_the_columns_to_the_comparers_rows(checkpoint, segmenter, tmp_path):
    from camkit.data.images import read_image
    from camkit.models.resnet import load_classifier
    from camkit.pipeline.compare import Comparer

    paths, mask_paths = [], []
    for name in ("a", "b", "c"):
        paths.append(write_image(tmp_path / "images" / f"{name}.png", 64, 64, seed=ord(name)))
        mask_paths.append(write_mask(tmp_path / "masks" / f"{name}.png", 64, 64))
    model, info = load_classifier(checkpoint)
    comparer = Comparer(model, info)
    maps = SegmenterMaps(segmenter, INFO)
    out = list(maps.compare(comparer, paths, mask_paths, batch_size=2))
    rows = [row for row, _ in out]
    assert len(rows) == 3 and all(set(row) >= COLUMNS for row in rows)
    heatmaps, _ = comparer.heatmaps([read_image(p) for p in paths])
    for (row, pair), heat in zip(out, heatmaps):
        np.testing.assert_allclose(pair.classifier_map, heat, rtol=1e-5, atol=1e-7)
        # the Comparer's own metrics are against the true mask, as the @true columns
        assert row["energy_in_mask"] == pytest.approx(row["classifier_energy_in_mask@true"])
    table = summary_table(rows)
    assert [(t["map"], t["mask"]) for t in table] == [
        ("classifier", "predicted"), ("segmenter", "predicted"),
        ("classifier", "true"), ("segmenter", "true"),
    ]  # fmt: skip
    energies = [row["segmenter_energy_in_mask@true"] for row in rows]
    assert table[3]["energy_in_mask"] == pytest.approx(np.mean(energies))
    figure = pairs_figure([pair for _, pair in out])
    assert len(figure.axes) == 3 * 3 + 1  # three cells per image and the colorbar
    without_truth = [row for row, _ in maps.compare(comparer, paths)]
    assert all(row["classifier_pointing_game@true"] is None for row in without_truth)
    assert [t["mask"] for t in summary_table(without_truth)] == ["predicted", "predicted"]


def test_map_pair_grid_refuses_maps_of_another_size(rgb_image, tmp_path):
    from camkit.viz.plots import map_pair_grid, save_figure

    heat = np.random.default_rng(0).random(rgb_image.shape[:2])
    mask = heat > 0.5
    with pytest.raises(ValueError, match="resample maps and masks"):
        map_pair_grid([rgb_image], [heat], [heat[:10]], [mask])
    with pytest.raises(ValueError, match="one of each per image"):
        map_pair_grid([rgb_image], [heat, heat], [heat], [mask])
    figure = map_pair_grid([rgb_image], [heat], [np.zeros_like(heat)], [mask], [None])
    assert len(figure.axes) == 4
    written = cv2.imread(str(save_figure(tmp_path / "pair.png", figure)))
    assert written is not None and written.shape[1] > written.shape[0]


@pytest.fixture(scope="module")
def segmenter_file(tmp_path_factory, segmenter):
    return save_segmenter(tmp_path_factory.mktemp("seg") / "seg.ckpt", segmenter)


@pytest.fixture
def folder(tmp_path):
    from tests.cli.helpers import write_images_and_masks

    return write_images_and_masks(tmp_path)


def test_compare_segmenter_maps_writes_columns_and_the_panel(capsys, folder, segmenter_file):
    out = folder / "o"
    code, stdout, err = run(capsys, "compare", folder / "images", "--masks", folder / "masks",
                            "--segmenter-maps", segmenter_file, "--weights", "none",
                            "--size", 64, "--out", out)  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 2 and set(rows[0]) >= COLUMNS
    assert all(row["segmenter_energy_in_mask@true"] != "" for row in rows)
    summary = {r["metric"] for r in csv.DictReader((out / "summary.csv").read_text().splitlines())}
    assert {"segmenter_pointing_game@predicted", "agreement_spearman"} <= summary
    assert (out / "segmenter-maps.png").stat().st_size > 0
    assert "classifier's and segmenter's maps" in stdout
    # with --segmenter the masks are its own: no true-mask columns, the same panel
    code, stdout, err = run(capsys, "compare", folder / "images" / "a.png", "--segmenter",
                            segmenter_file, "--segmenter-maps", "--segmenter-layer", "layer3",
                            "--weights", "none", "--size", 64, "--json", "--out", folder / "p")  # fmt: skip
    assert code == 0, err
    own = json.loads(stdout)["images"][0]["segmenter_maps"]
    assert own["segmenter_pointing_game@true"] is None and own["segmenter_class_id"] == 0
    assert (folder / "p" / "segmenter-maps.png").exists()


def test_compare_segmenter_maps_bad_input(capsys, folder, segmenter_file):
    image, mask = folder / "images" / "a.png", folder / "masks" / "a.png"
    common = ["compare", image, "--weights", "none", "--size", 64, "--out", folder / "o"]
    code, _, err = run(capsys, *common, "--mask", mask, "--segmenter-maps")
    one_line_error(code, err, "--segmenter-maps needs a segmenter", "--segmenter CKPT")
    code, _, err = run(capsys, *common, "--segmenter", segmenter_file, "--segmenter-maps",
                       segmenter_file)  # fmt: skip
    one_line_error(code, err, "give the segmenter once")
    code, _, err = run(capsys, *common, "--mask", mask, "--segmenter-layer", "layer3")
    one_line_error(code, err, "--segmenter-layer goes with --segmenter-maps")
    code, _, err = run(capsys, *common, "--mask", mask, "--segmenter-maps", segmenter_file,
                       "--segmenter-layer", "layer9")  # fmt: skip
    one_line_error(code, err, "unknown layer 'layer9'")
    code, _, err = run(capsys, *common, "--mask", mask, "--segmenter-maps", segmenter_file,
                       "--method", "scorecam")  # fmt: skip
    one_line_error(code, err, "--method scorecam", "--segmenter-method gradcam")
    code, _, err = run(capsys, *common, "--mask", mask, "--segmenter-maps", folder / "none.ckpt")
    one_line_error(code, err, "none.ckpt")
