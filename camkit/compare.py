"""Heatmap-vs-mask metrics: pure functions on a heatmap ``(H, W)`` and a binary mask ``(H, W)``.

A mask with no foreground makes a metric "not applicable": ``None``, never a hit.
"""

from __future__ import annotations

import numpy as np

__all__ = ["energy_in_mask", "pointing_game"]


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
