"""Summary statistics of per-image metrics."""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_summary"]


def bootstrap_summary(values, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean, median and a 95 % percentile-bootstrap interval of the mean (``None``s skipped)."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return {"n": 0, "mean": None, "median": None, "ci95_low": None, "ci95_high": None}
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (resamples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "n": int(data.size),
        "mean": float(data.mean()),
        "median": float(np.median(data)),
        "ci95_low": float(low),
        "ci95_high": float(high),
    }
