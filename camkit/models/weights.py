"""Locally cached pretrained weights (never downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["imagenet_weights_cached"]


def imagenet_weights_cached() -> Path | None:
    """The cached torchvision ResNet-50 ImageNet file, if present (never downloads)."""
    import torchvision

    weights = torchvision.models.ResNet50_Weights.DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    return path if path.is_file() else None
