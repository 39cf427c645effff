"""CAM math as pure tensor functions.

Shapes: activations ``(N, C, h, w)``; gradients ``(N, C, h, w)`` for one target per image or
``(N, K, C, h, w)`` for K targets; maps ``(N, h, w)`` or ``(N, K, h, w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "GRADIENT_METHODS",
    "closed_form_weights",
    "contributions",
    "eigen_smooth",
    "eigencam",
    "gradcam",
    "gradcam_closed_form",
    "gradcampp",
    "gradient_method",
    "hirescam",
    "layercam",
    "normalize",
    "upsample",
    "weighted_channel_sum",
    "xgradcam",
]

GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam")


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


def _spatial_sum(activations: torch.Tensor) -> torch.Tensor:
    return activations.sum(dim=(-2, -1))


def _gradcampp_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    sums = _spatial_sum(activations)[..., None, None]  # (N, C, 1, 1)
    if gradients.ndim == 5:
        sums = sums.unsqueeze(1)
    squared = gradients**2
    alpha = squared / (2 * squared + sums * squared * gradients + 1e-6)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    return (gradients.clamp_min(0) * alpha).sum(dim=(-2, -1))


def gradcampp(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), as pytorch-grad-cam computes it.

    ``a = g² / (2g² + Σ_ij A · g³ + 1e-6)`` (0 where g = 0), ``w_k = Σ_ij relu(g) · a``,
    ``map = relu(Σ_k w_k A_k)``. ``gradients``: ``(N, C, h, w)`` or ``(N, K, C, h, w)``.
    """
    return _apply_weights(activations, _gradcampp_weights(activations, gradients))


def _xgradcam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    sums = _spatial_sum(activations)[..., None, None]
    product = (
        activations.unsqueeze(1) * gradients if gradients.ndim == 5 else activations * gradients
    )
    if gradients.ndim == 5:
        sums = sums.unsqueeze(1)
    return (product / (sums + 1e-7)).sum(dim=(-2, -1))


def xgradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): ``w_k = Σ_ij g · A / (Σ_ij A + 1e-7)``, ``relu(Σ_k w_k A_k)``."""
    return _apply_weights(activations, _xgradcam_weights(activations, gradients))


def hirescam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): ``relu(Σ_k g_k ⊙ A_k)``, element-wise, no averaging."""
    if gradients.ndim == 5:
        return (gradients * activations.unsqueeze(1)).sum(dim=2).relu()
    return (gradients * activations).sum(dim=1).relu()


def layercam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): ``relu(Σ_k relu(g_k) ⊙ A_k)``."""
    if gradients.ndim == 5:
        return (gradients.clamp_min(0) * activations.unsqueeze(1)).sum(dim=2).relu()
    return (gradients.clamp_min(0) * activations).sum(dim=1).relu()


def _apply_weights(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    if weights.ndim == 2:
        return torch.einsum("nc,nchw->nhw", weights, activations).relu()
    return torch.einsum("nkc,nchw->nkhw", weights, activations).relu()


def contributions(method: str, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """The per-channel terms a gradient method sums: ``map = relu(contributions.sum(C))``.

    ``w_k · A_k`` for Grad-CAM, Grad-CAM++ and XGrad-CAM; ``g_k ⊙ A_k`` for HiResCAM and
    ``relu(g_k) ⊙ A_k`` for LayerCAM. Eigen smoothing projects these instead of summing them.
    ``(N, C, h, w)`` for ``(N, C, h, w)`` gradients, ``(N, K, C, h, w)`` for ``(N, K, C, h, w)``.
    """
    stacked = activations.unsqueeze(1) if gradients.ndim == 5 else activations
    if method == "hirescam":
        return gradients * stacked
    if method == "layercam":
        return gradients.clamp_min(0) * stacked
    if method == "gradcam":
        weights = gradients.mean(dim=(-2, -1))
    elif method == "gradcampp":
        weights = _gradcampp_weights(activations, gradients)
    elif method == "xgradcam":
        weights = _xgradcam_weights(activations, gradients)
    else:
        raise ValueError(f"{method!r} is not a gradient method; choose one of {GRADIENT_METHODS}")
    return weights[..., None, None] * stacked


def eigen_smooth(weighted: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Eigen smoothing: each map becomes the projection of its weighted activations on their
    first principal component, ``relu``-ed — pytorch-grad-cam's ``eigen_smooth=True``
    (``get_2d_projection``), batched.

    ``weighted``: ``(..., C, h, w)``, the terms a method would sum over channels (``w_k · A_k``,
    or ``g_k ⊙ A_k`` for element-wise methods; see :func:`contributions`). Returns
    ``(..., h, w)``. Each ``(h·w, C)`` matrix is centred per channel and decomposed with NumPy's
    SVD, as the reference does, so the sign of the component (arbitrary in an SVD) is the one
    LAPACK returns there too; ``chunk`` maps are decomposed at a time to bound memory.
    """
    import numpy as np

    shape = weighted.shape
    channels, height, width = shape[-3:]
    flat = weighted.detach().float().reshape(-1, channels, height * width)
    out = []
    for start in range(0, flat.shape[0], chunk):
        block = flat[start : start + chunk].cpu().numpy().transpose(0, 2, 1)  # (B, h·w, C)
        block = np.nan_to_num(block - block.mean(axis=1, keepdims=True))
        _, _, vt = np.linalg.svd(block, full_matrices=False)
        out.append(torch.from_numpy(np.einsum("bpc,bc->bp", block, vt[:, 0, :])))
    maps = torch.cat(out).reshape(*shape[:-3], height, width)
    return maps.to(weighted.device).relu()


def gradient_method(name: str):
    """The full-gradient function of a gradient method: ``f(activations, gradients) -> maps``."""
    functions = {
        "gradcam": gradcam,
        "gradcampp": gradcampp,
        "xgradcam": xgradcam,
        "hirescam": hirescam,
        "layercam": layercam,
    }
    if name not in functions:
        raise ValueError(f"{name!r} is not a gradient method; choose one of {', '.join(functions)}")
    return functions[name]


def closed_form_weights(
    method: str, activations: torch.Tensor, gradient: torch.Tensor
) -> torch.Tensor:
    """Channel weights ``(N, K, C)`` of a gradient method when ``dY/dA`` is constant per channel.

    At a layer that feeds only global average pooling and a linear head, ``dY_c/dA_k(i, j) =
    W[c, k] / (h·w)`` at every position, so every gradient method reduces to channel weights:
    Grad-CAM and HiResCAM ``g``; XGrad-CAM ``g · S / (S + 1e-7)`` with ``S = Σ_ij A``;
    Grad-CAM++ ``h·w · relu(g) · g² / (2g² + S g³ + 1e-6)``; LayerCAM ``relu(g)``.

    Args:
        activations: ``(N, C, h, w)``; gradient: ``(N, K, C)`` or ``(K, C)`` (shared).
    """
    height, width = activations.shape[-2:]
    sums = _spatial_sum(activations)  # (N, C)
    g = (
        gradient
        if gradient.ndim == 3
        else gradient.unsqueeze(0).expand(activations.shape[0], -1, -1)
    )
    if method in ("gradcam", "hirescam"):
        return g
    if method == "layercam":
        return g.clamp_min(0)
    if method == "xgradcam":
        return g * (sums / (sums + 1e-7)).unsqueeze(1)
    if method == "gradcampp":
        squared = g**2
        alpha = squared / (2 * squared + sums.unsqueeze(1) * squared * g + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        return height * width * g.clamp_min(0) * alpha
    raise ValueError(f"no closed form for {method!r}")


def eigencam(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of each position's activation vector on the
    first principal component, ``relu``-ed; class-agnostic. ``(N, C, h, w) -> (N, h, w)``.

    The eigen smoothing of the raw activations (:func:`eigen_smooth`), as pytorch-grad-cam
    computes it, with the component's sign as NumPy's SVD returns it (so the map may highlight
    the "wrong" side; this matches the reference implementation rather than picking a sign).
    """
    return eigen_smooth(activations)
