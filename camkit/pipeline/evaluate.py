"""Compare CAM methods on a folder: localisation against masks, faithfulness, and time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from camkit.cam import normalize
from camkit.data.folders import find_images, spread
from camkit.data.inputs import Input
from camkit.metrics.faithfulness import average_drop, deletion_insertion
from camkit.metrics.road import road as road_scores
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings
from camkit.progress import progress as report_progress

__all__ = ["evaluate_methods"]


def _dataset(data: Path, limit: int | None, resize_mask: bool):
    """Up to ``limit`` images of ``data`` (or ``data/images``), evenly spread, and their masks
    from ``data/masks`` where it exists (an image without one just has no localisation)."""
    if not data.exists():
        raise FileNotFoundError(f"data folder {data} does not exist; check the path")
    images_root = data / "images" if (data / "images").is_dir() else data
    paths = spread(find_images(images_root), limit)
    if not paths:
        raise ValueError(f"no images under {images_root}")
    items = [Input(path.relative_to(images_root).as_posix(), path) for path in paths]
    if not (data / "masks").is_dir():
        return items, None
    masks = MaskSource(folder=data / "masks", resize=resize_mask, required=False)
    return items, masks.bound(items)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def evaluate_methods(
    model: torch.nn.Module,
    info,
    data: str | os.PathLike,
    methods: list[str],
    layer: str = "layer4.2",
    limit: int | None = 50,
    output_stride: int = 32,
    steps: int = 32,
    baseline: str = "blur",
    batch_size: int = 16,
    score_channels: int | None = None,
    tolerance: float = 15.0,
    progress: bool | None = None,
    resize_mask: bool = False,
    align: str = "rf",
    road: bool = False,
) -> list[dict]:
    """One row per method: time per image, pointing game and energy in mask (when ``masks/``
    exists beside ``images/``; a mask of another size than its image is an error unless
    ``resize_mask``, as in every command), deletion / insertion AUC, Average Drop, Increase in
    Confidence; with ``road``, ROAD (:func:`camkit.metrics.road.road`: MoRF, LeRF and
    combined, averaged over the percentiles 10–90, logit changes).

    Every method explains the model's predicted class on the same images, through the one
    pipeline (maps on each image for localisation, at the model input for faithfulness).
    ``progress``: one step per method, see :func:`camkit.progress.progress` (``None``: a bar
    on a terminal, log lines elsewhere; ``False``: nothing).
    """
    items, masks = _dataset(Path(data), limit, resize_mask)
    device = next(model.parameters()).device
    rows = []
    bar = report_progress(total=len(methods), desc="evaluate", unit="method", enabled=progress)
    for method in methods:
        settings = Settings(
            layer, method, output_stride=output_stride, chunk_size=64,
            score_channels=score_channels, batch_size=batch_size, align=align,
        )  # fmt: skip
        results = list(explain_images(model, info, items, settings, masks, tolerance))
        failed = next((r for r in results if not r.ok), None)
        if failed is not None:
            raise ValueError(failed.error)
        inputs = torch.stack([r.input for r in results]).to(device)  # (N, 3, H, W)
        first = [r.order[0] for r in results]
        saliency = torch.cat([r.heatmaps.upsampled[:, k] for r, k in zip(results, first)])
        classes = torch.tensor([int(r.heatmaps.class_ids[0, k]) for r, k in zip(results, first)])
        saliency, classes = saliency.to(device), classes.to(device)
        faithful = deletion_insertion(
            model, inputs, saliency, classes, steps=steps, baseline=baseline
        )
        drop = average_drop(model, inputs, saliency, classes)
        measured = [r.metrics for r in results if r.metrics is not None]
        scores = {}
        if road:
            result = road_scores(model, inputs, normalize(saliency), classes)
            scores = {
                "road_morf": float(result.morf.mean()),
                "road_lerf": float(result.lerf.mean()),
                "road_combined": float(result.combined.mean()),
            }
        rows.append(
            {
                "method": method,
                "images": len(results),
                "ms_per_image": 1000 * sum(r.seconds for r in results) / len(results),
                "pointing_game": _mean([m["pointing_game"] for m in measured]),
                "energy_in_mask": _mean([m["energy_in_mask"] for m in measured]),
                "masked_images": len(measured),  # localisation is over these only
                "deletion_auc": float(faithful["deletion"].mean()),
                "insertion_auc": float(faithful["insertion"].mean()),
                **drop,
                **scores,
            }
        )
        bar.update()
    bar.close()
    return rows
