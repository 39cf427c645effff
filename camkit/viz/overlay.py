"""OpenCV overlays and panels. Arrays are RGB uint8; BGR exists only at ``save_image``.

The blend is linear in the heatmap on a stated scale: a value ``v`` maps to colormap index
``255 · (v − vmin) / (vmax − vmin)`` (clipped), and the panel's colorbar prints vmin and vmax.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from camkit.io.files import atomic_path

__all__ = [
    "COLORMAPS",
    "colorbar",
    "colorize",
    "comparison_panel",
    "draw_contours",
    "hstack",
    "overlay",
    "panel",
    "save_image",
    "titled",
]

COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma", "hot")


def _cv2_colormap(name: str) -> int:
    import cv2

    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    return getattr(cv2, f"COLORMAP_{name.upper()}")


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _scale(heatmap: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    finite = heatmap[np.isfinite(heatmap)]
    low = float(finite.min()) if vmin is None and finite.size else (vmin or 0.0)
    high = (
        float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    )
    return low, high


def colorize(
    heatmap: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    colormap: str = "jet",
) -> np.ndarray:
    """``H×W`` float heatmap → RGB uint8 colours, linear from ``vmin`` (index 0) to ``vmax`` (255).

    ``vmin``/``vmax`` default to the map's own min and max; a flat map gets index 0.
    """
    import cv2

    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be H×W, got shape {heatmap.shape}")
    low, high = _scale(heatmap, vmin, vmax)
    span = high - low
    scaled = (heatmap - low) / span if span > 0 else np.zeros_like(heatmap)
    index = np.round(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(index, _cv2_colormap(colormap)), cv2.COLOR_BGR2RGB)


def draw_contours(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (255, 255, 255),
    thickness: int = 2,
) -> np.ndarray:
    """Draw the outline of a binary mask (same H×W as the image) on a copy of the image."""
    import cv2

    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape[:2]} but the image is {image.shape[:2]}")
    contours, _ = cv2.findContours(
        (mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    out = np.ascontiguousarray(image.copy())
    cv2.drawContours(out, contours, -1, color, thickness, lineType=cv2.LINE_AA)
    return out


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.5,
    vmin: float | None = None,
    vmax: float | None = None,
    colormap: str = "jet",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Blend ``(1 − alpha) · image + alpha · colorize(heatmap)``; optional mask contour on top.

    Args:
        image: RGB uint8 ``H×W×3``.
        heatmap: float ``H×W`` (same size as the image; resample it first, e.g.
            ``heatmaps.normalized(size=image.shape[:2])``).
        alpha: weight of the colour layer, in [0, 1].
    """
    alpha = _check_alpha(alpha)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 H×W×3, got {image.dtype} {image.shape}")
    if np.asarray(heatmap).shape != image.shape[:2]:
        raise ValueError(
            f"heatmap is {np.asarray(heatmap).shape} but the image is {image.shape[:2]}; "
            "resample the heatmap to the image size first"
        )
    colours = colorize(heatmap, vmin, vmax, colormap).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    out = np.round(blended).astype(np.uint8)
    if mask is not None:
        out = draw_contours(out, mask)
    return out


def colorbar(
    height: int, vmin: float, vmax: float, colormap: str = "jet", width: int = 78
) -> np.ndarray:
    """A vertical colorbar tile (RGB) labelled with vmax at the top and vmin at the bottom."""
    import cv2

    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(16, axis=1)
    bar = colorize(ramp, 0.0, 1.0, colormap)
    tile = np.full((height, width, 3), 255, np.uint8)
    tile[:, 4:20] = bar
    font = cv2.FONT_HERSHEY_SIMPLEX
    for text, y in (
        (f"{vmax:.3g}", 12),
        (f"{(vmin + vmax) / 2:.3g}", height // 2 + 4),
        (f"{vmin:.3g}", height - 4),
    ):
        cv2.putText(tile, text, (23, y), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def titled(tile: np.ndarray, title: str, band: int = 22) -> np.ndarray:
    """The tile with a white title band of ``band`` px above it."""
    import cv2

    out = np.full((tile.shape[0] + band, tile.shape[1], 3), 255, np.uint8)
    out[band:] = tile
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    text = title
    while len(text) > 1 and cv2.getTextSize(text, font, scale, 1)[0][0] > tile.shape[1] - 6:
        text = text[:-2] + "~"  # Hershey fonts have no ellipsis
    cv2.putText(out, text, (3, band - 7), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


MAX_ASPECT = 4  # a panel tile is at most this many times as wide as it is tall


def _fitter(shape: tuple[int, int], height: int):
    """Resizes a tile of an image of ``shape`` to ``height`` px; an image more than
    ``MAX_ASPECT`` times as wide as tall is fitted to that width and centred on white (a
    2×10,000 px image would otherwise make a tile over a million pixels wide)."""
    import cv2

    scale = min(height / shape[0], MAX_ASPECT * height / shape[1])
    size = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR

    def fit(tile: np.ndarray) -> np.ndarray:
        fitted = cv2.resize(tile, size, interpolation=interpolation)
        if size[1] == height:
            return fitted
        out = np.full((height, size[0], *tile.shape[2:]), 255, tile.dtype)
        top = (height - size[1]) // 2
        out[top : top + size[1]] = fitted
        return out

    return fit


def panel(
    image: np.ndarray,
    heatmaps: Sequence[np.ndarray],
    titles: Sequence[str],
    alpha: float = 0.5,
    colormap: str = "jet",
    mask: np.ndarray | None = None,
    height: int = 256,
    image_title: str = "image",
) -> np.ndarray:
    """``image | overlay per heatmap | colorbar`` on one shared scale (min..max over all maps).

    Heatmaps are ``H×W`` at the image's size; the panel is resized to ``height`` pixels.
    """

    alpha = _check_alpha(alpha)
    if len(heatmaps) != len(titles):
        raise ValueError(f"{len(heatmaps)} heatmaps but {len(titles)} titles")
    stacked = (
        np.stack([np.asarray(h, np.float32) for h in heatmaps]) if heatmaps else np.zeros((1, 1, 1))
    )
    finite = stacked[np.isfinite(stacked)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    fit = _fitter(image.shape[:2], height)
    base = image if mask is None else draw_contours(image, mask)
    tiles = [titled(fit(base), image_title)]
    for heatmap, title in zip(heatmaps, titles):
        tiles.append(titled(fit(overlay(image, heatmap, alpha, vmin, vmax, colormap, mask)), title))
    tiles.append(titled(colorbar(height, vmin, vmax, colormap), "scale"))
    gap = np.full((height + 22, 4, 3), 255, np.uint8)
    row = []
    for tile in tiles:
        row.extend([tile, gap])
    return np.concatenate(row[:-1], axis=1)


def hstack(tiles: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles of equal height side by side with white gaps."""
    height = tiles[0].shape[0]
    if any(t.shape[0] != height for t in tiles):
        raise ValueError(f"tiles have different heights {[t.shape[0] for t in tiles]}")
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row.extend([tile, spacer])
    return np.concatenate(row[:-1], axis=1)


def _legend(tile: np.ndarray, color: tuple[int, int, int], label: str) -> np.ndarray:
    import cv2

    out = tile.copy()
    cv2.rectangle(out, (4, 4), (92, 22), (255, 255, 255), -1)
    cv2.line(out, (8, 13), (28, 13), color, 2, cv2.LINE_AA)
    cv2.putText(out, label, (32, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def comparison_panel(
    image: np.ndarray,
    heatmap: np.ndarray,
    mask: np.ndarray,
    metrics: dict,
    title: str = "heatmap",
    alpha: float = 0.5,
    colormap: str = "jet",
    height: int = 224,
    mask_color: tuple[int, int, int] = (255, 0, 255),
) -> np.ndarray:
    """``image | heatmap | mask | both`` with the metric values printed underneath.

    The mask contour is drawn in ``mask_color`` (magenta: it contrasts with every colour of
    jet/turbo), with a legend in the last tile; the heatmap scale is min..max of the map.
    """
    import cv2

    alpha = _check_alpha(alpha)
    mask = np.asarray(mask) > 0
    if mask.shape != image.shape[:2] or np.asarray(heatmap).shape != image.shape[:2]:
        raise ValueError(
            f"image {image.shape[:2]}, heatmap {np.asarray(heatmap).shape} and mask {mask.shape} "
            "must have the same size"
        )
    fit = _fitter(image.shape[:2], height)
    heat = overlay(image, heatmap, alpha, colormap=colormap)
    tinted = image.astype(np.float32)
    tinted[mask] = 0.5 * tinted[mask] + 0.5 * np.asarray(mask_color, np.float32)
    both = draw_contours(heat, mask, mask_color)
    tiles = [
        titled(fit(image), "image"),
        titled(fit(heat), title),
        titled(fit(np.round(tinted).astype(np.uint8)), "mask"),
        titled(_legend(fit(both), mask_color, "mask"), "both"),
    ]
    row = hstack(tiles)
    shown = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) or v is None]
    lines, line = [], ""
    for key, value in shown:
        text = f"{key} {'n/a' if value is None else format(value, '.3f')}"
        if len(line) + len(text) > row.shape[1] // 8:
            lines.append(line)
            line = ""
        line = f"{line}   {text}" if line else text
    lines.append(line)
    band = np.full((18 * len(lines) + 8, row.shape[1], 3), 255, np.uint8)
    for index, text in enumerate(lines):
        cv2.putText(
            band,
            text,
            (6, 18 * (index + 1)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return np.concatenate([row, band], axis=0)


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 image atomically (temporary file, then rename); format from suffix."""
    import cv2

    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image as {suffix!r} for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
