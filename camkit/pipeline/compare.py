"""Heatmap-vs-mask comparisons over images and folders, on the one pipeline.

Masks come from files (binary: any non-zero pixel is foreground) or a ResUNet's prediction;
a mask of another size than its image is an error unless ``resize_mask`` is set
(nearest-neighbour) — the policy of :mod:`camkit.pipeline.masks`, the same in every command.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from camkit.data.inputs import as_inputs
from camkit.metrics.stats import bootstrap_summary
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.records import ROW_COLUMNS, flat_row, record
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings

__all__ = ["Comparer", "summarise"]


@dataclass
class Comparer:
    """Explain images and compare their heatmaps with masks.

    Args:
        model, info: a classifier and its ``ModelInfo`` (``camkit.models.load_classifier``).
        layer, method, output_stride: what to explain (see ``Explainer``).
        segmenter: optional ``(ResUNet, info)`` to predict the masks.
        tolerance: pointing-game tolerance in pixels at the image's own size.
        resize_mask: resize masks of another size than their image (else an error).
        size: model input side (default: the model's).
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

    def settings(self, class_id: int | None = None) -> Settings:
        targets = None if class_id is None else [class_id]
        return Settings(
            self.layer, self.method, targets, self.size, output_stride=self.output_stride
        )

    def heatmaps(self, images: list[np.ndarray], class_id: int | None = None):
        """Heatmaps of the first target at each image's own size, and each image's Heatmaps."""
        results = list(explain_images(self.model, self.info, images, self.settings(class_id)))
        return [r.maps[r.order[0]].numpy() for r in results], [r.heatmaps for r in results]

    def compare(
        self,
        image_paths: Sequence[Path],
        mask_paths: Sequence[Path | None],
        class_id: int | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> Iterator[tuple[dict, np.ndarray | None, np.ndarray | None, np.ndarray | None]]:
        """Yield ``(row, image, heatmap, mask)`` per image (``flat_row`` of the one record);
        an image that failed has ``status == "error"`` and ``None`` for the rest. Masks: the
        files given, or the segmenter's where every entry is ``None``."""
        del progress  # callers wrap the iterator in camkit's progress reporting
        items = as_inputs(list(image_paths))
        if all(m is None for m in mask_paths):
            masks = MaskSource(segmenter=self.segmenter, resize=self.resize_mask)
        else:
            found = {item.key: m for item, m in zip(items, mask_paths) if m is not None}
            masks = MaskSource(by_key=found, resize=self.resize_mask)
        settings = replace(self.settings(class_id), batch_size=batch_size)
        resolved = settings.resolved(self.model, self.info)
        for result in explain_images(self.model, self.info, items, resolved, masks, self.tolerance):
            row = flat_row(record(result, self.info, resolved))
            if not result.ok:
                yield row, None, None, None
                continue
            yield row, result.image, result.maps[result.order[0]].numpy(), result.mask

    @staticmethod
    def summary(rows: list[dict]) -> list[dict]:
        """Mean, median and 95 % bootstrap interval of every metric over the rows."""
        return summarise(rows)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean, median and 95 % bootstrap interval of every numeric metric column of ``rows``
    (flat rows; failed rows are skipped)."""
    good = [r for r in rows if r.get("status", "ok") == "ok"]
    fixed = {*ROW_COLUMNS, "error", "overlay", "raw", "thumb", "mask", "panel"}
    fixed.add("segmenter_class_id")  # an id, not a metric (camkit.pipeline.segmenter_maps)
    keys = [k for k in (good[0] if good else {}) if k not in fixed]
    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in good)]
    return [{"metric": key, **bootstrap_summary([r.get(key) for r in good])} for key in keys]
