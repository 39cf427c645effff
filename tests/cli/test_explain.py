"""camkit explain: panels, raw maps, records, its flags and its errors."""

import json
import logging

import cv2
import numpy as np
import pytest
import torch

from tests.cli.helpers import one_line_error, run, write_image, write_mask


def test_explain_writes_panel_raw_and_json(capsys, tmp_path, image_path, checkpoint, model):
    out_dir = tmp_path / "out"
    code, out, err = run(
        capsys,
        "explain",
        image_path,
        "--weights",
        checkpoint,
        "--out",
        out_dir,
        "--topk",
        2,
        "--save-raw",
        "--json",
    )
    assert code == 0, err
    records = json.loads(out)
    assert len(records) == 1
    record = records[0]
    assert record["layer"] == "layer4.2" and record["path"] == "closed-form"
    assert len(record["targets"]) == 2 and record["predictions"][0]["name"] in (
        "circle",
        "square",
        "triangle",
        "star",
        "e",
        "f",
        "g",
        "h",
        "i",
        "j",
    )
    panel = cv2.imread(str(out_dir / record["outputs"]["panel"]))
    assert panel is not None and panel.shape[0] > 64
    raw = np.load(out_dir / record["outputs"]["raw"])
    assert raw["maps"].shape == (2, 2, 2) and str(raw["layer"]) == "layer4.2"
    assert list(raw["image_size"]) == [80, 100]
    # the saved maps are the API's maps
    from camkit.data.images import preprocess, read_image
    from camkit.explainer import Explainer

    batch = preprocess(read_image(image_path), 64)
    expected = Explainer(model, "layer4.2")(batch, "top-2")
    np.testing.assert_allclose(raw["maps"], expected.maps[0].numpy(), rtol=1e-5, atol=1e-7)
    assert record["autocast"] is None
    # the speed options: channels-last keeps the maps, autocast is recorded
    common = ["explain", image_path, "--weights", checkpoint, "--topk", 2, "--json"]
    code, out, err = run(capsys, *common, "--out", tmp_path / "cl", "--channels-last", "--save-raw")
    assert code == 0, err
    fast = np.load(tmp_path / "cl" / json.loads(out)[0]["outputs"]["raw"])["maps"]
    np.testing.assert_allclose(fast, expected.maps[0].numpy(), rtol=1e-4, atol=1e-6)
    code, out, err = run(capsys, *common, "--out", tmp_path / "bf", "--autocast", "bf16")
    assert code == 0 and json.loads(out)[0]["autocast"] == "bfloat16", err


def test_explain_text_output_and_random_weights_note(capsys, tmp_path, image_path):
    code, out, err = run(
        capsys,
        "explain",
        image_path,
        "--weights",
        "none",
        "--size",
        64,
        "--out",
        tmp_path / "o",
        "--class",
        1,
        2,
        "--method",
        "fcn",
    )
    assert code == 0, err
    assert "weights are random" in err
    assert "scene.png" in out and "fcn" in out
    # the name carries every setting that changes a map: method, classes, a size not the model's
    assert (tmp_path / "o" / "scene.fcn-c1_2-s64.png").exists()


def test_bad_inputs(capsys, tmp_path, image_path, checkpoint):
    common = ["--weights", checkpoint, "--out", tmp_path / "o"]
    one_line_error(
        *run(capsys, "explain", tmp_path / "missing.jpg", *common)[::2], "does not exist"
    )
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    one_line_error(*run(capsys, "explain", tmp_path / "bad.jpg", *common)[::2], "cannot decode")
    one_line_error(
        *run(capsys, "explain", image_path, "--layer", "layer4.7", *common)[::2],
        "layer4.2",
        "camkit layers",
    )
    one_line_error(
        *run(capsys, "explain", image_path, "--class", 10, *common)[::2], "out of range", "0–9"
    )
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((9, 12, 3), np.uint8))
    # smaller than one cell: an error at native size only; resized to the model's input it has cells
    one_line_error(*run(capsys, "explain", tiny, "--size", 0, *common)[::2], "12×9 px", "stride 32")
    assert run(capsys, "explain", tiny, *common)[0] == 0
    one_line_error(
        *run(capsys, "explain", image_path, "--size", 16, *common)[::2],
        "16×16",
        "a larger input (--size",
    )  # not a fixed 224: this checkpoint's own input is 64 px
    torch.save({"x": torch.zeros(1), "evil": print}, tmp_path / "evil.ckpt")
    one_line_error(
        *run(capsys, "explain", image_path, "--weights", tmp_path / "evil.ckpt")[::2], "refusing"
    )
    one_line_error(
        *run(capsys, "explain", image_path, "--weights", tmp_path / "nope.ckpt")[::2],
        "no such checkpoint",
    )
    code, _, err = run(capsys, "explain", image_path, "--alpha", 3, *common)
    assert code == 2 and "alpha" in err
    code, _, err = run(capsys, "explain", image_path, "--method", "magic", *common)
    assert code == 2 and "invalid choice" in err


def test_one_bad_image_does_not_lose_the_others(capsys, tmp_path, image_path, checkpoint):
    (tmp_path / "broken.png").write_bytes(b"")
    code, _out, err = run(
        capsys,
        "explain",
        tmp_path / "broken.png",
        image_path,
        "--weights",
        checkpoint,
        "--out",
        tmp_path / "o",
    )
    assert code == 1 and "empty" in err and "1 of 2 images failed" in err
    assert (tmp_path / "o" / "in" / "scene.gradcam.png").exists()  # paths from the common folder
    code, out, err = run(
        capsys, "explain", tmp_path / "broken.png", image_path, "--weights", checkpoint,
        "--json", "--out", tmp_path / "j",
    )  # fmt: skip
    failed, done = json.loads(out)  # --json keeps the failure, in input order
    assert code == 1 and failed["status"] == "error" and "empty" in failed["error"]
    assert failed["input"].endswith("broken.png") and done["status"] == "ok"


def test_same_stem_never_overwrites(capsys, tmp_path, image_path, checkpoint):
    other = tmp_path / "other" / "scene.png"
    other.parent.mkdir()
    other.write_bytes(image_path.read_bytes())
    code, _, err = run(
        capsys, "explain", image_path, other, "--weights", checkpoint, "--out", tmp_path / "o"
    )
    assert code == 0, err
    # names come from the inputs' paths relative to their common folder
    written = sorted(
        p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.png")
    )
    assert written == ["in/scene.gradcam.png", "other/scene.gradcam.png"]


def test_resize_mask_is_an_explain_flag(capsys, tmp_path, image_path):
    mask = write_mask(tmp_path / "half.png", 40, 50)  # the image is 80×100
    common = ["explain", image_path, "--weights", "none", "--size", 64, "--mask", mask]
    code, _, err = run(capsys, *common, "--out", tmp_path / "a")
    one_line_error(code, err, "50×40 but image", "pass --resize-mask")
    code, out, err = run(
        capsys, *common, "--resize-mask", "--tolerance", 5, "--json", "--out", tmp_path / "b"
    )
    assert code == 0, err
    assert 0 <= json.loads(out)[0]["metrics"]["energy_in_mask"] <= 1


def test_mask_sources_are_exclusive(capsys, tmp_path, image_path, segmenter_checkpoint):
    mask = write_mask(tmp_path / "m.png", 80, 100)
    code, _, err = run(
        capsys, "explain", image_path, "--mask", mask, "--segmenter", segmenter_checkpoint
    )
    assert code == 2 and "not allowed with" in err


def test_segmenter_masks(capsys, tmp_path, image_path, segmenter_checkpoint):
    code, out, err = run(capsys, "explain", image_path, "--weights", "none", "--size", 64,
                         "--segmenter", segmenter_checkpoint, "--json", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    assert "pointing_game" in json.loads(out)[0]["metrics"]


def test_fusion_needs_several_layers(capsys, tmp_path, image_path):
    code, _, err = run(capsys, "explain", image_path, "--weights", "none", "--size", 64,
                       "--fusion", "max", "--out", tmp_path / "o")  # fmt: skip
    one_line_error(code, err, "--fusion needs several layers: --layer layer4.2,layer3.5")
    code, _, err = run(capsys, "explain", image_path, "--weights", "none", "--size", 64,
                       "--layer", "layer4.2,layer3.5", "--fusion", "max", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize(
    ("size", "expected"), [(None, [64, 64]), ("0", [80, 100]), ("96x128", [96, 128])]
)
def test_size_zero_is_the_images_own_size(capsys, tmp_path, image_path, checkpoint, size, expected):
    flags = [] if size is None else ["--size", size]
    code, out, err = run(capsys, "explain", image_path, "--weights", checkpoint, *flags,
                         "--save-raw", "--json", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    raw = np.load(tmp_path / "o" / json.loads(out)[0]["outputs"]["raw"])
    assert list(raw["input_size"]) == expected  # default: the checkpoint's input size, 64


def test_progress_lines_when_not_on_a_terminal(capsys, caplog, monkeypatch, tmp_path):
    import camkit.progress

    monkeypatch.setattr(camkit.progress, "MIN_INTERVAL", 0.0)
    paths = [write_image(tmp_path / f"{k}.png", 64, 64, seed=k) for k in range(2)]
    with caplog.at_level(logging.INFO, logger="camkit.progress"):
        code, _, err = run(capsys, "explain", *paths, "--weights", "none", "--size", 64,
                           "--batch-size", 1, "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    lines = [r.getMessage() for r in caplog.records if r.name == "camkit.progress"]
    assert lines[0].startswith("explain: 1/2 img (50%), ") and lines[-1].startswith(
        "explain: 2/2 img"
    )
    assert "done in" in lines[-1]


def test_class_takes_several_ids_and_checks_them(capsys, tmp_path, image_path, checkpoint):
    code, out, err = run(capsys, "explain", image_path, "--weights", checkpoint, "--class", 3, 1,
                         "--json", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    assert [t["class_id"] for t in json.loads(out)[0]["targets"]] == [3, 1]


def test_settings_that_change_maps_name_the_files_and_the_records(capsys, tmp_path):
    from tests.cli.helpers import write_image

    image = write_image(tmp_path / "a.png", 64, 64)
    common = ["explain", image, "--weights", "none", "--size", 64, "--save-raw", "--json",
              "--out", tmp_path / "o"]  # fmt: skip
    records = {}
    for flags in ([], ["--eigen-smooth"], ["--output-stride", 16]):
        code, out, err = run(capsys, *common, *flags)
        assert code == 0, err
        records[" ".join(map(str, flags))] = json.loads(out)[0]
    panels = {r["outputs"]["panel"] for r in records.values()}
    assert panels == {"a.gradcam-s64.png", "a.gradcam-eigen-s64.png", "a.gradcam-os16-s64.png"}
    assert records["--eigen-smooth"]["smoothing"] == "eigen"
    assert records["--output-stride 16"]["output_stride"] == 16
    raw = np.load(tmp_path / "o" / records["--output-stride 16"]["outputs"]["raw"])
    assert int(raw["output_stride"]) == 16 and raw["maps"].shape[-2:] == (4, 4)
    eigen = np.load(tmp_path / "o" / records["--eigen-smooth"]["outputs"]["raw"])
    assert str(eigen["smoothing"]) == "eigen"


def test_align_is_a_flag_named_in_files_and_records(capsys, tmp_path):
    from camkit.heatmaps import to_image

    image = write_image(tmp_path / "a.png", 48, 80)
    common = ["explain", image, "--weights", "none", "--size", 0, "--save-raw", "--json",
              "--out", tmp_path / "o"]  # fmt: skip
    records = {}
    for align in ("rf", "grid"):
        code, out, err = run(capsys, *common, "--align", align)
        assert code == 0, err
        records[align] = json.loads(out)[0]
    assert records["rf"]["outputs"]["panel"] == "a.gradcam-native.png"
    assert records["grid"]["outputs"]["panel"] == "a.gradcam-grid-native.png"
    assert records["grid"]["align"] == "grid" and records["grid"]["geometry"] is None
    geometry = records["rf"]["geometry"]
    assert records["rf"]["align"] == "rf" and geometry["source"] == "derived"
    assert geometry["stride"] == [32.0, 32.0] and geometry["offset"] == [0.0, 0.0]
    raw = np.load(tmp_path / "o" / records["rf"]["outputs"]["raw"])
    assert str(raw["align"]) == "rf" and raw["cell_stride"].tolist() == [32.0, 32.0]
    # the NPZ holds what it takes to put the raw maps on the image again
    from camkit.core.geometry import LayerGeometry

    cells = LayerGeometry(tuple(raw["cell_stride"]), tuple(raw["cell_offset"]), (1.0, 1.0))
    on_image = to_image(torch.from_numpy(raw["maps"]), (48, 80), tuple(raw["input_size"]), cells)
    assert on_image.shape == (1, 48, 80) and torch.isfinite(on_image).all()
    code, _, err = run(capsys, *common, "--align", "centre")
    assert code == 2 and "invalid choice: 'centre'" in err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "layer", "grid"),
    [
        ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", [14, 14]),
        ("swin_t", "features.7.1.norm1", [7, 7]),
        ("timm:convnext_tiny", "stages.3.blocks.2", [7, 7]),
    ],
)
def test_explain_any_model_by_name_writes_overlays(
    capsys, tmp_path, image_path, model, layer, grid
):
    if model.startswith("timm:"):
        pytest.importorskip("timm")
    out_dir = tmp_path / "o"
    argv = ["explain", image_path, "--model", model, "--weights", "none", "--out", out_dir]
    code, out, err = run(capsys, *argv, "--json", "--save-raw")
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["layer"] == layer and "weights are random" in err
    panel = cv2.imread(str(out_dir / "scene.gradcam.png"))
    assert panel is not None and panel.std() > 0
    raw = np.load(out_dir / "scene.gradcam.npz")
    assert list(raw["maps"].shape[-2:]) == grid and np.ptp(raw["maps"]) > 0


@pytest.mark.parametrize("method", ["gradcam-elementwise", "eigengradcam"])
def test_explain_runs_the_newer_methods(capsys, tmp_path, image_path, method):
    out_dir = tmp_path / "o"
    argv = ["explain", image_path, "--weights", "none", "--size", 64, "--method", method]
    code, out, err = run(capsys, *argv, "--out", out_dir, "--json")
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["method"] == method
    assert (out_dir / f"scene.{method}-s64.png").exists()


@pytest.mark.slow
def test_a_model_of_one_input_size_names_it(capsys, tmp_path, image_path):
    argv = ["explain", image_path, "--model", "vit_b_16", "--weights", "none", "--size", 128]
    code, _, err = run(capsys, *argv, "--out", tmp_path / "o")
    one_line_error(code, err, "refused a 128×128 px input", "--size 224")


def test_an_output_that_cannot_be_written_fails_that_image_only(capsys, tmp_path, checkpoint):
    first, second = (write_image(tmp_path / "in" / f"{n}.png", seed=i) for i, n in enumerate("ab"))
    (tmp_path / "o" / "a.gradcam.png").mkdir(parents=True)  # the panel's name, taken by a folder
    code, out, err = run(capsys, "explain", first, second, "--weights", checkpoint, "--json",
                         "--out", tmp_path / "o")  # fmt: skip
    failed, done = json.loads(out)  # the JSON is still printed, with both images
    assert code == 1 and "not written" in failed["error"] and done["status"] == "ok", err
    assert (tmp_path / "o" / "b.gradcam.png").is_file()


def test_a_very_wide_image_gets_a_panel_of_bounded_width(capsys, tmp_path, checkpoint):
    wide = write_image(tmp_path / "wide.png", 2, 10000)
    code, _, err = run(capsys, "explain", wide, "--weights", checkpoint, "--size", 64,
                         "--out", tmp_path / "o")  # fmt: skip
    panel = cv2.imread(str(tmp_path / "o" / "wide.gradcam.png"))
    assert code == 0 and panel.shape[1] < 4000, err  # was 1,280,000 px a tile, and 5 GB
