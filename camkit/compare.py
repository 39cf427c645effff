"""Heatmap-vs-mask metrics: pure functions on a heatmap ``(H, W)`` and a binary mask ``(H, W)``.

A mask with no foreground makes a metric "not applicable": ``None``, never a hit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["energy_in_mask", "pointing_game", "rank_correlation", "top_region_iou"]


def _check(heatmap, mask) -> tuple[np.ndarray, np.ndarray]:
    heatmap = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(mask)
    if heatmap.ndim != 2 or mask.ndim != 2:
        raise ValueError(f"heatmap and mask must be H×W, got {heatmap.shape} and {mask.shape}")
    if heatmap.shape != mask.shape:
        raise ValueError(
            f"heatmap is {heatmap.shape[1]}×{heatmap.shape[0]} but the mask is "
            f"{mask.shape[1]}×{mask.shape[0]}; resample the heatmap to the image size "
            "(Heatmaps.upsample) or resize the mask (--resize-mask)"
        )
    return np.nan_to_num(heatmap, nan=-np.inf), mask > 0


def pointing_game(heatmap, mask, tolerance: float = 15.0) -> bool | None:
    """Hit when the heatmap's maximum lies within ``tolerance`` px of the mask.

    ``hit = dist(argmax(H), M) <= tolerance`` (Zhang et al. 2016), distance in pixels at the
    heatmap's own size. Returns ``None`` for an empty mask (not applicable) and ``False`` for
    a flat heatmap (it points nowhere).
    """
    import cv2

    heatmap, mask = _check(heatmap, mask)
    if not mask.any():
        return None
    if not np.isfinite(heatmap).any() or heatmap.max() == heatmap.min():
        return False
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    if mask[y, x]:
        return True
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return bool(distance[y, x] <= tolerance)


def energy_in_mask(heatmap, mask) -> float | None:
    """Share of the positive heatmap mass inside the mask: ``sum(relu(H)·M) / sum(relu(H))``.

    ``None`` for an empty mask; ``0.0`` for a heatmap with no positive mass.
    """
    heatmap, mask = _check(heatmap, mask)
    if not mask.any():
        return None
    positive = np.clip(np.where(np.isfinite(heatmap), heatmap, 0.0), 0.0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions (as scipy's rankdata)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_run = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    run = np.cumsum(starts_run) - 1
    starts = np.flatnonzero(starts_run)
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[run]
    return ranks


def rank_correlation(first, second) -> float | None:
    """Spearman rank correlation of two heatmaps of the same size (ties get average ranks).

    ``None`` when either map is flat (the correlation is undefined).
    """
    a, b = _check(first, second)[0].ravel(), np.asarray(second, dtype=np.float64).ravel()
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else None


def top_region_iou(first, second, fraction: float = 0.2) -> float:
    """IoU of the top ``fraction`` pixels of two heatmaps (exactly ``ceil(fraction·HW)`` each,
    ties broken by position)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b = _check(first, second)[0].ravel(), np.asarray(second, dtype=np.float64).ravel()
    k = int(np.ceil(fraction * a.size))
    top_a = np.zeros(a.size, bool)
    top_b = np.zeros(a.size, bool)
    top_a[np.argsort(-a, kind="mergesort")[:k]] = True
    top_b[np.argsort(-b, kind="mergesort")[:k]] = True
    return float((top_a & top_b).sum() / (top_a | top_b).sum())
