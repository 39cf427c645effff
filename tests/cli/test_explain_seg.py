"""camkit explain-seg: the segmenter's own Grad-CAM over its predicted mask, or a given one."""

import cv2

from tests.cli.helpers import one_line_error, run, write_image, write_mask


def test_panels_for_own_and_given_regions(capsys, tmp_path, segmenter_checkpoint):
    write_image(tmp_path / "in" / "a.png", 80, 100, seed=1)
    write_mask(tmp_path / "box.png", 80, 100)
    common = ["explain-seg", tmp_path / "in" / "a.png", "--segmenter", segmenter_checkpoint]
    code, out, err = run(capsys, *common, "--out", tmp_path / "o")
    assert code == 0, err
    assert "class 0, region" in out
    panel = cv2.imread(str(tmp_path / "o" / "a.seg-gradcam.png"))
    assert panel is not None and panel.shape[1] > 2 * 100
    code, out, err = run(capsys, *common, "--mask", tmp_path / "box.png", "--layer", "dec2",
                         "--method", "layercam", "--out", tmp_path / "m")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "m" / "a.seg-layercam.png").exists()


def test_bad_layer_and_class_are_one_line_errors(capsys, tmp_path, segmenter_checkpoint):
    write_image(tmp_path / "a.png", 64, 64, seed=2)
    common = ["explain-seg", tmp_path / "a.png", "--segmenter", segmenter_checkpoint]
    code, _, err = run(capsys, *common, "--layer", "layer9", "--out", tmp_path / "o")
    one_line_error(code, err, "unknown layer 'layer9'", "layer4")
    code, _, err = run(capsys, *common, "--class", 3, "--out", tmp_path / "o")
    one_line_error(code, err, "--class 3", "classes 0–0")
