"""CAM math as pure tensor functions.

Shapes: activations ``(N, C, h, w)``; gradients ``(N, C, h, w)`` for one target per image or
``(N, K, C, h, w)`` for K targets; maps ``(N, h, w)`` or ``(N, K, h, w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "gradcam",
    "gradcam_closed_form",
    "normalize",
    "upsample",
    "weighted_channel_sum",
]


def weighted_channel_sum(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[..., k] * activations[:, k]``.

    Args:
        activations: ``(N, C, h, w)``.
        weights: ``(C,)``, ``(K, C)`` (shared by all images), ``(N, C)`` or ``(N, K, C)``.

    Returns:
        ``(N, h, w)`` for ``(C,)`` / ``(N, C)`` weights, ``(N, K, h, w)`` otherwise.
    """
    channels = activations.shape[1]
    if weights.shape[-1] != channels:
        raise ValueError(
            f"weights have {weights.shape[-1]} channels but activations have {channels} "
            f"(activations {tuple(activations.shape)}, weights {tuple(weights.shape)})"
        )
    if weights.ndim == 1:
        return torch.einsum("c,nchw->nhw", weights, activations)
    if weights.ndim == 2 and weights.shape[0] == activations.shape[0]:
        return torch.einsum("nc,nchw->nhw", weights, activations)
    if weights.ndim == 2:
        return torch.einsum("kc,nchw->nkhw", weights, activations)
    return torch.einsum("nkc,nchw->nkhw", weights, activations)


def gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017).

    ``alpha_k = mean_ij dY/dA_k(i, j)``, ``map = relu(sum_k alpha_k A_k)``.

    Args:
        activations: ``(N, C, h, w)``.
        gradients: ``(N, C, h, w)`` or ``(N, K, C, h, w)``.
    """
    weights = gradients.mean(dim=(-2, -1))  # (N, C) or (N, K, C)
    if weights.ndim == 2:
        return torch.einsum("nc,nchw->nhw", weights, activations).relu()
    return torch.einsum("nkc,nchw->nkhw", weights, activations).relu()


def gradcam_closed_form(
    activations: torch.Tensor,
    head_weight: torch.Tensor,
    class_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grad-CAM at a layer that feeds only global average pooling and a linear head.

    There ``dY_c / dA_k(i, j) = W[c, k] / (h·w)`` at every position, so
    ``alpha_k = W[c, k] / (h·w)`` and ``map_c = relu(sum_k W[c, k] A_k) / (h·w)``: the positive
    part of the class activation map divided by ``h·w``. Forward only; all classes cost one
    ``einsum``.

    Args:
        activations: ``(N, C, h, w)``.
        head_weight: ``(classes, C)``, the linear layer's weight.
        class_ids: ``(N, K)`` class per image and target; ``None`` for every class.

    Returns:
        ``(N, K, h, w)``, with ``K = classes`` when ``class_ids`` is ``None``.
    """
    height, width = activations.shape[-2:]
    # (classes, C) shared by all images, or (N, K, C) per image and target
    weights = head_weight if class_ids is None else head_weight[class_ids]
    return weighted_channel_sum(activations, weights).relu_() / (height * width)


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Map each ``(h, w)`` map linearly to [0, 1] (min → 0, max → 1); a flat map becomes zeros."""
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0)
    return scaled.view_as(maps)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling with ``align_corners=False``, camkit's one convention.

    Accepts ``(h, w)``, ``(N, h, w)`` or ``(N, K, h, w)``.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    shape = maps.shape
    flat = maps.reshape(-1, 1, *shape[-2:]).float()
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*shape[:-2], *size)
