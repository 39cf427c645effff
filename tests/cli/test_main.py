"""camkit.cli.main: exit codes, one-line errors, --debug, the entry points, a closed pipe."""

import subprocess
import sys

import pytest
import torch

from camkit.cli import build_parser, main
from tests.cli.helpers import one_line_error, run

COMMANDS_WITH_A_CLASSIFIER = (
    ["explain", "x.png"],
    ["compare", "x.png", "--mask", "m.png"],
    ["evaluate", "d"],
    ["export", "d"],
    ["layers"],
)


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


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "explain")
    assert code == 2 and "IMG" in err
    code, _, err = run(capsys, "no-such-command")
    assert code == 2 and "invalid choice" in err


@pytest.mark.parametrize("argv", COMMANDS_WITH_A_CLASSIFIER, ids=lambda a: a[0])
def test_weights_default_to_imagenet_everywhere(argv):
    args = build_parser().parse_args(argv)
    assert args.weights == "imagenet" and args.device is None
    assert args.model is None  # resnet50, unless a checkpoint names its own


def test_model_that_contradicts_the_checkpoint_is_an_error(
    capsys, tmp_path, image_path, checkpoint
):
    common = ["explain", image_path, "--weights", checkpoint, "--out", tmp_path / "o"]
    code, _, err = run(capsys, *common, "--model", "vgg16")
    one_line_error(code, err, "--model vgg16 does not match", "holds a resnet50", "drop --model")
    code, _, err = run(capsys, "layers", "--weights", checkpoint, "--model", "vgg16")
    one_line_error(code, err, "--model vgg16 does not match")
    code, _, err = run(capsys, *common, "--model", "resnet50")  # the same: fine
    assert code == 0, err


@pytest.mark.parametrize("command", (["explain", "x.png"], ["evaluate", "d"], ["compare", "x.png",
                         "--mask", "m.png"], ["export", "d"], ["segment", "x.png", "--segmenter",
                         "s.ckpt"], ["data", "shapes"], ["demo"], ["explain-seg", "x.png",
                         "--segmenter", "s.ckpt"]), ids=lambda a: a[0])  # fmt: skip
def test_out_naming_a_file_is_refused_before_anything_runs(command, capsys, tmp_path):
    (tmp_path / "file").write_text("keep me")
    for out, says in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "x", "is under")):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--out", str(out)])
        err = capsys.readouterr().err
        assert says in err and "pass a folder" in err, err
    assert (tmp_path / "file").read_text() == "keep me"


def test_segmenter_checkpoint_as_weights_says_so(capsys, image_path, segmenter_checkpoint):
    code, _, err = run(capsys, "explain", image_path, "--weights", segmenter_checkpoint)
    one_line_error(
        code,
        err,
        f"{segmenter_checkpoint} is a segmenter checkpoint (camkit train-seg); pass it as "
        "--segmenter, and a classifier as --weights",
    )
    assert "unknown model" not in err


def test_python_dash_m_and_the_console_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "camkit.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("camkit "), result.stderr
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "camkit"]
    assert script.value == "camkit.cli:main" and script.load() is main


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_closed_pipe_is_quiet(tmp_path, reader):
    """`camkit layers | head -1`: no 'Broken pipe' error, no traceback, exit 0 (pipefail)."""
    command = (
        f"set -o pipefail; {sys.executable} -m camkit.cli layers --weights none "
        f"2>{tmp_path / 'err'} | {reader}"
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    err = (tmp_path / "err").read_text()
    assert result.returncode == 0, err
    assert err == ""
    if reader == "head -1":
        assert result.stdout.splitlines() == [result.stdout.splitlines()[0]]
        assert result.stdout.startswith("layer")


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    import camkit.cli.layers as layers

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(layers, "_load", interrupted)
    code, _, err = run(capsys, "layers", "--weights", "none")
    assert code == 130 and "interrupted" in err


def test_demo_defaults_are_the_demo_configs():
    """`camkit demo` repeats DemoConfig's defaults (building the parser does not import
    camkit.demo, ~1 s of imports); they must not drift apart."""
    from camkit.demo import DemoConfig

    args = build_parser().parse_args(["demo"])
    config = DemoConfig()
    assert str(args.out) == config.out
    for name in ("n_stream", "n_train", "difficulty", "epochs", "size", "compare_seed"):
        assert getattr(args, name) == getattr(config, name), name
    assert not args.no_segmenter and config.segmenter


class _Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise ValueError(f"cannot decode image {index}.png (corrupt)")


def test_a_data_loader_workers_error_is_one_line():
    from camkit.cli import _message

    loader = torch.utils.data.DataLoader(_Broken(), num_workers=1)
    with pytest.raises(ValueError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)  # how torch hands it over
    assert _message(caught.value) == "cannot decode image 0.png (corrupt)"
    assert _message(ValueError("plain: as it is")) == "plain: as it is"
