"""camkit variants compare: the data folder as the last positional argument or --data."""

import pytest

from camkit.cli import CLIError, build_parser
from camkit.cli.variants import _split


def split(*argv):
    return _split(build_parser().parse_args(["variants", "compare", *map(str, argv)]))


def test_data_folder_last_or_as_option(tmp_path):
    a, b, data = tmp_path / "a.ckpt", tmp_path / "b.ckpt", tmp_path / "test"
    a.touch(), b.touch(), data.mkdir()
    assert split(a, b, data) == ([a, b], data)
    assert split(a, b, "--data", data) == ([a, b], data)
    assert split(a, b, data, "--data", data) == ([a, b], data)
    with pytest.raises(CLIError, match="two data folders"):
        split(a, data, "--data", tmp_path)
    with pytest.raises(CLIError, match="pass the data folder"):
        split(a, b)
    with pytest.raises(CLIError, match="at least one variant checkpoint"):
        split(data)


def test_parents_and_class_lists_are_named_briefly(capsys, tmp_path, checkpoint):
    from camkit.data.shapes import write_dataset
    from tests.cli.helpers import one_line_error, run

    data = write_dataset(tmp_path / "d", 4, 64)
    code, _, err = run(capsys, "variant", "--channels", 8, "--from", "none", "--data", data,
                       "--out", tmp_path / "v.ckpt")  # fmt: skip
    one_line_error(code, err, "--from none: no such checkpoint file")  # not "use 'none'"
    code, _, err = run(capsys, "variants", "compare", checkpoint, "none", data, "--n", 2,
                       "--out", tmp_path / "o")  # fmt: skip
    one_line_error(code, err, "none has 1000 classes (class 0, class 1", "… 995 more")
    assert len(err) < 400  # the 1,000 names were all printed
    code, _, err = run(capsys, "segment", data / "images", "--segmenter", checkpoint,
                       "--out", tmp_path / "m")  # fmt: skip
    one_line_error(code, err, "it is a classifier's", "camkit train-seg")
