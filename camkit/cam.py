"""CAM math as pure tensor functions.

Shapes: activations ``(N, C, h, w)``; gradients ``(N, C, h, w)`` for one target per image or
``(N, K, C, h, w)`` for K targets; maps ``(N, h, w)`` or ``(N, K, h, w)``.

Each gradient method is written once, as its weights ``*_weights(activations, gradients,
constant=False)``: per channel (Grad-CAM, Grad-CAM++, XGrad-CAM) or per position (HiResCAM,
LayerCAM). With ``constant=True`` the gradient is ``dY/dA`` constant over positions, ``(K, C)``
shared by all images or ``(N, K, C)`` — what a layer feeding global average pooling and a linear
head has — and the same formula gives the closed form's channel weights.
"""

from __future__ import annotations

from collections.abc import Callable

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
    "gradcam_weights",
    "gradcampp",
    "gradcampp_weights",
    "gradient_method",
    "hirescam",
    "hirescam_weights",
    "layercam",
    "layercam_weights",
    "normalize",
    "upsample",
    "weighted_channel_sum",
    "weighted_map",
    "weighted_terms",
    "xgradcam",
    "xgradcam_weights",
]

GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam")

Tensor = torch.Tensor


def weighted_channel_sum(activations: Tensor, weights: Tensor) -> Tensor:
    """``sum_k weights[..., k] * activations[:, k]``.

    Args:
        activations: ``(N, C, h, w)``.
        weights: ``(C,)``, ``(K, C)`` (shared by all images), ``(N, C)`` or ``(N, K, C)``.
            A 2-D weight whose first side equals N is read as ``(N, C)``.

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


def _stacked(activations: Tensor, gradients: Tensor) -> Tensor:
    """Activations lined up with the gradients: ``(N, 1, C, h, w)`` against K targets."""
    return activations.unsqueeze(1) if gradients.ndim == 5 else activations


def _sums(activations: Tensor, gradients: Tensor, constant: bool) -> Tensor:
    """``S_k = Σ_ij A_k``, broadcastable against the gradients."""
    sums = activations.sum(dim=(-2, -1))  # (N, C)
    if constant:
        return sums.unsqueeze(1)  # (N, 1, C) against (K, C) or (N, K, C)
    return _stacked(sums[..., None, None], gradients)  # (N, [1,] C, 1, 1)


def weighted_terms(activations: Tensor, weights: Tensor) -> Tensor:
    """The per-channel terms a map sums: ``w_k · A_k`` for channel weights ``(N, [K,] C)``,
    ``w_k ⊙ A_k`` for weights per position ``(N, [K,] C, h, w)``. Returns ``(N, [K,] C, h, w)``."""
    if weights.ndim <= 3:
        weights = weights[..., None, None]
    return weights * (activations.unsqueeze(1) if weights.ndim == 5 else activations)


def weighted_map(activations: Tensor, weights: Tensor) -> Tensor:
    """``relu(Σ_k w_k A_k)``: weights per channel ``(N, C)`` / ``(N, K, C)`` (one ``einsum``)
    or per position ``(N, C, h, w)`` / ``(N, K, C, h, w)``. Returns ``(N, [K,] h, w)``."""
    if weights.ndim == 2:
        return torch.einsum("nc,nchw->nhw", weights, activations).relu()
    if weights.ndim == 3:
        return torch.einsum("nkc,nchw->nkhw", weights, activations).relu()
    return weighted_terms(activations, weights).sum(dim=-3).relu()


def gradcam_weights(activations: Tensor, gradients: Tensor, constant: bool = False) -> Tensor:
    """Grad-CAM's channel weights ``alpha_k = mean_ij dY/dA_k(i, j)`` (``g`` when constant)."""
    return gradients if constant else gradients.mean(dim=(-2, -1))


def gradcampp_weights(activations: Tensor, gradients: Tensor, constant: bool = False) -> Tensor:
    """Grad-CAM++'s channel weights, as pytorch-grad-cam computes them.

    ``w_k = Σ_ij relu(g) · a`` with ``a = g² / (2g² + S_k · g³ + 1e-6)`` (0 where g = 0) and
    ``S_k = Σ_ij A_k``; for a constant gradient the sum is ``h·w`` times the term.
    """
    sums = _sums(activations, gradients, constant)
    squared = gradients**2
    alpha = squared / (2 * squared + sums * squared * gradients + 1e-6)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    positive = gradients.clamp_min(0)
    if constant:
        height, width = activations.shape[-2:]
        return height * width * positive * alpha
    return (positive * alpha).sum(dim=(-2, -1))


def xgradcam_weights(activations: Tensor, gradients: Tensor, constant: bool = False) -> Tensor:
    """XGrad-CAM's channel weights ``w_k = Σ_ij g · A_k / (S_k + 1e-7)``, ``S_k = Σ_ij A_k``
    (``g · S_k / (S_k + 1e-7)`` for a constant gradient)."""
    sums = _sums(activations, gradients, constant)
    if constant:
        return gradients * (sums / (sums + 1e-7))
    return (_stacked(activations, gradients) * gradients / (sums + 1e-7)).sum(dim=(-2, -1))


def hirescam_weights(activations: Tensor, gradients: Tensor, constant: bool = False) -> Tensor:
    """HiResCAM weighs each position by its gradient: ``g`` itself, element-wise."""
    return gradients


def layercam_weights(activations: Tensor, gradients: Tensor, constant: bool = False) -> Tensor:
    """LayerCAM weighs each position by its positive gradient: ``relu(g)``, element-wise."""
    return gradients.clamp_min(0)


def gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017).

    ``alpha_k = mean_ij dY/dA_k(i, j)``, ``map = relu(sum_k alpha_k A_k)``.

    Args:
        activations: ``(N, C, h, w)``.
        gradients: ``(N, C, h, w)`` or ``(N, K, C, h, w)``.
    """
    return weighted_map(activations, gradcam_weights(activations, gradients))


def gradcampp(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), as pytorch-grad-cam computes it.

    ``a = g² / (2g² + Σ_ij A · g³ + 1e-6)`` (0 where g = 0), ``w_k = Σ_ij relu(g) · a``,
    ``map = relu(Σ_k w_k A_k)``. ``gradients``: ``(N, C, h, w)`` or ``(N, K, C, h, w)``.
    """
    return weighted_map(activations, gradcampp_weights(activations, gradients))


def xgradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020): ``w_k = Σ_ij g · A / (Σ_ij A + 1e-7)``, ``relu(Σ_k w_k A_k)``."""
    return weighted_map(activations, xgradcam_weights(activations, gradients))


def hirescam(activations: Tensor, gradients: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin 2020): ``relu(Σ_k g_k ⊙ A_k)``, element-wise, no averaging."""
    return weighted_map(activations, hirescam_weights(activations, gradients))


def layercam(activations: Tensor, gradients: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021): ``relu(Σ_k relu(g_k) ⊙ A_k)``."""
    return weighted_map(activations, layercam_weights(activations, gradients))


WeightsFunction = Callable[..., Tensor]

_WEIGHTS: dict[str, WeightsFunction] = {
    "gradcam": gradcam_weights,
    "gradcampp": gradcampp_weights,
    "xgradcam": xgradcam_weights,
    "hirescam": hirescam_weights,
    "layercam": layercam_weights,
}


def _weights_of(method: str) -> WeightsFunction:
    if method not in _WEIGHTS:
        raise ValueError(f"{method!r} is not a gradient method; choose one of {GRADIENT_METHODS}")
    return _WEIGHTS[method]


def gradient_method(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The full-gradient function of a gradient method: ``f(activations, gradients) -> maps``."""
    functions = dict(zip(GRADIENT_METHODS, (gradcam, gradcampp, xgradcam, hirescam, layercam)))
    if name not in functions:
        raise ValueError(f"{name!r} is not a gradient method; choose one of {', '.join(functions)}")
    return functions[name]


def contributions(method: str, activations: Tensor, gradients: Tensor) -> Tensor:
    """The per-channel terms a gradient method sums: ``map = relu(contributions.sum(C))``.

    ``w_k · A_k`` for Grad-CAM, Grad-CAM++ and XGrad-CAM; ``g_k ⊙ A_k`` for HiResCAM and
    ``relu(g_k) ⊙ A_k`` for LayerCAM. Eigen smoothing projects these instead of summing them.
    ``(N, C, h, w)`` for ``(N, C, h, w)`` gradients, ``(N, K, C, h, w)`` for ``(N, K, C, h, w)``.
    """
    return weighted_terms(activations, _weights_of(method)(activations, gradients))


def closed_form_weights(method: str, activations: Tensor, gradient: Tensor) -> Tensor:
    """Channel weights ``(N, K, C)`` of a gradient method when ``dY/dA`` is constant per channel.

    At a layer that feeds only global average pooling and a linear head, ``dY_c/dA_k(i, j) =
    W[c, k] / (h·w)`` at every position, so every gradient method reduces to channel weights:
    Grad-CAM and HiResCAM ``g``; XGrad-CAM ``g · S / (S + 1e-7)`` with ``S = Σ_ij A``;
    Grad-CAM++ ``h·w · relu(g) · g² / (2g² + S g³ + 1e-6)``; LayerCAM ``relu(g)``.

    Args:
        activations: ``(N, C, h, w)``; gradient: ``(N, K, C)`` or ``(K, C)`` (shared).
    """
    if method not in _WEIGHTS:
        raise ValueError(f"no closed form for {method!r}")
    weights = _WEIGHTS[method](activations, gradient, constant=True)
    return weights.expand(activations.shape[0], -1, -1) if weights.ndim == 2 else weights


def gradcam_closed_form(
    activations: Tensor,
    head_weight: Tensor,
    class_ids: Tensor | None = None,
) -> Tensor:
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
    gradient = head_weight / (height * width)  # (classes, C): dY_c/dA_k, the same everywhere
    if class_ids is None:  # a stride-0 view: every class costs the same einsum as a subset
        return weighted_map(activations, gradient.expand(activations.shape[0], -1, -1))
    return weighted_map(activations, gradient[class_ids])  # (N, K, C) per image and target


def normalize(maps: Tensor) -> Tensor:
    """Map each ``(h, w)`` map linearly to [0, 1] (min → 0, max → 1); a flat map becomes zeros."""
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), 0)
    return scaled.view_as(maps)


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resampling with ``align_corners=False``, camkit's one convention.

    Accepts ``(h, w)``, ``(N, h, w)`` or ``(N, K, h, w)``.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    shape = maps.shape
    flat = maps.reshape(-1, 1, *shape[-2:]).float()
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*shape[:-2], *size)


def eigen_smooth(weighted: Tensor, chunk: int = 64) -> Tensor:
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


def eigencam(activations: Tensor) -> Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of each position's activation vector on the
    first principal component, ``relu``-ed; class-agnostic. ``(N, C, h, w) -> (N, h, w)``.

    The eigen smoothing of the raw activations (:func:`eigen_smooth`), as pytorch-grad-cam
    computes it, with the component's sign as NumPy's SVD returns it (so the map may highlight
    the "wrong" side; this matches the reference implementation rather than picking a sign).
    """
    return eigen_smooth(activations)
