"""camkit evaluate: the data folder positional or as --data, and progress lines."""

import json
import logging

import pytest

from camkit.cli import build_parser
from camkit.cli.common import data_folder
from camkit.data.shapes import write_dataset
from tests.cli.helpers import one_line_error, run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("evaluate") / "d", 4, 64, seed=2)


def test_data_folder_positional_or_option(capsys, caplog, monkeypatch, tmp_path, data, checkpoint):
    import camkit.progress

    monkeypatch.setattr(camkit.progress, "MIN_INTERVAL", 0.0)
    common = ["--weights", checkpoint, "--methods", "gradcam,eigencam", "--n", 2, "--steps", 2]
    with caplog.at_level(logging.INFO, logger="camkit.progress"):
        code, out, err = run(capsys, "evaluate", data, *common, "--out", tmp_path / "a")
    assert code == 0, err
    assert "eigencam" in out and (tmp_path / "a" / "methods.csv").exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "camkit.progress"]
    assert lines[0].startswith("evaluate: 1/2 method (50%)") and "done in" in lines[-1]
    # --data DIR (the README's spelling) and DIR --data DIR name the same folder
    for argv in (["--data", data], [data, "--data", data]):
        args = build_parser().parse_args(["evaluate", *map(str, argv)])
        assert data_folder(args) == data


def test_data_folder_given_twice_or_not_at_all(capsys, tmp_path, data, checkpoint):
    code, _, err = run(capsys, "evaluate", data, "--data", tmp_path, "--weights", checkpoint)
    one_line_error(code, err, "two data folders")
    code, _, err = run(capsys, "evaluate", "--weights", checkpoint)
    one_line_error(code, err, "pass the data folder: camkit evaluate DIR (or --data DIR)")


def test_methods_come_from_the_registry(capsys, data, checkpoint):
    code, _, err = run(capsys, "evaluate", data, "--weights", checkpoint, "--methods", "fcn")
    one_line_error(code, err, "unknown ['fcn']", "gradcam")


def test_a_method_named_twice_is_evaluated_once(capsys, tmp_path, data, checkpoint):
    code, out, err = run(capsys, "evaluate", data, "--weights", checkpoint, "--methods",
                         "gradcam, gradcam,eigencam", "--n", 1, "--steps", 2, "--json",
                         "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    assert [row["method"] for row in json.loads(out)] == ["gradcam", "eigencam"]


def test_road_columns_and_align_reach_the_rows(capsys, tmp_path, data, checkpoint):
    import json

    common = ["--weights", checkpoint, "--methods", "gradcam,gradcam-elementwise", "--n", 2]
    code, out, err = run(capsys, "evaluate", data, *common, "--steps", 2, "--road", "--json",
                         "--out", tmp_path / "r")  # fmt: skip
    assert code == 0, err
    rows = {row["method"]: row for row in json.loads(out)}
    for row in rows.values():
        assert {"road_morf", "road_lerf", "road_combined"} <= set(row)
        assert row["road_combined"] == pytest.approx((row["road_lerf"] - row["road_morf"]) / 2)
    code, text, err = run(capsys, "evaluate", data, *common, "--steps", 2, "--road",
                          "--out", tmp_path / "t")  # fmt: skip
    assert code == 0 and "ROAD" in text and "gradcam-elementwise" in text, err


def test_images_without_a_mask_are_counted_and_named(capsys, tmp_path, data, checkpoint):
    import json
    import shutil

    folder = tmp_path / "d"
    shutil.copytree(data, folder)
    sorted((folder / "masks").rglob("*.png"))[0].unlink()
    common = ["--weights", checkpoint, "--methods", "gradcam", "--n", 4, "--steps", 2]
    code, out, err = run(capsys, "evaluate", folder, *common, "--json", "--out", tmp_path / "o")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["images"] == 4 and row["masked_images"] == 3
    assert "note: 1 of 4 images have no mask in masks/" in err and "over the 3" in err
