"""camkit layers: names and shapes, offline."""

import json

from tests.cli.helpers import one_line_error, run


def test_layers_command(capsys):
    code, out, _ = run(capsys, "layers", "--size", 224)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("layer4.2 "))
    assert "2048×7×7" in line and "default" in line
    code, out, _ = run(capsys, "layers", "--json", "--size", 64)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["layer3.5"]["output_shape"] == [1, 1024, 4, 4]


def test_the_default_layer_says_where_its_cells_sit(capsys):
    _, out, _ = run(capsys, "layers", "--weights", "none", "--model", "vgg16", "--size", 64)
    line = next(line for line in out.splitlines() if "default" in line)
    assert line.startswith("features.30 ") and "input px 15.5 + 32·i (derived)" in line
    _, out, _ = run(capsys, "layers", "--weights", "none", "--json", "--size", 64)
    (default,) = [row for row in json.loads(out) if row["default"]]
    assert default["geometry"]["offset"] == [0.0, 0.0] and default["geometry"]["stride"] == [32, 32]


def test_imagenet_by_default_random_offline_with_a_note(capsys, monkeypatch):
    import camkit.cli.layers as layers

    monkeypatch.setattr(layers, "_imagenet_cached", lambda arch: False)
    code, out, err = run(capsys, "layers", "--json")
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("note: ImageNet weights for resnet50 are not")
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["layer4.2"]["output_shape"] == [1, 2048, 7, 7]  # default: the model's 224
    assert rows["layer4.2"]["default"]


def test_random_weights_need_no_note(capsys):
    code, _, err = run(capsys, "layers", "--weights", "none", "--size", 64)
    assert code == 0 and err == ""


def test_size_zero_has_no_image_to_take_a_size_from(capsys):
    code, _, err = run(capsys, "layers", "--weights", "none", "--size", 0)
    one_line_error(code, err, "--size 0", "--size 224")


def test_a_segmenters_layers_for_explain_seg(capsys, tmp_path, segmenter_checkpoint):
    code, out, err = run(capsys, "layers", "--segmenter", segmenter_checkpoint, "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["layer4"]["default"] and "dec0" in rows, err
    assert rows["layer4"]["output_shape"] == [1, 2048, 2, 2]  # at its own 64 px input
    # explain-seg's unknown-layer hint leads here
    code, _, err = run(capsys, "explain-seg", tmp_path / "x.png", "--segmenter",
                       segmenter_checkpoint, "--layer", "dec9", "--out", tmp_path / "o")  # fmt: skip
    one_line_error(code, err, "unknown layer 'dec9'", "camkit layers --segmenter CKPT")
    code, _, err = run(capsys, "layers", "--segmenter", segmenter_checkpoint, "--model", "vgg16")
    one_line_error(code, err, "leave out --weights and --model")


def test_a_model_of_one_input_size_says_which(capsys):
    code, _, err = run(capsys, "layers", "--model", "vit_b_16", "--weights", "none", "--size", 64)
    one_line_error(code, err, "refused a 64×64 px input", "use --size 224")  # was a traceback
