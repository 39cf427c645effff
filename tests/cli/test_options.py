"""The shared option groups: one flag, one meaning, in every command that has it."""

import json

import pytest

from camkit.cli import build_parser
from camkit.cli import options as options_module

WITH_MASKS = (
    ["explain", "x.png"],
    ["compare", "x.png", "--mask", "m.png"],
    ["export", "d"],
)
WITH_SIZE = (["explain", "x.png"], ["compare", "x.png", "--mask", "m.png"], ["export", "d"],
             ["layers"])  # fmt: skip
WITH_METHOD = (["explain", "x.png"], ["compare", "x.png", "--mask", "m.png"], ["export", "d"])


def parse(*argv):
    return build_parser().parse_args([str(a) for a in argv])


@pytest.mark.parametrize("argv", WITH_MASKS, ids=lambda a: a[0])
def test_resize_mask_wherever_masks_are_taken(argv):
    assert parse(*argv).resize_mask is False
    assert parse(*argv, "--resize-mask").resize_mask is True


@pytest.mark.parametrize("argv", WITH_SIZE, ids=lambda a: a[0])
def test_size_has_one_parser_and_one_default(argv):
    assert parse(*argv).size is None  # the model's input size
    assert parse(*argv, "--size", "0").size == 0  # the image's own size
    assert parse(*argv, "--size", "300x500").size == (300, 500)
    with pytest.raises(SystemExit):
        parse(*argv, "--size", "big")
    assert parse(*argv, "--size", "4096").size == 4096
    for huge in ("100000", "224x5000"):  # one clear line, not an allocation failure later
        with pytest.raises(SystemExit):
            parse(*argv, "--size", huge)


@pytest.mark.parametrize("argv", (["explain", "x.png"], ["export", "d"]), ids=lambda a: a[0])
def test_class_takes_several_ids_topk_and_all_classes(argv):
    assert parse(*argv, "--class", 3, 4).class_ids == [3, 4]
    assert parse(*argv, "--topk", 2).topk == 2
    assert parse(*argv, "--all-classes").all_classes is True
    with pytest.raises(SystemExit):
        parse(*argv, "--class", 3, "--topk", 2)


def test_compare_class_parses_several_to_refuse_them_clearly():
    assert parse("compare", "x.png", "--mask", "m.png", "--class", 3, 4).class_ids == [3, 4]


@pytest.fixture
def toy_method():
    """A method registered at runtime (Grad-CAM with |weights|), removed afterwards."""
    from camkit import methods

    toy = methods.register(
        methods.Method(
            "toy-abs",
            weights=lambda activations, gradients: gradients.mean(dim=(-2, -1)).abs(),
            closed_form=lambda activations, gradient, scores: gradient.abs(),
        )
    )
    yield toy.name
    methods.unregister(toy.name)


def test_method_choices_are_read_from_the_registry_when_parsing(toy_method):
    assert options_module.method_names()[-1] == toy_method
    for argv in WITH_METHOD:
        assert parse(*argv, "--method", toy_method).method == toy_method
    from camkit.cli.evaluate import _methods

    assert _methods(f"gradcam,{toy_method}") == ["gradcam", toy_method]


def test_a_registered_method_runs_through_explain(capsys, tmp_path, toy_method):
    from tests.cli.helpers import run, write_image

    image = write_image(tmp_path / "a.png", 64, 64)
    code, out, err = run(capsys, "explain", image, "--weights", "none", "--size", 64,
                         "--method", toy_method, "--json", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)[0]["method"] == toy_method


def test_a_registered_method_runs_through_export_with_explains_maps(capsys, tmp_path, toy_method):
    import numpy as np

    from tests.cli.helpers import run, write_image

    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.png", 64, 64)
    common = ["--weights", "none", "--size", 64, "--method", toy_method]
    code, out, err = run(capsys, "explain", folder / "a.png", *common, "--save-raw", "--json",
                         "--out", tmp_path / "e")  # fmt: skip
    assert code == 0, err
    explained = np.load(tmp_path / "e" / json.loads(out)[0]["outputs"]["raw"])
    code, _, err = run(capsys, "export", folder, *common, "--workers", 0, "--out", tmp_path / "x")
    assert code == 0, err
    (line,) = (tmp_path / "x" / "manifest.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["status"] == "ok" and record["method"] == toy_method
    exported = np.load(tmp_path / "x" / record["outputs"]["raw"])
    np.testing.assert_array_equal(exported["maps"], explained["maps"])  # the same pipeline
    explain_record = json.loads(out)[0]
    assert record["targets"] == explain_record["targets"]
    assert set(record) - {"shard", "settings"} == set(explain_record)  # one record schema
    same = ("layer", "method", "path", "predictions", "input_size", "image_size", "output_stride")
    assert {k: record[k] for k in same} == {k: explain_record[k] for k in same}


def test_export_accepts_every_method_explain_accepts():
    for method in options_module.method_names():  # fcn included
        assert parse("export", "d", "--method", method).method == method


def test_export_takes_the_options_of_explain():
    def flags(command, argv):
        parser = build_parser()
        parser.parse_args([command, *argv])  # the command exists and parses
        sub = parser._subparsers._group_actions[0].choices[command]
        return {flag for action in sub._actions for flag in action.option_strings}

    explain, export = flags("explain", ["x.png"]), flags("export", ["d"])
    # explain alone: one image's --mask, its .npz files, its JSON on stdout
    assert explain - export == {"--mask", "--save-raw", "--json"}


def test_speed_options_are_declared_once():
    with pytest.raises(ValueError, match="unknown speed options"):
        options_module.add_speed_options(build_parser(), only=("turbo",))


@pytest.mark.parametrize(
    "argv",
    (
        ["explain", "x.png", "--tolerance", "-5"],
        ["explain", "x.png", "--tolerance", "nan"],
        ["compare", "x.png", "--mask", "m.png", "--tolerance", "inf"],
        ["compare", "x.png", "--mask", "m.png", "--panels", "-1"],
        ["export", "d", "--workers", "-1"],
        ["train", "d", "--workers", "-2"],
    ),
    ids=lambda a: " ".join(a[-2:]),
)
def test_negative_counts_and_distances_are_refused_at_parse_time(argv, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "expected a" in capsys.readouterr().err


def test_zero_counts_and_distances_are_accepted():
    assert parse("export", "d", "--workers", "0").workers == 0
    assert parse("explain", "x.png", "--tolerance", "0").tolerance == 0.0
    assert parse("compare", "x.png", "--mask", "m.png", "--panels", "0").panels == 0


@pytest.mark.parametrize("layer", ("", " ", "layer4.2,", ",layer3"))
def test_an_empty_layer_name_is_refused_not_read_as_the_default(layer, capsys):
    with pytest.raises(SystemExit):
        parse("explain", "x.png", "--layer", layer)
    assert "an empty name" in capsys.readouterr().err
    assert parse("explain", "x.png", "--layer", "layer3,layer4").layer == "layer3,layer4"
