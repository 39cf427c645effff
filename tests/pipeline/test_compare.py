import csv
import json

import cv2
import numpy as np
import pytest

from camkit.cli import main
from camkit.data.shapes import write_dataset
from camkit.io.checkpoint import save_checkpoint
from camkit.viz.overlay import comparison_panel
from camkit.viz.plots import heatmap_grid


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from camkit.models.resnet import resnet50_variant
    from tests.conftest import perturb

    root = tmp_path_factory.mktemp("cmp")
    data = write_dataset(root / "data", 6, 64, seed=3)
    torch.manual_seed(0)
    model = perturb(resnet50_variant(2048, 4))
    checkpoint = save_checkpoint(
        root / "cls.ckpt",
        model.state_dict(),
        arch="resnet50",
        channels=2048,
        num_classes=4,
        class_names=["circle", "square", "star", "triangle"],
        input_size=64,
    )
    return root, data, checkpoint


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_one_image(setup, capsys, tmp_path):
    _root, data, checkpoint = setup
    image = data / "images" / "square" / "shape_00001.png"
    mask = data / "masks" / "square" / "shape_00001.png"
    code, out, err = run(
        capsys,
        "compare",
        image,
        "--mask",
        mask,
        "--weights",
        checkpoint,
        "--out",
        tmp_path / "o",
        "--json",
    )
    assert code == 0, err
    record = json.loads(out)["images"][0]["metrics"]  # the one record schema: metrics nested
    for key in (
        "pointing_game",
        "energy_in_mask",
        "iou@0.2",
        "iou_otsu",
        "auc",
        "pxap",
        "rank_accuracy",
    ):
        assert record[key] is None or 0.0 <= record[key] <= 1.0
    assert (tmp_path / "o" / "panels" / "shape_00001.compare.png").exists()
    # the metrics are those of the API on the same heatmap
    from camkit.data.folders import read_mask
    from camkit.data.images import read_image
    from camkit.metrics.localisation import heatmap_metrics
    from camkit.models.resnet import load_classifier
    from camkit.pipeline.compare import Comparer

    model, info = load_classifier(checkpoint)
    maps, _ = Comparer(model, info).heatmaps([read_image(image)])
    expected = heatmap_metrics(maps[0], read_mask(mask) > 0)
    assert record["pxap"] == pytest.approx(expected["pxap"]) and record["auc"] == pytest.approx(
        expected["auc"]
    )


def test_compare_folder_writes_csv_and_summary(setup, capsys, tmp_path):
    _root, data, checkpoint = setup
    code, out, err = run(
        capsys,
        "compare",
        data / "images",
        "--masks",
        data / "masks",
        "--weights",
        checkpoint,
        "--out",
        tmp_path / "o",
        "--class",
        2,
        "--panels",
        2,
    )
    assert code == 0, err
    assert "95% bootstrap CI" in out and "pxap" in out
    rows = list(csv.DictReader((tmp_path / "o" / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 6 and {r["class_id"] for r in rows} == {"2"}
    summary = list(csv.DictReader((tmp_path / "o" / "summary.csv").read_text().splitlines()))
    assert {"pointing_game", "energy_in_mask", "pxap"} <= {r["metric"] for r in summary}
    # panels are named from the images' relative paths (panels/<class>/<name>.compare.png)
    assert len(list((tmp_path / "o" / "panels").rglob("*.png"))) == 2


def test_compare_bad_inputs(setup, capsys, tmp_path):
    _root, data, checkpoint = setup
    image = data / "images" / "circle" / "shape_00000.png"
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((30, 20), np.uint8))
    code, _, err = run(
        capsys, "compare", image, "--mask", small, "--weights", checkpoint, "--out", tmp_path / "o"
    )
    assert code == 1 and "20×30 but image" in err and "--resize-mask" in err
    code, _, err = run(
        capsys,
        "compare",
        image,
        "--mask",
        small,
        "--weights",
        checkpoint,
        "--out",
        tmp_path / "o",
        "--resize-mask",
    )
    assert code == 0, err
    code, _, err = run(
        capsys,
        "compare",
        image,
        "--mask",
        tmp_path / "none.png",
        "--weights",
        checkpoint,
        "--out",
        tmp_path / "o",
    )
    assert code == 1 and "does not exist" in err
    code, _, err = run(
        capsys, "compare", data / "images", "--masks", tmp_path, "--weights", checkpoint
    )
    assert code == 1 and "no mask" in err
    code, _, err = run(
        capsys, "compare", image, "--mask", small, "--weights", checkpoint, "--class", 9
    )
    assert code == 1 and "out of range" in err
    code, _, err = run(capsys, "compare", image, "--weights", checkpoint)
    assert code == 2 and "one of the arguments" in err


def test_explain_with_mask(setup, capsys, tmp_path):
    _root, data, checkpoint = setup
    image = data / "images" / "triangle" / "shape_00002.png"
    mask = data / "masks" / "triangle" / "shape_00002.png"
    code, out, err = run(
        capsys,
        "explain",
        image,
        "--mask",
        mask,
        "--weights",
        checkpoint,
        "--out",
        tmp_path / "o",
        "--json",
    )
    assert code == 0, err
    assert 0 <= json.loads(out)[0]["metrics"]["energy_in_mask"] <= 1
    code, _, err = run(capsys, "explain", image, image, "--mask", mask, "--weights", checkpoint)
    assert code == 1 and "--mask goes with one image" in err


def test_comparison_panel_and_grid(rgb_image):
    heatmap = np.random.default_rng(0).random((80, 100))
    mask = np.zeros((80, 100), bool)
    mask[20:50, 30:70] = True
    panel = comparison_panel(rgb_image, heatmap, mask, {"pointing_game": 1.0, "auc": None})
    assert panel.shape[0] > 224 and panel.dtype == np.uint8
    with pytest.raises(ValueError, match="same size"):
        comparison_panel(rgb_image, heatmap[:10], mask, {})
    figure = heatmap_grid(
        [rgb_image, rgb_image],
        [[heatmap, heatmap], [heatmap * 2, heatmap]],
        ["gradcam", "fcn"],
        ["a", "b"],
        masks=[mask, None],
    )
    assert len(figure.axes) == 5  # 4 cells and the shared colorbar
    with pytest.raises(ValueError, match="rows"):
        heatmap_grid([rgb_image], [[heatmap]], ["one", "two"])
    with pytest.raises(ValueError, match="resample"):
        heatmap_grid([rgb_image], [[heatmap[:5]]], ["one"])


def test_format_table_aligns_numbers_and_missing_values():
    from camkit.io.tables import format_table

    text = format_table(
        [{"method": "gradcam", "pg": 1.0, "e": None}, {"method": "x", "pg": 0.25, "e": 3}]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["method", "pg", "e"]
    assert lines[1].split() == ["gradcam", "1.000", "n/a"] and lines[2].split() == [
        "x",
        "0.250",
        "3",
    ]
    assert len({len(line) for line in lines}) == 1  # aligned columns
