"""Matplotlib grids for notebooks: methods × images or classes × images on one colour scale.

matplotlib is imported here only; figures are built with ``matplotlib.figure.Figure`` (no
pyplot state), so they work headless and in notebooks alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["heatmap_grid"]


def heatmap_grid(
    images: Sequence[np.ndarray],
    maps: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    column_labels: Sequence[str] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    vmin: float | None = None,
    vmax: float | None = None,
    cell: float = 2.2,
):
    """A grid: one row per method (or class), one column per image, one shared colour scale.

    Args:
        images: RGB uint8 images, one per column.
        maps: ``maps[row][column]``, each ``H×W`` at that image's size.
        row_labels: one per row (method or class names); ``column_labels``: one per image.
        masks: optional binary mask per image, drawn as a contour on every cell.
        vmin, vmax: the shared scale (default: min and max over every map).

    Returns:
        A ``matplotlib.figure.Figure`` with a colorbar for the shared scale.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    rows, columns = len(maps), len(images)
    if rows == 0 or columns == 0:
        raise ValueError("heatmap_grid needs at least one row of maps and one image")
    if len(row_labels) != rows or any(len(row) != columns for row in maps):
        raise ValueError(
            f"maps must be {len(row_labels)} rows × {columns} images; got "
            f"{[len(row) for row in maps]} for {len(row_labels)} labels"
        )
    for column, image in enumerate(images):
        for row in maps:
            if np.asarray(row[column]).shape != image.shape[:2]:
                raise ValueError(
                    f"map of image {column} is {np.asarray(row[column]).shape}, the image is "
                    f"{image.shape[:2]}; resample maps to the image size"
                )
    stacked = np.concatenate([np.asarray(m, np.float64).ravel() for row in maps for m in row])
    finite = stacked[np.isfinite(stacked)]
    low = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
    high = (
        float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    )
    if not high > low:
        high = low + 1.0
    norm = Normalize(low, high)
    figure = Figure(figsize=(cell * columns + 0.8, cell * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for r, row in enumerate(maps):
        for c, heatmap in enumerate(row):
            axis = axes[r][c]
            axis.imshow(images[c])
            axis.imshow(heatmap, cmap=cmap, norm=norm, alpha=alpha)
            if masks is not None and masks[c] is not None:
                axis.contour(
                    np.asarray(masks[c]) > 0, levels=[0.5], colors="magenta", linewidths=1.2
                )
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(row_labels[r])
            if r == 0 and column_labels is not None:
                axis.set_title(column_labels[c], fontsize=9)
    figure.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8, label="heatmap (shared scale)"
    )
    return figure
