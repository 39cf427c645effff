"""The classifier's training losses: softmax cross-entropy, or one sigmoid per class.

A label is a class index, or a row of class probabilities (a two-object image of
:class:`camkit.data.shapes.ShapeStream` puts 0.5 on each of its classes).

``"ce"``, softmax cross-entropy, only ranks the classes: adding a constant to every logit
changes nothing, so a class's logit — and so its map — may stay high where a rival's object is.
``"bce"`` asks each class on its own whether it is in the image (one sigmoid per class, as
ResNet strikes back's recipes train ResNet-50; Wightman et al., 2021): an image without
class ``c`` must give ``c`` a negative logit, so the evidence another class's object gives ``c``
is pushed down, not only below that class's own. A probability row's classes all count as
present.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LOSSES", "classification_loss"]

LOSSES = ("ce", "bce")


def _presence(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    """Multi-hot targets (1 for each class present) with label smoothing as timm's
    ``BinaryCrossEntropy``: ``smoothing / K`` off, ``1 − smoothing + smoothing / K`` on."""
    if labels.is_floating_point():
        present = (labels > 0).float()
    else:
        present = nn.functional.one_hot(labels, classes).float()
    return present * (1 - smoothing) + smoothing / classes


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, kind: str = "ce", smoothing: float = 0.0
) -> torch.Tensor:
    """The mean loss of a batch: ``kind`` ``"ce"`` (softmax cross-entropy) or ``"bce"`` (a
    sigmoid per class, summed over the classes); ``smoothing``: label smoothing."""
    logits = logits.float()
    if kind == "ce":
        return nn.functional.cross_entropy(logits, labels, label_smoothing=smoothing)
    if kind == "bce":
        targets = _presence(labels, logits.shape[1], smoothing)
        summed = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        return summed / logits.shape[0]
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
