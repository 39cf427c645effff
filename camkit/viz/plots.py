"""Matplotlib grids for notebooks: methods × images or classes × images on one colour scale,
and two models' maps side by side.

matplotlib is imported here only; figures are built with ``matplotlib.figure.Figure`` (no
pyplot state), so they work headless and in notebooks alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["heatmap_grid", "map_pair_grid", "save_figure"]


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


def map_pair_grid(
    images: Sequence[np.ndarray],
    first_maps: Sequence[np.ndarray],
    second_maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    true_masks: Sequence[np.ndarray | None] | None = None,
    titles: Sequence[Sequence[str]] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    cell: float = 2.4,
):
    """One row per image: ``image | first map | second map``, every cell with the masks' contours.

    Each map is shown divided by its own maximum (its positive part, on one 0–1 colour scale):
    two models' maps have unrelated units, so only where each puts its mass is compared.

    Args:
        images: RGB uint8 images; ``first_maps``, ``second_maps``: one ``H×W`` map per image at
            its size (e.g. a classifier's and a segmenter's).
        masks: a binary mask per image, drawn as a solid magenta contour (e.g. predicted);
            ``true_masks``: optional second masks, dashed white (``None`` entries are skipped).
        titles: per image, the three cells' titles (default: ``image``, ``first``, ``second``).

    Returns:
        A ``matplotlib.figure.Figure`` with a colorbar and a legend of the contours, made without
        pyplot (no global state, safe in threads): ``plt.show()`` does not know it, so in a
        notebook end the cell with the figure, and elsewhere ``figure.savefig(path)``.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = len(images)
    true_masks = list(true_masks) if true_masks is not None else [None] * rows
    titles = list(titles) if titles is not None else [("image", "first", "second")] * rows
    if rows == 0:
        raise ValueError("map_pair_grid needs at least one image")
    counts = {len(first_maps), len(second_maps), len(masks), len(true_masks), len(titles)}
    if counts != {rows}:
        raise ValueError(
            f"{rows} images but {len(first_maps)} first maps, {len(second_maps)} second maps, "
            f"{len(masks)} masks, {len(true_masks)} true masks and {len(titles)} titles; give "
            "one of each per image"
        )
    for index, image in enumerate(images):
        for name, array in (("first map", first_maps[index]), ("second map", second_maps[index]),
                            ("mask", masks[index]), ("true mask", true_masks[index])):  # fmt: skip
            if array is not None and np.asarray(array).shape != image.shape[:2]:
                raise ValueError(
                    f"{name} of image {index} is {np.asarray(array).shape}, the image is "
                    f"{image.shape[:2]}; resample maps and masks to the image size"
                )
    norm = Normalize(0.0, 1.0)
    figure = Figure(figsize=(cell * 3 + 0.9, cell * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, 3, squeeze=False)
    for row in range(rows):
        cells = (None, first_maps[row], second_maps[row])
        for column, heatmap in enumerate(cells):
            axis = axes[row][column]
            axis.imshow(images[row])
            if heatmap is not None:
                positive = np.clip(np.nan_to_num(np.asarray(heatmap, np.float64)), 0.0, None)
                top = positive.max()
                shown = positive / top if top > 0 else positive
                axis.imshow(shown, cmap=cmap, norm=norm, alpha=alpha)
            axis.contour(np.asarray(masks[row]) > 0, levels=[0.5], colors="magenta",
                         linewidths=1.4)  # fmt: skip
            if true_masks[row] is not None:
                axis.contour(np.asarray(true_masks[row]) > 0, levels=[0.5], colors="white",
                             linewidths=1.2, linestyles="dashed")  # fmt: skip
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(titles[row][column], fontsize=8)
    shrink = min(0.8, 0.2 + 1.2 / rows)  # a colorbar of about two rows' height
    figure.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=shrink, label="map / its maximum"
    )
    handles = [Line2D([], [], color="magenta", lw=1.4, label="mask")]
    if any(m is not None for m in true_masks):
        handles[0].set_label("predicted mask")
        handles.append(Line2D([], [], color="black", lw=1.2, ls="--", label="true mask (white)"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    return figure


def save_figure(path: str | os.PathLike, figure, dpi: int = 100) -> Path:
    """Write a matplotlib figure atomically (temporary file, then rename); format from suffix."""
    from camkit.io.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=(path.suffix.lstrip(".") or "png"))
    return path
