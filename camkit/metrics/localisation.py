"""Heatmap-vs-mask metrics: pure functions on a heatmap ``(H, W)`` and a binary mask ``(H, W)``.

A mask with no foreground makes a metric "not applicable": ``None``, never a hit.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "average_precision",
    "energy_in_mask",
    "heatmap_metrics",
    "otsu_overlap",
    "pixel_auc",
    "pointing_game",
    "rank_correlation",
    "relevance_rank_accuracy",
    "threshold_overlap",
    "top_region_iou",
]


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


def _two_maps(first, second) -> tuple[np.ndarray, np.ndarray]:
    """Two heatmaps of one size, flattened, NaN read as the lowest value in both (so the
    metrics of two maps are symmetric)."""
    a, b = (np.asarray(m, dtype=np.float64) for m in (first, second))
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"the heatmaps must be H×W of one size, got {a.shape} and {b.shape}")
    a, b = (np.nan_to_num(m, nan=-np.inf) for m in (a, b))
    if a.size == 0:
        raise ValueError(f"the heatmaps are {a.shape[1]}×{a.shape[0]}: they have no pixels")
    return a.ravel(), b.ravel()


def pointing_game(heatmap, mask, tolerance: float = 15.0) -> bool | None:
    """Hit when a maximum of the heatmap lies within ``tolerance`` px of the mask.

    ``hit = min over argmax(H) of dist(p, M) <= tolerance`` (Zhang et al. 2016), distance in
    pixels at the heatmap's own size (resample the heatmap to the image first). Returns
    ``None`` for an empty mask (not applicable — Quantus counts it as a hit) and ``False`` for a
    flat heatmap (it points nowhere).
    """
    import cv2

    heatmap, mask = _check(heatmap, mask)
    if not mask.any():
        return None
    if not np.isfinite(heatmap).any() or heatmap.max() == heatmap.min():
        return False
    maxima = heatmap == heatmap.max()  # every pixel at the maximum counts, as in Quantus
    if (maxima & mask).any():
        return True
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return bool(distance[maxima].min() <= tolerance)


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
    a, b = _two_maps(first, second)
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else None


def top_region_iou(first, second, fraction: float = 0.2) -> float:
    """IoU of the top ``fraction`` pixels of two heatmaps (exactly ``ceil(fraction·HW)`` each,
    ties broken by position)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b = _two_maps(first, second)
    k = int(np.ceil(fraction * a.size))
    top_a = np.zeros(a.size, bool)
    top_b = np.zeros(a.size, bool)
    top_a[np.argsort(-a, kind="mergesort")[:k]] = True
    top_b[np.argsort(-b, kind="mergesort")[:k]] = True
    return float((top_a & top_b).sum() / (top_a | top_b).sum())


def _overlap(region: np.ndarray, mask: np.ndarray) -> dict:
    intersection = float((region & mask).sum())
    union = float((region | mask).sum())
    size = float(region.sum() + mask.sum())
    return {
        "iou": intersection / union if union else 1.0,
        "dice": 2 * intersection / size if size else 1.0,
    }


def threshold_overlap(heatmap, mask, fraction: float = 0.2) -> dict | None:
    """IoU and Dice of the region ``H >= fraction · max(H)`` with the mask.

    A heatmap with no positive value selects nothing. ``None`` for an empty mask.
    """
    heatmap, mask = _check(heatmap, mask)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not mask.any():
        return None
    top = heatmap.max() if np.isfinite(heatmap).any() else 0.0
    region = heatmap >= fraction * top if top > 0 else np.zeros_like(mask)
    return _overlap(region, mask)


def otsu_overlap(heatmap, mask) -> dict | None:
    """IoU and Dice of the region above Otsu's threshold (heatmap scaled to 0–255) with the mask.

    A flat heatmap selects nothing. ``None`` for an empty mask.
    """
    import cv2

    heatmap, mask = _check(heatmap, mask)
    if not mask.any():
        return None
    finite = np.where(np.isfinite(heatmap), heatmap, np.nan)
    low, high = np.nanmin(finite), np.nanmax(finite)
    if not high > low:
        return _overlap(np.zeros_like(mask), mask)
    scaled = np.round(np.nan_to_num((finite - low) / (high - low)) * 255).astype(np.uint8)
    threshold, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return _overlap(scaled > threshold, mask)


def pixel_auc(heatmap, mask) -> float | None:
    """ROC-AUC of the heatmap as a pixel classifier of the mask (ties count one half).

    ``AUC = (Σ rank(positives) − P(P + 1)/2) / (P·N)`` (Mann–Whitney). ``None`` when the mask
    is empty or full.
    """
    heatmap, mask = _check(heatmap, mask)
    values, labels = np.nan_to_num(heatmap.ravel(), neginf=-1e300), mask.ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = _ranks(values)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(heatmap, mask) -> float | None:
    """Pixel average precision (PxAP, Choe et al. 2020): ``Σ (Rₙ − Rₙ₋₁) · Pₙ`` over the
    distinct heatmap values taken as thresholds, high to low (as scikit-learn's
    ``average_precision_score``). ``None`` for an empty mask.
    """
    heatmap, mask = _check(heatmap, mask)
    values, labels = np.nan_to_num(heatmap.ravel(), neginf=-1e300), mask.ravel()
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-values, kind="mergesort")
    values, labels = values[order], labels[order]
    last_of_run = np.append(values[1:] != values[:-1], True)
    true_positives = np.cumsum(labels)[last_of_run]
    predicted = (np.flatnonzero(last_of_run) + 1).astype(np.float64)
    precision = true_positives / predicted
    recall = true_positives / positives
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def relevance_rank_accuracy(heatmap, mask) -> float | None:
    """Share of the ``|M|`` highest-valued pixels that lie inside the mask (Arras et al. 2022).

    Ties are broken by position. ``None`` for an empty mask.
    """
    heatmap, mask = _check(heatmap, mask)
    size = int(mask.sum())
    if size == 0:
        return None
    order = np.argsort(-np.nan_to_num(heatmap.ravel(), neginf=-1e300), kind="mergesort")
    return float(mask.ravel()[order[:size]].mean())


def heatmap_metrics(heatmap, mask, tolerance: float = 15.0, fractions=(0.15, 0.2, 0.5)) -> dict:
    """Every heatmap-vs-mask metric for one ``(H, W)`` heatmap and binary mask of the same size.

    Keys: ``pointing_game``, ``energy_in_mask``, ``iou@F``/``dice@F`` for each fraction,
    ``iou_otsu``/``dice_otsu``, ``auc``, ``pxap``, ``rank_accuracy``; ``None`` where a metric is
    not applicable (empty mask; AUC also for a full mask).
    """
    heatmap, mask = np.asarray(heatmap, dtype=np.float64), np.asarray(mask) > 0
    _check(heatmap, mask)
    hit = pointing_game(heatmap, mask, tolerance)
    out: dict = {
        "pointing_game": None if hit is None else float(hit),
        "energy_in_mask": energy_in_mask(heatmap, mask),
    }
    for fraction in fractions:
        overlap = threshold_overlap(heatmap, mask, fraction)
        out[f"iou@{fraction:g}"] = None if overlap is None else overlap["iou"]
        out[f"dice@{fraction:g}"] = None if overlap is None else overlap["dice"]
    overlap = otsu_overlap(heatmap, mask)
    out["iou_otsu"] = None if overlap is None else overlap["iou"]
    out["dice_otsu"] = None if overlap is None else overlap["dice"]
    out["auc"] = pixel_auc(heatmap, mask)
    out["pxap"] = average_precision(heatmap, mask)
    out["rank_accuracy"] = relevance_rank_accuracy(heatmap, mask)
    return out
