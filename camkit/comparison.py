"""Heatmap-vs-mask comparisons over images and folders (the engine of ``camkit compare``).

Masks come from files (binary: any non-zero pixel is foreground), from a ResUNet's
prediction, or from ground truth; a mask of another size than its image is an error unless
``resize_mask`` is set (nearest-neighbour).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camkit.cam import upsample
from camkit.checkpoint import atomic_write_bytes
from camkit.compare import bootstrap_summary, heatmap_metrics
from camkit.data.folders import match_masks, read_mask
from camkit.data.images import preprocess, read_image
from camkit.explain import Explainer

__all__ = ["Comparer", "format_table", "load_mask", "match_masks", "write_csv"]


def load_mask(
    image: np.ndarray,
    mask_path: Path | None,
    segmenter: tuple | None = None,
    resize_mask: bool = False,
    image_path: Path | str = "image",
) -> np.ndarray:
    """Binary mask for ``image``: from ``mask_path`` (non-zero = object), else predicted by
    ``segmenter`` (``(ResUNet, info)``). A file of another size is an error unless ``resize_mask``
    (nearest-neighbour)."""
    import cv2

    if mask_path is None:
        if segmenter is None:
            raise ValueError(f"no mask for {image_path}: pass a mask file or --segmenter")
        from camkit.segmentation import predict_masks

        model, info = segmenter
        return predict_masks(model, info, [image])[0][0] > 0
    mask = read_mask(mask_path)
    if mask.shape != image.shape[:2]:
        if not resize_mask:
            raise ValueError(
                f"mask {mask_path} is {mask.shape[1]}×{mask.shape[0]} but image {image_path} is "
                f"{image.shape[1]}×{image.shape[0]}; pass --resize-mask to resize it"
            )
        mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows to CSV atomically (columns: the union of keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def format_table(rows: list[dict], columns: list[str] | None = None, digits: int = 3) -> str:
    """Rows of dicts as an aligned text table (numbers to ``digits`` decimals, None as n/a)."""
    columns = columns or [k for k in (rows[0] if rows else {})]

    def cell(value) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths)))
    ]
    for row in cells:
        lines.append(
            "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
        )
    return "\n".join(lines)


@dataclass
class Comparer:
    """Explain images and compare their heatmaps with masks.

    Args:
        model, info: a classifier and its ``ModelInfo`` (``camkit.models.load_classifier``).
        layer, method, output_stride: what to explain (see ``Explainer``).
        segmenter: optional ``(ResUNet, info)`` to predict masks when none is given.
        tolerance: pointing-game tolerance in pixels at the image's own size.
        resize_mask: resize masks of another size than their image (else an error).
    """

    model: torch.nn.Module
    info: object
    layer: str = "layer4.2"
    method: str = "gradcam"
    output_stride: int = 32
    segmenter: tuple | None = None
    tolerance: float = 15.0
    resize_mask: bool = False
    size: int | None = None

    def __post_init__(self) -> None:
        self.explainer = Explainer(
            self.model, self.layer, self.method, output_stride=self.output_stride
        )

    def heatmaps(self, images: list[np.ndarray], class_id: int | None = None):
        """Heatmaps at each image's own size, with class ids and probabilities."""
        size = self.size or self.info.input_size
        batch = preprocess(images, size, self.info.mean, self.info.std)
        targets = None if class_id is None else [class_id] * len(images)
        result = self.explainer(batch, targets).cpu()
        maps = [
            upsample(result.maps[i, 0], image.shape[:2]).numpy() for i, image in enumerate(images)
        ]
        return maps, result

    def mask_for(
        self, image: np.ndarray, mask_path: Path | None, image_path: Path | str = "image"
    ) -> np.ndarray:
        return load_mask(image, mask_path, self.segmenter, self.resize_mask, image_path)

    def compare(
        self,
        image_paths: list[Path],
        mask_paths: list[Path | None],
        class_id: int | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ):
        """Yield ``(record, image, heatmap, mask)`` per image; errors become records with ``error``."""
        from tqdm import tqdm

        bar = tqdm(total=len(image_paths), unit="img", disable=not progress, leave=False)
        for start in range(0, len(image_paths), batch_size):
            loaded = []
            for path, mask_path in zip(
                image_paths[start : start + batch_size], mask_paths[start : start + batch_size]
            ):
                try:
                    image = read_image(path)
                    loaded.append((path, image, self.mask_for(image, mask_path, path)))
                except (OSError, ValueError) as error:
                    yield {"image": str(path), "error": str(error)}, None, None, None
            if loaded:
                maps, result = self.heatmaps([image for _, image, _ in loaded], class_id)
                for index, (path, image, mask) in enumerate(loaded):
                    predicted = int(result.class_ids[index, 0])
                    record = {
                        "image": str(path),
                        "class_id": predicted,
                        "class_name": self.info.class_name(predicted),
                        "probability": float(result.probabilities[index, 0]),
                        "mask_share": float(mask.mean()),
                        **heatmap_metrics(maps[index], mask, self.tolerance),
                    }
                    yield record, image, maps[index], mask
            bar.update(len(image_paths[start : start + batch_size]))
        bar.close()

    @staticmethod
    def summary(records: list[dict]) -> list[dict]:
        """Mean, median and 95 % bootstrap interval of every metric over the records."""
        keys = [
            k
            for k in (records[0] if records else {})
            if k not in ("image", "class_id", "class_name", "error")
        ]
        keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in records)]
        return [
            {"metric": key, **bootstrap_summary([r.get(key) for r in records if "error" not in r])}
            for key in keys
        ]
