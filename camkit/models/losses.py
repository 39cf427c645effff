"""Segmentation losses and deep supervision. Logits and targets are always ``(N, C, H, W)``.

Binary masks use ``C = 1`` (sigmoid); multi-class masks use one channel per class, background
included, with a one-hot target (softmax). :func:`as_target` builds targets from index masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "CombinedLoss",
    "DeepSupervisionLoss",
    "as_target",
    "bce_loss",
    "check_shapes",
    "dice_loss",
    "focal_loss",
    "lovasz_hinge",
    "lovasz_softmax",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Both ``(N, C, H, W)`` with equal shapes, else a ``ValueError`` naming both shapes."""
    if logits.ndim != 4 or target.shape != logits.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits shape "
            f"{tuple(logits.shape)}; both must be (N, C, H, W) — build targets with "
            "camkit.models.losses.as_target(mask, classes)"
        )


def as_target(mask: torch.Tensor, classes: int) -> torch.Tensor:
    """Index mask ``(N, H, W)`` (0 = background) → float target ``(N, C, H, W)``.

    ``classes=1``: one channel, foreground = any non-zero index. ``classes>1``: one-hot over
    ``classes`` channels (channel 0 = background); indices must be below ``classes``.
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be (N, H, W) class indices, got shape {tuple(mask.shape)}")
    if classes == 1:
        return (mask > 0).unsqueeze(1).float()
    if int(mask.max()) >= classes:
        raise ValueError(
            f"mask has class index {int(mask.max())} but only {classes} classes (0–{classes - 1})"
        )
    return F.one_hot(mask.long(), classes).permute(0, 3, 1, 2).float()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits (sigmoid per channel), or softmax cross-entropy for
    multi-class one-hot targets. Mean over pixels."""
    check_shapes(logits, target)
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target.argmax(dim=1))


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss per pixel: ``alpha · (1 − pt)^gamma · CE`` with ``pt = exp(−CE)``, averaged.

    The source notes applied this formula to the batch-mean BCE (one scalar); per pixel is the
    focal loss of Lin et al. 2017, which down-weights easy pixels rather than the whole batch.
    Binary: sigmoid BCE per pixel; multi-class: softmax CE per pixel.
    """
    check_shapes(logits, target)
    if logits.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        ce = F.cross_entropy(logits, target.argmax(dim=1), reduction="none")
    pt = torch.exp(-ce)
    return (alpha * (1 - pt) ** gamma * ce).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss computed per image and channel, then averaged: ``1 − mean(Dice)``.

    ``Dice = (2·Σ p·t + smooth) / (Σ p + Σ t + smooth)`` with ``p`` = sigmoid (binary) or
    softmax (multi-class) probabilities.
    """
    check_shapes(logits, target)
    probabilities = logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(dim=1)
    intersection = (probabilities * target).sum(dim=(2, 3))
    total = probabilities.sum(dim=(2, 3)) + target.sum(dim=(2, 3))
    return 1 - ((2 * intersection + smooth) / (total + smooth)).mean()


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(jaccard) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge (Berman et al. 2018), per image then averaged; ``C = 1``.

    ``errors = 1 − logit·sign`` (sign = ±1 for fore/background), sorted decreasingly; the loss is
    ``relu(errors) · lovasz_grad(labels in that order)``: a convex surrogate of 1 − IoU.
    """
    check_shapes(logits, target)
    if logits.shape[1] != 1:
        raise ValueError(
            f"lovasz_hinge is binary (C = 1); got C = {logits.shape[1]}: use lovasz_softmax"
        )
    losses = []
    for image_logits, image_target in zip(logits.flatten(1), target.flatten(1)):
        signs = 2.0 * image_target - 1.0
        errors = 1.0 - image_logits * signs
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(F.relu(errors_sorted), _lovasz_grad(image_target[order])))
    return torch.stack(losses).mean()


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-class Lovász-softmax, averaged over the classes present in each image."""
    check_shapes(logits, target)
    probabilities = logits.softmax(dim=1)
    losses = []
    for image_probabilities, image_target in zip(probabilities, target):
        for channel in range(probabilities.shape[1]):
            fg = image_target[channel].flatten()
            if fg.sum() == 0:
                continue
            errors = (fg - image_probabilities[channel].flatten()).abs()
            errors_sorted, order = torch.sort(errors, descending=True)
            losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


_NAMED: dict[str, Loss] = {"bce": bce_loss, "focal": focal_loss, "dice": dice_loss}


class CombinedLoss:
    """Weighted sum of named losses, e.g. ``CombinedLoss({"bce": 1.0, "dice": 1.0})``.

    Names: ``bce``, ``focal``, ``dice``, ``lovasz`` (hinge for C = 1, softmax otherwise).
    """

    def __init__(self, weights: dict[str, float] | str = "bce+dice") -> None:
        if isinstance(weights, str):
            weights = {name.strip(): 1.0 for name in weights.split("+")}
        unknown = [n for n in weights if n not in (*_NAMED, "lovasz")]
        if unknown or not weights:
            raise ValueError(f"unknown losses {unknown}; choose from bce, focal, dice, lovasz")
        self.weights = dict(weights)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for name, weight in self.weights.items():
            if name == "lovasz":
                fn = lovasz_hinge if logits.shape[1] == 1 else lovasz_softmax
            else:
                fn = _NAMED[name]
            total = total + weight * fn(logits, target)
        return total

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}·{n}" for n, w in self.weights.items())


class DeepSupervisionLoss:
    """``loss(main, target) + Σ wᵢ · loss(auxᵢ, target resized to auxᵢ's size)``.

    Targets are resized with nearest-neighbour sampling, so one-hot targets stay one-hot; shapes
    are (N, C, H, W) on both sides, and any other target shape is an error naming both.
    """

    def __init__(self, loss: Loss, weights: Sequence[float] = (0.5, 0.25, 0.125)) -> None:
        self.loss, self.weights = loss, tuple(weights)

    def __call__(
        self,
        outputs: torch.Tensor | tuple[torch.Tensor, Sequence[torch.Tensor]],
        target: torch.Tensor,
    ) -> torch.Tensor:
        main, auxiliary = (outputs, ()) if isinstance(outputs, torch.Tensor) else outputs
        check_shapes(main, target)
        total = self.loss(main, target)
        for weight, aux in zip(self.weights, auxiliary):
            if aux.ndim != 4 or aux.shape[:2] != target.shape[:2]:
                raise ValueError(
                    f"auxiliary output shape {tuple(aux.shape)} does not fit target shape {tuple(target.shape)}"
                )
            resized = F.interpolate(target, size=aux.shape[-2:], mode="nearest")
            total = total + weight * self.loss(aux, resized)
        return total
