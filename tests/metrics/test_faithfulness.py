import itertools
import math

import pytest
import torch
from torch import nn

from camkit.metrics.faithfulness import average_drop, blur, deletion_insertion, trapezoid_auc


class SumModel(nn.Module):
    """logits = [sum(x), 0]: p(class 0) = sigmoid(sum of pixels)."""

    def forward(self, x):
        total = x.flatten(1).sum(1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_deletion_and_insertion_by_hand():
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    saliency = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])  # order: 4, 3, 2, 1
    out = deletion_insertion(SumModel(), image, saliency, [0], steps=4, baseline="zero")
    deletion = [sigmoid(v) for v in (10, 6, 3, 1, 0)]
    insertion = [sigmoid(v) for v in (0, 4, 7, 9, 10)]
    torch.testing.assert_close(out["deletion_curve"][0], torch.tensor(deletion))
    torch.testing.assert_close(out["insertion_curve"][0], torch.tensor(insertion))
    expected = sum((a + b) / 2 * 0.25 for a, b in itertools.pairwise(deletion))
    assert float(out["deletion"][0]) == pytest.approx(expected, rel=1e-6)
    for batch_size in (1, 2):  # the steps run a batch at a time: the same curves
        chunked = deletion_insertion(
            SumModel(), image, saliency, [0], steps=4, baseline="zero", batch_size=batch_size
        )
        torch.testing.assert_close(chunked["deletion_curve"], out["deletion_curve"])
        torch.testing.assert_close(chunked["insertion_curve"], out["insertion_curve"])
    with pytest.raises(ValueError, match=r"more than the 2×2 input's pixels"):
        deletion_insertion(SumModel(), image, saliency, [0], steps=5)
    reverse = deletion_insertion(SumModel(), image, -saliency, [0], steps=4, baseline="zero")
    assert (
        reverse["deletion"][0] > out["deletion"][0]
        and reverse["insertion"][0] < out["insertion"][0]
    )


def test_average_drop_by_hand():
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    saliency = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # keeps 3 and 4 → sum 7
    out = average_drop(SumModel(), image, saliency, [0])
    assert out["average_drop"] == pytest.approx(
        100 * (sigmoid(10) - sigmoid(7)) / sigmoid(10), rel=1e-3
    )
    assert out["increase_in_confidence"] == 0.0


def test_helpers_and_errors():
    assert float(trapezoid_auc(torch.tensor([[1.0, 1.0, 1.0]]))[0]) == 1.0
    assert float(trapezoid_auc(torch.tensor([[0.0, 1.0]]))[0]) == 0.5
    flat = torch.ones(1, 3, 16, 16)
    torch.testing.assert_close(blur(flat), flat)
    with pytest.raises(ValueError, match="saliency"):
        deletion_insertion(SumModel(), flat, torch.zeros(1, 8, 8), [0])
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(SumModel(), flat, torch.zeros(1, 16, 16), [0], baseline="noise")


def test_on_a_resnet_heatmap_beats_its_reverse(model, images):
    from camkit.explainer import Explainer

    heatmaps = Explainer(model, "layer4.2")(images)
    saliency = heatmaps.upsampled[:, 0]
    good = deletion_insertion(model, images, saliency, heatmaps.class_ids[:, 0], steps=8)
    assert (
        good["deletion"].shape == (3,) and ((good["deletion"] >= 0) & (good["deletion"] <= 1)).all()
    )
    assert model.training is False


def test_evaluate_cli(tmp_path, capsys):
    import csv

    from camkit.cli import main
    from camkit.data.shapes import write_dataset
    from camkit.io.checkpoint import save_checkpoint
    from camkit.models.resnet import resnet50_variant
    from tests.conftest import perturb

    data = write_dataset(tmp_path / "d", 4, 64, seed=2)
    torch.manual_seed(0)
    model = perturb(resnet50_variant(32, 4))
    checkpoint = save_checkpoint(
        tmp_path / "m.ckpt",
        model.state_dict(),
        arch="resnet50",
        channels=32,
        num_classes=4,
        input_size=64,
    )
    code = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--weights",
            str(checkpoint),
            "--methods",
            "gradcam,scorecam,eigencam",
            "--n",
            "3",
            "--steps",
            "4",
            "--out",
            str(tmp_path / "e"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "scorecam" in out and "deletion" in out
    rows = list(csv.DictReader((tmp_path / "e" / "methods.csv").read_text().splitlines()))
    assert [r["method"] for r in rows] == ["gradcam", "scorecam", "eigencam"]
    assert all(
        0 <= float(r["deletion_auc"]) <= 1 and 0 <= float(r["pointing_game"]) <= 1 for r in rows
    )
    code = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--weights",
            str(checkpoint),
            "--methods",
            "gradcam,magic",
        ]
    )
    assert code == 1 and "magic" in capsys.readouterr().err
    code = main(["evaluate", "--data", str(tmp_path / "nope"), "--weights", str(checkpoint)])
    assert code == 1 and "nope does not exist" in capsys.readouterr().err


def test_explain_cli_accepts_every_method(tmp_path, capsys, rgb_image):
    import cv2

    from camkit.cli import main

    path = tmp_path / "x.png"
    cv2.imwrite(str(path), rgb_image)
    for method in ("gradcampp", "layercam", "ablationcam", "eigencam"):
        code = main(
            [
                "explain",
                str(path),
                "--weights",
                "none",
                "--method",
                method,
                "--size",
                "64",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        assert code == 0, capsys.readouterr().err
        assert (tmp_path / "o" / f"x.{method}-s64.png").exists()  # a size not the model's: named


def test_each_modules_training_flag_comes_back_and_ids_are_one_per_image():
    import torchvision

    from camkit.metrics.road import road

    model = torchvision.models.resnet18(num_classes=5).train()
    model.layer1.eval()  # frozen batch norm in a model being trained
    images, maps = torch.randn(2, 3, 32, 32), torch.rand(2, 32, 32)
    deletion_insertion(model, images, maps, [0, 1], steps=4)
    average_drop(model, images, maps, torch.tensor([0, 1]))
    assert model.training and not model.layer1.training and model.layer2.training
    for metric in (
        lambda ids: deletion_insertion(model, images, maps, ids, steps=4),
        lambda ids: average_drop(model, images, maps, ids),
        lambda ids: road(model, images, maps, ids),
    ):
        with pytest.raises(ValueError, match="1 class ids for 2 images"):
            metric([0])  # average_drop scored the first image only; the others raised
        with pytest.raises(ValueError, match=r"class 7 is out of range: the model has 5"):
            metric([0, 7])  # was torch's IndexError
    assert model.training and not model.layer1.training
