"""Segmentation metrics: IoU and Dice of binary masks."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["segmentation_scores"]


def segmentation_scores(predicted: torch.Tensor, truth: torch.Tensor) -> dict:
    """IoU and Dice of binary masks ``(N, H, W)``: per-image means and data-set-wide.

    An image where both masks are empty scores 1 (a correct "nothing here").
    """
    predicted, truth = predicted.bool().flatten(1), truth.bool().flatten(1)
    intersection = (predicted & truth).sum(1).double()
    union = (predicted | truth).sum(1).double()
    sizes = predicted.sum(1).double() + truth.sum(1).double()
    empty = union == 0
    iou = torch.where(empty, torch.ones_like(union), intersection / union.clamp_min(1))
    dice = torch.where(empty, torch.ones_like(union), 2 * intersection / sizes.clamp_min(1))
    return {
        "intersection": float(intersection.sum()),
        "union": float(union.sum()),
        "sizes": float(sizes.sum()),
        "iou_per_image": iou.tolist(),
        "dice_per_image": dice.tolist(),
    }


def _summarise(parts: list[dict]) -> dict:
    intersection = sum(p["intersection"] for p in parts)
    union = sum(p["union"] for p in parts)
    sizes = sum(p["sizes"] for p in parts)
    ious = [v for p in parts for v in p["iou_per_image"]]
    dices = [v for p in parts for v in p["dice_per_image"]]
    return {
        "iou": float(np.mean(ious)) if ious else math.nan,
        "dice": float(np.mean(dices)) if dices else math.nan,
        "iou_dataset": intersection / union if union else 1.0,
        "dice_dataset": 2 * intersection / sizes if sizes else 1.0,
        "images": len(ious),
    }
