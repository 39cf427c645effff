"""camkit compare: the shared flags (--class, --size, masks) and its progress lines."""

import json
import logging

import pytest

from tests.cli.helpers import one_line_error, run, write_image, write_images_and_masks, write_mask


@pytest.fixture
def folder(tmp_path):
    """images/{a,b}.png (64×64) and masks/{a,b}.png."""
    return write_images_and_masks(tmp_path)


def test_class_takes_one_id_and_refuses_several(capsys, tmp_path, folder):
    image, mask = folder / "images" / "a.png", folder / "masks" / "a.png"
    common = ["compare", image, "--mask", mask, "--weights", "none", "--out", tmp_path / "o"]
    code, out, err = run(capsys, *common, "--class", 7, "--json", "--size", 64)
    assert code == 0, err
    assert json.loads(out)["images"][0]["targets"][0]["class_id"] == 7
    code, _, err = run(capsys, *common, "--class", 7, 8)
    one_line_error(code, err, "one class per image", "--class 7 8")
    code, _, err = run(capsys, *common, "--topk", 2)
    assert code == 2 and "unrecognized arguments" in err


def test_size_takes_the_shared_parser(capsys, tmp_path, folder):
    image, mask = folder / "images" / "a.png", folder / "masks" / "a.png"
    common = ["compare", image, "--mask", mask, "--weights", "none", "--out", tmp_path / "o"]
    code, _, err = run(capsys, *common, "--size", "64x96")
    assert code == 0, err
    code, _, err = run(capsys, "compare", folder / "images", "--masks", folder / "masks",
                       "--weights", "none", "--size", 0, "--out", tmp_path / "native")  # fmt: skip
    assert code == 0, err  # each image at its own size, as in explain and export
    code, _, err = run(capsys, *common, "--size", "-3")
    assert code == 2 and "invalid size" in err


def test_segmenter_runs_beside_the_classifier(capsys, tmp_path, folder, segmenter_checkpoint):
    code, out, err = run(capsys, "compare", folder / "images", "--segmenter",
                         segmenter_checkpoint, "--weights", "none", "--size", 64, "--json",
                         "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out)["images"]) == 2


def test_progress_lines_when_not_on_a_terminal(capsys, caplog, monkeypatch, tmp_path, folder):
    import camkit.progress

    monkeypatch.setattr(camkit.progress, "MIN_INTERVAL", 0.0)
    with caplog.at_level(logging.INFO, logger="camkit.progress"):
        code, _, err = run(capsys, "compare", folder / "images", "--masks", folder / "masks",
                           "--weights", "none", "--size", 64, "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    lines = [r.getMessage() for r in caplog.records if r.name == "camkit.progress"]
    assert lines[0].startswith("compare: 1/2 img (50%)") and "done in" in lines[-1]


def test_images_of_the_same_name_in_two_folders_keep_two_panels(capsys, tmp_path):
    for sub in ("p", "q"):
        write_image(tmp_path / "images" / sub / "same.png", 64, 64, seed=len(sub))
        write_mask(tmp_path / "masks" / sub / "same.png", 64, 64)
    code, _, err = run(capsys, "compare", tmp_path / "images", "--masks", tmp_path / "masks",
                       "--weights", "none", "--size", 64, "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    panels = sorted(
        p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.png")
    )
    assert panels == ["panels/p/same.compare.png", "panels/q/same.compare.png"]


@pytest.mark.slow
def test_compare_a_vision_transformer(capsys, tmp_path, folder):
    code, out, err = run(capsys, "compare", folder / "images", "--masks", folder / "masks",
                         "--model", "vit_b_16", "--weights", "none", "--json",
                         "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    images = json.loads(out)["images"]
    assert len(images) == 2 and "pointing_game" in json.dumps(images)
    assert all(image["layer"] == "encoder.layers.encoder_layer_11.ln_1" for image in images)


def test_a_panel_that_cannot_be_written_keeps_the_metrics(capsys, tmp_path, folder, checkpoint):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "panels").write_text("a file where the panels folder goes")
    code, out, err = run(capsys, "compare", folder / "images", "--masks", folder / "masks",
                         "--weights", checkpoint, "--json", "--out", tmp_path / "o")  # fmt: skip
    images = json.loads(out)["images"]
    assert code == 1 and "panel not written" in err and "2 panels could not be written" in err
    assert [image["status"] for image in images] == ["ok", "ok"]
    assert (tmp_path / "o" / "metrics.csv").is_file() and (tmp_path / "o" / "summary.csv").is_file()
