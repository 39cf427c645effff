import json

import cv2
import pytest


@pytest.fixture
def explain_cli(tmp_path, capsys, rgb_image):
    """``camkit explain`` on one image with random weights at 64 px: ``run(*options)`` → the
    image's JSON record (the command must succeed)."""
    from camkit.cli import main

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), rgb_image[:, :, ::-1])

    def run(*options: str) -> dict:
        code = main(["explain", str(image), "--weights", "none", "--size", "64",
                     "--out", str(tmp_path / "o"), "--json", *options])  # fmt: skip
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)[0]

    return run
