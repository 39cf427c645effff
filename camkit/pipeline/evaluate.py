"""Compare CAM methods on a folder: localisation against masks, faithfulness, and time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from camkit.cam import upsample
from camkit.data.folders import find_images, match_masks, read_mask, spread
from camkit.data.images import preprocess, read_image
from camkit.explainer import Explainer
from camkit.metrics.faithfulness import average_drop, deletion_insertion
from camkit.metrics.localisation import energy_in_mask, pointing_game

__all__ = ["evaluate_methods"]


def _dataset(data: Path, limit: int | None):
    if not data.exists():
        raise FileNotFoundError(f"data folder {data} does not exist; check the path")
    images_root = data / "images" if (data / "images").is_dir() else data
    paths = spread(find_images(images_root), limit)
    if not paths:
        raise ValueError(f"no images under {images_root}")
    found = match_masks(paths, images_root, data / "masks")
    return paths, [found.get(path) for path in paths]


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
) -> list[dict]:
    """One row per method: time per image, pointing game and energy in mask (when ``masks/``
    exists beside ``images/``), deletion / insertion AUC, Average Drop, Increase in Confidence.

    Every method explains the model's predicted class on the same images.
    """
    paths, mask_paths = _dataset(Path(data), limit)
    pictures = [read_image(p) for p in paths]
    size = info.input_size
    device = next(model.parameters()).device
    batch = preprocess(pictures, size, info.mean, info.std).to(device)
    masks = [None if m is None else (read_mask(m) > 0) for m in mask_paths]
    rows = []
    for method in methods:
        explainer = Explainer(
            model,
            layer,
            method,
            output_stride=output_stride,
            batch_size=64,
            score_channels=score_channels,
        )
        maps, class_ids, seconds = [], [], 0.0
        for start in range(0, len(batch), batch_size):
            chunk = batch[start : start + batch_size]
            began = time.perf_counter()
            heatmaps = explainer(chunk)
            upsampled = heatmaps.upsampled[:, 0]
            seconds += time.perf_counter() - began
            maps.append(upsampled)
            class_ids.append(heatmaps.class_ids[:, 0])
        saliency, classes = torch.cat(maps), torch.cat(class_ids)
        faithful = deletion_insertion(
            model, batch, saliency, classes, steps=steps, baseline=baseline
        )
        drop = average_drop(model, batch, saliency, classes)
        hits, energies = [], []
        for index, mask in enumerate(masks):
            if mask is None:
                continue
            heat = upsample(saliency[index], mask.shape).cpu().numpy()
            hits.append(pointing_game(heat, mask, tolerance))
            energies.append(energy_in_mask(heat, mask))
        valid_hits = [h for h in hits if h is not None]
        valid_energy = [e for e in energies if e is not None]
        rows.append(
            {
                "method": method,
                "images": len(paths),
                "ms_per_image": 1000 * seconds / len(paths),
                "pointing_game": float(np.mean(valid_hits)) if valid_hits else None,
                "energy_in_mask": float(np.mean(valid_energy)) if valid_energy else None,
                "deletion_auc": float(faithful["deletion"].mean()),
                "insertion_auc": float(faithful["insertion"].mean()),
                **drop,
            }
        )
    return rows
