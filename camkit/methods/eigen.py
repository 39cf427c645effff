"""Eigen-CAM: the first principal component of the activations; one forward, class-agnostic."""

from __future__ import annotations

from camkit.cam import eigencam
from camkit.methods.base import Method
from camkit.methods.registry import register

__all__ = ["EIGENCAM"]

EIGENCAM = register(
    Method(
        "eigencam",
        needs="forward",
        activation_map=eigencam,
        description="Eigen-CAM: projection on the activations' first principal component",
    )
)
