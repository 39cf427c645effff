"""camkit segment: the segmenter is --segmenter, as in every command (--weights still works)."""

import cv2

from tests.cli.helpers import run, write_image


def test_segmenter_flag_and_its_older_spelling(capsys, tmp_path, segmenter_checkpoint):
    image = write_image(tmp_path / "a.png", 64, 64)
    for flag, out in (("--segmenter", "s"), ("--weights", "w")):
        code, stdout, err = run(capsys, "segment", image, flag, segmenter_checkpoint,
                                "--out", tmp_path / out, "--device", "cpu")  # fmt: skip
        assert code == 0, err
        assert "foreground" in stdout
        assert cv2.imread(str(tmp_path / out / "a.mask.png"), cv2.IMREAD_UNCHANGED).shape == (
            64,
            64,
        )
