"""Channel-variant studies: build a variant from a trained parent, fine-tune it, compare variants.

Each variant's ``layer4.2`` outputs C maps (see :func:`camkit.models.resnet.variant_from`).
The comparison runs every variant on the same images: accuracy, heatmap localisation against
the ground-truth masks, and how much the variants' heatmaps agree with each other.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from pathlib import Path

import numpy as np

from camkit.data.folders import ClassificationFolder, match_masks, read_mask, spread
from camkit.explainer import Explainer
from camkit.io.files import atomic_write_bytes
from camkit.metrics.localisation import (
    energy_in_mask,
    pointing_game,
    rank_correlation,
    top_region_iou,
)
from camkit.models.resnet import load_classifier

__all__ = ["compare_variants"]


def _samples(data: Path, class_names: list[str], limit: int | None):
    """(image path, label, mask path or None) for a folder data set, evenly over the classes."""
    samples = spread(ClassificationFolder(data, class_names=class_names).samples, limit)
    images_root = data / "images" if (data / "images").is_dir() else data
    found = match_masks([path for path, _ in samples], images_root, data / "masks")
    return [(path, label, found.get(path)) for path, label in samples]


def compare_variants(
    checkpoints: list[str | os.PathLike],
    data: str | os.PathLike,
    out: str | os.PathLike,
    limit: int | None = 200,
    output_stride: int = 32,
    top_fraction: float = 0.2,
    tolerance: float = 15.0,
    figure_images: int = 4,
) -> dict:
    """Run every variant on the same images; write ``variants.csv``, ``agreement.csv`` and
    ``variants.png`` (heatmaps side by side) under ``out``; return the tables."""
    from camkit.cam import upsample
    from camkit.data.images import preprocess, read_image
    from camkit.viz.overlay import hstack, overlay, save_image, titled

    if len(checkpoints) < 1:
        raise ValueError("give at least one checkpoint")
    data, out = Path(data), Path(out)
    models = [load_classifier(path) for path in checkpoints]
    names = [
        f"C={info.channels} ({Path(path).stem})" for path, (_, info) in zip(checkpoints, models)
    ]
    class_names = list(models[0][1].class_names)
    for path, (_, info) in zip(checkpoints, models):
        if list(info.class_names) != class_names:
            raise ValueError(f"{path} has classes {list(info.class_names)}, not {class_names}")
    samples = _samples(data, class_names, limit)
    size = models[0][1].input_size
    maps = {name: [] for name in names}
    correct = {name: 0 for name in names}
    hits = {name: [] for name in names}
    energies = {name: [] for name in names}
    masks, images = [], {}
    shown = set(
        np.linspace(0, len(samples) - 1, min(figure_images, len(samples)))
        .round()
        .astype(int)
        .tolist()
    )
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        pictures = [read_image(p) for p, _, _ in chunk]
        batch = preprocess(pictures, size, models[0][1].mean, models[0][1].std)
        labels = [label for _, label, _ in chunk]
        chunk_masks = [read_mask(m) > 0 if m is not None else None for _, _, m in chunk]
        for name, (model, _) in zip(names, models):
            heatmaps = Explainer(model, "layer4.2", output_stride=output_stride)(batch, labels)
            for k, (picture, mask) in enumerate(zip(pictures, chunk_masks)):
                heat = upsample(heatmaps.maps[k, 0], picture.shape[:2]).numpy()
                maps[name].append(heat)
                correct[name] += int(heatmaps.logits[k].argmax()) == labels[k]
                if mask is not None:
                    hits[name].append(pointing_game(heat, mask, tolerance))
                    energies[name].append(energy_in_mask(heat, mask))
        masks.extend(chunk_masks)
        images.update({start + k: p for k, p in enumerate(pictures) if start + k in shown})

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    rows = [
        {
            "variant": name,
            "checkpoint": str(path),
            "channels": info.channels,
            "accuracy": correct[name] / len(samples),
            "pointing_game": mean(hits[name]),
            "energy_in_mask": mean(energies[name]),
            "images": len(samples),
        }
        for name, path, (_, info) in zip(names, checkpoints, models)
    ]
    agreement = []
    for a, b in itertools.combinations(names, 2):
        agreement.append(
            {
                "a": a,
                "b": b,
                "spearman": mean([rank_correlation(x, y) for x, y in zip(maps[a], maps[b])]),
                f"iou_top{round(top_fraction * 100)}": mean(
                    [top_region_iou(x, y, top_fraction) for x, y in zip(maps[a], maps[b])]
                ),
            }
        )
    for filename, table in (("variants.csv", rows), ("agreement.csv", agreement)):
        if table:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
            atomic_write_bytes(out / filename, buffer.getvalue().encode())
    import cv2

    figure_rows = []
    for index, picture in sorted(images.items()):
        mask = masks[index]
        tiles = [
            titled(
                cv2.resize(picture, (160, 160), interpolation=cv2.INTER_NEAREST),
                Path(samples[index][0]).name,
            )
        ]
        for name in names:
            tile = overlay(picture, maps[name][index], 0.5, mask=mask)
            tiles.append(
                titled(cv2.resize(tile, (160, 160), interpolation=cv2.INTER_NEAREST), name)
            )
        figure_rows.append(hstack(tiles))
    if figure_rows:
        gap = np.full((6, figure_rows[0].shape[1], 3), 255, np.uint8)
        stacked = [part for row in figure_rows for part in (row, gap)][:-1]
        save_image(out / "variants.png", np.concatenate(stacked, axis=0))
    return {
        "variants": rows,
        "agreement": agreement,
        "output_stride": output_stride,
        "out": str(out),
    }
