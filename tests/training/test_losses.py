import math

import pytest
import torch
from torch import nn

from camkit.training.losses import classification_loss


def test_ce_is_torch_cross_entropy_on_indices_and_probability_rows():
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    rows = torch.tensor([[0.5, 0.5, 0, 0]] * 6)
    for target in (labels, rows):
        expected = nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
        assert torch.allclose(classification_loss(logits, target, "ce", 0.1), expected)


def test_bce_is_a_sigmoid_per_class_summed_over_the_classes():
    logits = torch.randn(3, 4, dtype=torch.bfloat16)
    labels = torch.tensor([2, 0, 3])
    x = logits.float()
    expected = 0.0
    for n in range(3):
        for k in range(4):
            y = 1.0 if k == labels[n] else 0.0
            p = torch.sigmoid(x[n, k])
            expected -= y * math.log(p) + (1 - y) * math.log(1 - p)
    loss = classification_loss(logits, labels, "bce")
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected / 3, rel=1e-5)


def test_bce_counts_every_class_of_a_probability_row_as_present_with_smoothing():
    logits = torch.zeros(1, 4, requires_grad=True)
    pair = torch.tensor([[0.5, 0.0, 0.5, 0.0]])
    classification_loss(logits, pair, "bce", smoothing=0.2).backward()
    # d/dx of BCE at x = 0 is sigmoid(0) − target = 0.5 − target
    on, off = 1 - 0.2 + 0.2 / 4, 0.2 / 4
    expected = torch.tensor([[0.5 - on, 0.5 - off, 0.5 - on, 0.5 - off]])
    assert torch.allclose(logits.grad, expected)
    indices = torch.tensor([0])
    assert classification_loss(logits, indices, "bce").item() == pytest.approx(4 * math.log(2))


def test_bce_pushes_an_absent_class_below_zero_where_ce_only_ranks():
    # every logit raised by the same amount: CE does not notice, BCE does
    logits, labels = torch.tensor([[3.0, 1.0, 1.0, 1.0]]), torch.tensor([0])
    shifted = logits + 5
    ce = classification_loss(logits, labels, "ce"), classification_loss(shifted, labels, "ce")
    assert torch.allclose(*ce)
    assert classification_loss(shifted, labels, "bce") > classification_loss(logits, labels, "bce")


def test_an_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        classification_loss(torch.zeros(1, 2), torch.tensor([0]), "focal")
