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


def test_a_mask_of_another_size_is_refused_unless_resized(capsys, tmp_path, segmenter_checkpoint):
    write_image(tmp_path / "a.png", 80, 100, seed=1)
    write_mask(tmp_path / "small.png", 40, 50)
    common = ["explain-seg", tmp_path / "a.png", "--segmenter", segmenter_checkpoint,
              "--mask", tmp_path / "small.png"]  # fmt: skip
    code, _, err = run(capsys, *common, "--out", tmp_path / "o")
    assert code == 1 and "is 50×40 but image" in err and "--resize-mask" in err, err
    assert not (tmp_path / "o" / "a.seg-gradcam.png").exists()
    code, out, err = run(capsys, *common, "--resize-mask", "--out", tmp_path / "r")
    assert code == 0 and "region 6.2%" in out, err  # the resized box: a quarter by a quarter


def test_a_region_too_small_for_the_input_is_an_error(capsys, tmp_path, segmenter_checkpoint):
    write_image(tmp_path / "a.png", 640, 640, seed=1)
    dot = cv2.imread(str(write_mask(tmp_path / "dot.png", 640, 640)), cv2.IMREAD_GRAYSCALE) * 0
    dot[1, 1] = 255  # one pixel of 640²: nothing is left of it at the 64 px input
    cv2.imwrite(str(tmp_path / "dot.png"), dot)
    code, _, err = run(capsys, "explain-seg", tmp_path / "a.png", "--segmenter",
                       segmenter_checkpoint, "--mask", tmp_path / "dot.png", "--out", tmp_path / "o")  # fmt: skip
    assert code == 1 and "vanishes at the segmenter's 64×64 px input" in err, err


def test_an_empty_predicted_region_is_said(capsys, tmp_path, segmenter_checkpoint, monkeypatch):
    import torch

    from camkit import regions

    write_image(tmp_path / "a.png", 64, 64, seed=2)
    monkeypatch.setattr(
        regions, "own_regions", lambda logits, threshold=0.5: torch.zeros_like(logits)
    )
    code, out, err = run(capsys, "explain-seg", tmp_path / "a.png", "--segmenter",
                         segmenter_checkpoint, "--out", tmp_path / "o")  # fmt: skip
    assert code == 0 and "region 0.0%" in out, err
    assert "predicts no pixel of class 0" in err and "the map is empty" in err, err


def test_a_mask_folder_given_as_mask_is_named(capsys, tmp_path, segmenter_checkpoint):
    write_image(tmp_path / "a.png", 64, 64)
    (tmp_path / "masks").mkdir()
    code, _, err = run(capsys, "explain-seg", tmp_path / "a.png", "--segmenter",
                       segmenter_checkpoint, "--mask", tmp_path / "masks", "--out", tmp_path / "o")  # fmt: skip
    one_line_error(code, err, "is a folder, not a mask file")
    code, _, err = run(capsys, "explain", tmp_path / "a.png", "--weights", "none", "--mask",
                       tmp_path / "masks", "--out", tmp_path / "o")  # fmt: skip
    one_line_error(code, err, "is a folder, not a mask file; a folder of masks is --masks")


def test_a_region_drawn_in_any_colour_counts(capsys, tmp_path, segmenter_checkpoint):
    import numpy as np

    write_image(tmp_path / "a.png", 64, 64)
    red = np.zeros((64, 64, 3), np.uint8)
    red[16:32, 16:32] = (0, 0, 255)  # BGR on disk: a red box, empty in the blue channel
    cv2.imwrite(str(tmp_path / "red.png"), red)
    code, out, err = run(capsys, "explain-seg", tmp_path / "a.png", "--segmenter",
                         segmenter_checkpoint, "--mask", tmp_path / "red.png", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0 and "region 6.2%" in out, err
