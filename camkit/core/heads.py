"""Linear heads: finding one, checking that a layer feeds it, applying it at every position.

A fully connected layer on globally pooled features is a 1×1 convolution applied at every
position and then averaged ("convolutionalization", Long et al. 2015). For a ResNet's
``layer4`` output ``A`` (N, C, h, w) and head ``fc`` (W: classes×C, b):

    score_map[c] = W[c] · A + b[c]          (N, classes, h, w), any input size
    mean_hw(score_map[c]) = logits[c]        (exact)
    CAM[c] = W[c] · A = score_map[c] − b[c]  (Zhou et al. 2016)
    Grad-CAM at layer4.2 = relu(CAM[c]) / (h·w)

The maps of a whole model are ``camkit.explainer.score_maps`` (``Explainer(method="fcn")``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["class_maps", "find_linear_head", "head_matches", "probability_maps"]


def find_linear_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's classifier: its last ``nn.Linear`` (``fc`` for ResNets)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head")
    return found


def head_matches(
    activations: torch.Tensor, head: nn.Linear, logits: torch.Tensor, rtol: float = 1e-4
) -> bool:
    """True when ``head(mean_hw(activations)) == logits`` numerically (the closed-form test)."""
    if activations.ndim != 4 or activations.shape[1] != head.in_features:
        return False
    if logits.ndim != 2 or logits.shape[1] != head.out_features:
        return False
    pooled = activations.to(head.weight.dtype).mean(dim=(2, 3))  # (N, C)
    predicted = head(pooled)
    logits = logits.to(predicted.dtype)
    # one device-side comparison and a single host sync (no float() round trips)
    tolerance = rtol * (1.0 + logits.abs().amax()) + rtol * logits.abs()
    return bool(((predicted - logits).abs() <= tolerance).all())


def class_maps(
    activations: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    class_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply a linear head as a 1×1 convolution at every position.

    Args:
        activations: ``(N, C, h, w)``.
        weight: ``(classes, C)``; ``bias``: ``(classes,)`` or ``None`` (no bias: CAM).
        class_ids: ``(N, K)`` to keep only those classes, ``None`` for all.

    Returns:
        ``(N, K, h, w)`` score maps.
    """
    if weight.shape[1] != activations.shape[1]:
        raise ValueError(
            f"head expects {weight.shape[1]} channels but the layer has "
            f"{activations.shape[1]} (activations {tuple(activations.shape)}, "
            f"head weight {tuple(weight.shape)})"
        )
    if class_ids is None:
        maps = torch.einsum("kc,nchw->nkhw", weight, activations)
        if bias is not None:
            maps = maps + bias.view(1, -1, 1, 1)
        return maps
    maps = torch.einsum("nkc,nchw->nkhw", weight[class_ids], activations)
    if bias is not None:
        maps = maps + bias[class_ids][..., None, None]
    return maps


def probability_maps(score_maps: torch.Tensor) -> torch.Tensor:
    """Softmax over classes at each position of ``(N, classes, h, w)`` score maps."""
    return score_maps.softmax(dim=1)
