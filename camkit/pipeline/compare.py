"""Heatmap-vs-mask comparisons over images and folders (the engine of ``camkit compare``).

Masks come from files (binary: any non-zero pixel is foreground), from a ResUNet's
prediction, or from ground truth; a mask of another size than its image is an error unless
``resize_mask`` is set (nearest-neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camkit.cam import upsample
from camkit.data.images import preprocess, read_image
from camkit.explainer import Explainer
from camkit.metrics.localisation import heatmap_metrics
from camkit.metrics.stats import bootstrap_summary
from camkit.pipeline.masks import load_mask

__all__ = ["Comparer"]


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
