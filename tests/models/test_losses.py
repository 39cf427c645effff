import math

import pytest
import torch

from camkit.models.losses import (
    CombinedLoss,
    DeepSupervisionLoss,
    as_target,
    bce_loss,
    dice_loss,
    focal_loss,
    lovasz_hinge,
    lovasz_softmax,
)

LOGITS = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])  # (1, 1, 2, 2)
TARGET = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_bce_by_hand():
    p = [sigmoid(2.0), sigmoid(-1.0), sigmoid(0.0), sigmoid(3.0)]
    t = [1, 0, 1, 0]
    expected = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / 4
    assert float(bce_loss(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-6)


def test_focal_by_hand():
    p = [sigmoid(2.0), sigmoid(-1.0), sigmoid(0.0), sigmoid(3.0)]
    t = [1, 0, 1, 0]
    ce = [-(ti * math.log(pi) + (1 - ti) * math.log(1 - pi)) for pi, ti in zip(p, t)]
    expected = sum(0.5 * (1 - math.exp(-c)) ** 2 * c for c in ce) / 4
    assert float(focal_loss(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-6)
    assert float(focal_loss(LOGITS, TARGET, alpha=1.0, gamma=0.0)) == pytest.approx(
        float(bce_loss(LOGITS, TARGET)), rel=1e-6
    )


def test_dice_by_hand():
    p = [sigmoid(2.0), sigmoid(-1.0), sigmoid(0.0), sigmoid(3.0)]
    intersection = p[0] * 1 + p[2] * 1
    expected = 1 - (2 * intersection + 1) / (sum(p) + 2 + 1)
    assert float(dice_loss(LOGITS, TARGET)) == pytest.approx(expected, rel=1e-6)
    # per image: a perfect image and a wrong one average, they do not pool
    logits = torch.tensor([[[[9.0]]], [[[-9.0]]]])
    target = torch.tensor([[[[1.0]]], [[[1.0]]]])
    per_image = [
        1 - (2 * sigmoid(9) + 1) / (sigmoid(9) + 1 + 1),
        1 - (2 * sigmoid(-9) + 1) / (sigmoid(-9) + 1 + 1),
    ]
    assert float(dice_loss(logits, target)) == pytest.approx(sum(per_image) / 2, rel=1e-6)


def test_lovasz_hinge_by_hand():
    # two pixels, one foreground with logit 1 (error 0), one background with logit 0.5 (error 1.5)
    logits = torch.tensor([[[[1.0, 0.5]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    # sorted errors [1.5 (bg), 0 (fg)]; labels in that order [0, 1]; gts = 1
    # jaccard after 1: 1 − (1 − 0)/(1 + 1) = 0.5; after 2: 1 − 0/2 = 1 → grad [0.5, 0.5]
    assert float(lovasz_hinge(logits, target)) == pytest.approx(1.5 * 0.5, rel=1e-6)
    perfect = torch.tensor([[[[5.0, -5.0]]]])
    assert float(lovasz_hinge(perfect, target)) == 0.0


def test_multiclass_versions():
    mask = torch.tensor([[[0, 1], [2, 2]]])
    target = as_target(mask, 3)
    assert target.shape == (1, 3, 2, 2) and torch.equal(target.argmax(1), mask)
    logits = 10 * (2 * target - 1)
    assert float(bce_loss(logits, target)) < 1e-6
    assert float(dice_loss(logits, target)) < 1e-3
    assert float(lovasz_softmax(logits, target)) < 1e-3
    assert float(CombinedLoss("bce+dice+focal+lovasz")(logits, target)) < 1e-2
    with pytest.raises(ValueError, match="index 2 but only 2 classes"):
        as_target(mask, 2)
    assert torch.equal(as_target(mask, 1), (mask > 0).unsqueeze(1).float())


def test_combined_weights():
    combined = CombinedLoss({"bce": 2.0, "dice": 0.5})
    expected = 2.0 * bce_loss(LOGITS, TARGET) + 0.5 * dice_loss(LOGITS, TARGET)
    assert float(combined(LOGITS, TARGET)) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="unknown losses"):
        CombinedLoss("bce+hinge")


def test_deep_supervision_resizes_targets_and_rejects_wrong_shapes():
    main = torch.zeros(2, 1, 8, 8)
    aux = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    target = torch.ones(2, 1, 8, 8)
    loss = DeepSupervisionLoss(bce_loss, weights=(0.5, 0.25))
    expected = bce_loss(main, target) * (1 + 0.5 + 0.25)
    assert float(loss((main, aux), target)) == pytest.approx(float(expected))
    # the shape mismatch from the source notes is an error naming both shapes
    with pytest.raises(
        ValueError,
        match=r"target shape \(8, 224, 224\) does not match logits shape \(1, 1, 224, 224\)",
    ):
        loss(torch.zeros(1, 1, 224, 224), torch.zeros(8, 224, 224))
    with pytest.raises(ValueError, match="auxiliary output shape"):
        loss((main, [torch.zeros(2, 3, 4, 4)]), target)
