"""Eigen-CAM and KPCA-CAM: the activations projected on their first (kernel) principal
component; one forward, class-agnostic."""

from __future__ import annotations

import torch

from camkit.cam import eigencam
from camkit.methods.base import ActivationMapFn, Method, Tensor
from camkit.methods.registry import register

__all__ = ["EIGENCAM", "KERNELS", "KPCACAM", "kernel_pca"]

KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")


def _kernel(points: Tensor, kernel: str, gamma: float | None) -> Tensor:
    """scikit-learn's pairwise kernels (``coef0 = 1``, ``degree = 3``) of ``points (P, C)``."""
    gamma = 1.0 / points.shape[1] if gamma is None else gamma
    dots = points @ points.T
    if kernel == "sigmoid":
        return torch.tanh(gamma * dots + 1)
    if kernel == "poly":
        return (gamma * dots + 1) ** 3
    if kernel == "linear":
        return dots
    if kernel == "cosine":
        norms = points.norm(dim=1).clamp_min(1e-300)
        return dots / norms[:, None] / norms[None, :]
    squared = dots.diagonal()
    return torch.exp(-gamma * (squared[:, None] + squared[None, :] - 2 * dots).clamp_min(0))


def kernel_pca(kernel: str = "sigmoid", gamma: float | None = None) -> ActivationMapFn:
    """KPCA-CAM (Karmani et al. 2024): each position's activation vector (centred over
    positions) projected on the first kernel principal component, ``relu``-ed.
    ``(N, C, h, w) -> (N, h, w)``.

    As pytorch-grad-cam computes it with scikit-learn's ``KernelPCA(n_components=1)``: the
    centred kernel matrix's top eigenvector ``v`` (sign: its largest entry in absolute value
    positive) times ``sqrt(λ)``, in float64. ``gamma``: ``1 / C`` when ``None``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")

    def activation_map(activations: Tensor) -> Tensor:
        maps = []
        for sample in activations:  # (C, h, w): one kernel matrix per image
            points = torch.nan_to_num(sample.flatten(1).T.double())  # (P, C)
            points = points - points.mean(dim=0)
            matrix = _kernel(points, kernel, gamma)
            rows = matrix.mean(dim=0, keepdim=True)
            matrix = matrix - rows - matrix.mean(dim=1, keepdim=True) + rows.mean()
            values, vectors = torch.linalg.eigh(matrix)
            top, vector = values[-1].clamp_min(0), vectors[:, -1]
            vector = vector * torch.sign(vector[vector.abs().argmax()])
            maps.append((vector * top.sqrt()).reshape(sample.shape[1:]))
        return torch.stack(maps).float().relu()

    return activation_map


EIGENCAM = register(
    Method(
        "eigencam",
        needs="forward",
        activation_map=eigencam,
        description="Eigen-CAM: projection on the activations' first principal component",
    )
)
KPCACAM = register(
    Method(
        "kpcacam",
        needs="forward",
        activation_map=kernel_pca(),
        description="KPCA-CAM: projection on the first kernel (sigmoid) principal component",
    )
)
