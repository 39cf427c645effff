from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from camkit.cli import main
from camkit.data.shapes import generate, write_dataset
from camkit.io.checkpoint import load_checkpoint, save_checkpoint
from camkit.metrics.segmentation import segmentation_scores
from camkit.models.segmenter import load_segmenter
from camkit.pipeline.masks import predict_masks
from camkit.training.loop import native_bf16
from camkit.training.resume import resume_path
from camkit.training.segmenter import SegConfig, train_segmenter


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    return write_dataset(root / "train", 12, 64, seed=0), write_dataset(root / "val", 4, 64, seed=1)


@pytest.fixture(scope="module")
def segmenter(seg_data, tmp_path_factory):
    train, val = seg_data
    out = tmp_path_factory.mktemp("ckpt") / "seg.ckpt"
    config = SegConfig(size=64, batch_size=4, epochs=1, workers=0)
    metrics = train_segmenter(train, out, config, val_data=val, progress=False)
    return out, metrics


def test_scores_by_hand():
    predicted = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    truth = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]])
    scores = segmentation_scores(predicted, truth)
    assert scores["iou_per_image"] == [0.5, 1.0]  # the empty/empty image is a correct "nothing"
    assert scores["dice_per_image"] == pytest.approx([2 / 3, 1.0])
    assert scores["intersection"] == 1 and scores["union"] == 2


def test_training_writes_a_checkpoint_with_metrics(segmenter):
    path, metrics = segmenter
    for key in ("val_iou", "val_dice", "val_iou_dataset", "val_dice_dataset"):
        assert 0.0 <= metrics[key] <= 1.0
    checkpoint = load_checkpoint(path)
    assert checkpoint["kind"] == "segmenter" and checkpoint["arch"] == "unet"
    assert checkpoint["input_size"] == 64 and checkpoint["encoder_channels"] == 2048


def test_resume_after_a_crash(seg_data, tmp_path):
    train, val = seg_data
    config = SegConfig(size=64, batch_size=4, epochs=2, workers=0, limit=4)

    def crash(metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_segmenter(
            train, tmp_path / "s.ckpt", config, val_data=val, progress=False, on_epoch=crash
        )
    out = tmp_path / "s.ckpt"
    assert load_checkpoint(out)["epoch"] == 1 and "optimizer" not in load_checkpoint(out)
    assert "optimizer" in load_checkpoint(resume_path(out))
    with pytest.raises(ValueError, match="pass --epochs 2"):  # the schedule depends on it
        train_segmenter(train, out, replace(config, epochs=3), val_data=val, resume=True)
    metrics = train_segmenter(train, out, config, val_data=val, resume=True, progress=False)
    assert metrics["epoch"] == 2 and len(load_checkpoint(out)["history"]) == 2
    assert not resume_path(out).exists() and "optimizer" not in load_checkpoint(out)
    again = train_segmenter(
        train, out, config, val_data=val, resume=True, progress=False, on_epoch=pytest.fail
    )
    assert again == metrics  # a finished run: nothing trained


@pytest.mark.parametrize(("limit", "batch_size", "steps"), [(4, 4, 1), (5, 1, 5)])
def test_runs_of_one_and_five_steps(seg_data, tmp_path, limit, batch_size, steps):
    """5 steps at a 20 % warm-up divided by zero in torch's OneCycleLR."""
    train, val = seg_data
    config = SegConfig(size=64, batch_size=batch_size, limit=limit, workers=0)
    out = tmp_path / "s.ckpt"
    metrics = train_segmenter(train, out, config, val_data=val, progress=False, keep_resume=True)
    assert metrics["epoch"] == 1 and 0.0 <= metrics["val_iou"] <= 1.0
    assert load_checkpoint(resume_path(out))["schedule"]["total_steps"] == steps
    assert load_checkpoint(out)["config"]["bf16"] is native_bf16("cpu")  # the default resolved


def test_predict_any_size(segmenter):
    model, info = load_segmenter(segmenter[0])
    image = generate(0, seed=9, size=96).image[:, :80]  # 96×80, not the model's 64
    mask, probabilities = predict_masks(model, info, [image])[0]
    assert mask.shape == (96, 80) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert (
        probabilities.shape == (1, 96, 80) and 0 <= probabilities.min() <= probabilities.max() <= 1
    )
    with pytest.raises(ValueError, match="threshold"):
        predict_masks(model, info, [image], threshold=1.5)


def test_bad_inputs(seg_data, tmp_path):
    train, val = seg_data
    with pytest.raises(
        ValueError,
        match=r"value \d but there are only 1 object classes besides the background \(values 0–1; train-seg --classes 2\)",
    ):
        train_segmenter(
            train,
            tmp_path / "x.ckpt",
            SegConfig(size=64, classes=2, workers=0),
            val_data=val,
            progress=False,
        )
    with pytest.raises(ValueError, match="multiple of 32"):
        train_segmenter(train, tmp_path / "x.ckpt", SegConfig(size=70, workers=0), progress=False)
    save_checkpoint(tmp_path / "cls.ckpt", {"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="not a camkit segmenter"):
        load_segmenter(tmp_path / "cls.ckpt")


def test_cli_train_seg_and_segment(seg_data, segmenter, tmp_path, capsys):
    train, val = seg_data
    code = main(
        [
            "train-seg",
            str(train),
            "--val",
            str(val),
            "--out",
            str(tmp_path / "s.ckpt"),
            "--size",
            "64",
            "--batch-size",
            "4",
            "--limit",
            "4",
            "--arch",
            "seed",
            "--loss",
            "focal+dice+lovasz",
            "--workers",
            "0",
            "--no-bf16",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "validation IoU" in out
    config = load_checkpoint(tmp_path / "s.ckpt")["config"]
    assert config["bf16"] is False and config["channels_last"] is True  # the default
    image = tmp_path / "odd size.png"
    cv2.imwrite(str(image), cv2.cvtColor(generate(1, seed=5, size=96).image, cv2.COLOR_RGB2BGR))
    (tmp_path / "empty.png").write_bytes(b"")
    code = main(
        [
            "segment",
            str(image),
            str(tmp_path / "empty.png"),
            "--weights",
            str(segmenter[0]),
            "--out",
            str(tmp_path / "masks"),
            "--probabilities",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "empty" in err and "1 of 2 images failed" in err
    mask = cv2.imread(str(tmp_path / "masks" / "odd size.mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
    assert (tmp_path / "masks" / "odd size.overlay.png").exists()
    assert np.load(tmp_path / "masks" / "odd size.prob.npz")["probabilities"].shape == (1, 96, 96)
    code = main(["segment", str(image), "--weights", str(segmenter[0]), "--threshold", "2"])
    assert code == 1 and "threshold" in capsys.readouterr().err


def test_augmentation_moves_image_and_mask_together(seg_data):
    import cv2 as cv

    from camkit.data.folders import SegmentationFolder

    torch.manual_seed(0)
    data = SegmentationFolder(seg_data[0], size=None, augment=True, mean=(0, 0, 0), std=(1, 1, 1))
    for index in range(8):
        image, mask, _ = data[index % len(data)]
        rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        saturation = cv.cvtColor(rgb, cv.COLOR_RGB2HSV)[..., 1]
        inside = mask.numpy() > 0
        assert saturation[inside].min() > 140 and saturation[~inside].max() < 80


def test_multiclass_training(seg_data, tmp_path):
    train, val = seg_data
    config = SegConfig(size=64, classes=5, batch_size=4, limit=4, workers=0)
    metrics = train_segmenter(train, tmp_path / "m.ckpt", config, val_data=val, progress=False)
    model, info = load_segmenter(tmp_path / "m.ckpt")
    assert info["classes"] == 5 and 0 <= metrics["val_iou"] <= 1
    mask, probabilities = predict_masks(model, info, [generate(0, 3, 64).image])[0]
    assert probabilities.shape == (5, 64, 64) and mask.max() < 5
