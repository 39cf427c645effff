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
