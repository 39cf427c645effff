import json

import cv2
import numpy as np
import pytest
import torch

from camkit.cli import main


@pytest.fixture
def image_path(tmp_path, rgb_image):
    path = tmp_path / "in" / "scene.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), cv2.cvtColor(rgb_image, cv2.COLOR_RGB2BGR))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


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
    panel = cv2.imread(record["panel"])
    assert panel is not None and panel.shape[0] > 64
    raw = np.load(record["raw"])
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
    fast = np.load(json.loads(out)[0]["raw"])["maps"]
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
    assert (tmp_path / "o" / "scene.fcn.png").exists()


def test_layers_command(capsys):
    code, out, _ = run(capsys, "layers", "--size", 224)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("layer4.2 "))
    assert "2048×7×7" in line and "default" in line
    code, out, _ = run(capsys, "layers", "--json", "--size", 64)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["layer3.5"]["output_shape"] == [1, 1024, 4, 4]


def one_line_error(code, err, *fragments):
    assert code == 1
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert lines and "Traceback" not in err
    assert lines[0].startswith("camkit: error:")
    for fragment in fragments:
        assert fragment in err, err


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
    one_line_error(*run(capsys, "explain", tiny, *common)[::2], "12×9 px", "stride 32")
    one_line_error(
        *run(capsys, "explain", image_path, "--size", 16, *common)[::2], "16×16", "--size 224"
    )
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
    assert (tmp_path / "o" / "scene.gradcam.png").exists()


def test_same_stem_never_overwrites(capsys, tmp_path, image_path, checkpoint):
    other = tmp_path / "other" / "scene.png"
    other.parent.mkdir()
    other.write_bytes(image_path.read_bytes())
    code, _, err = run(
        capsys, "explain", image_path, other, "--weights", checkpoint, "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "scene-2.gradcam.png",
        "scene.gradcam.png",
    ]


def test_debug_shows_traceback(tmp_path, image_path):
    with pytest.raises(FileNotFoundError):
        main(
            [
                "--debug",
                "explain",
                str(tmp_path / "missing.png"),
                "--weights",
                str(tmp_path / "x.ckpt"),
            ]
        )
