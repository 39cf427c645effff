"""Channel-variant studies: build a variant from a trained parent, fine-tune it, compare variants.

Each variant's ``layer4.2`` outputs C maps (see :func:`camkit.models.resnet.variant_from`).
The comparison runs every variant on the same images: accuracy, heatmap localisation against
the ground-truth masks, and how much the variants' heatmaps agree with each other.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from camkit.data.folders import ClassificationFolder, masks_by_key, spread
from camkit.data.inputs import Input
from camkit.io.tables import write_csv
from camkit.metrics.localisation import rank_correlation, top_region_iou
from camkit.models.resnet import load_classifier
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings

__all__ = ["compare_variants"]


def _inputs(data: Path, class_names: list[str], limit: int | None) -> list[Input]:
    """A folder data set's images, evenly over the classes, each with its true class as its
    target."""
    samples = spread(ClassificationFolder(data, class_names=class_names).samples, limit)
    images_root = data / "images" if (data / "images").is_dir() else data
    return [
        Input(path.relative_to(images_root).as_posix(), path, targets=(label,))
        for path, label in samples
    ]


def compare_variants(
    checkpoints: list[str | os.PathLike],
    data: str | os.PathLike,
    out: str | os.PathLike,
    limit: int | None = 200,
    output_stride: int = 32,
    top_fraction: float = 0.2,
    tolerance: float = 15.0,
    figure_images: int = 4,
    resize_mask: bool = False,
) -> dict:
    """Run every variant on the same images (Grad-CAM at ``layer4.2`` for the true class, on the
    one pipeline); write ``variants.csv``, ``agreement.csv`` and ``variants.png`` (heatmaps side
    by side) under ``out``; return the tables. Masks come from ``data/masks`` where present."""
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
    inputs = _inputs(data, class_names, limit)
    masks = MaskSource(
        by_key=masks_by_key([item.key for item in inputs], data / "masks"),
        resize=resize_mask,
        required=False,
    )
    settings = Settings("layer4.2", output_stride=output_stride, batch_size=32)
    shown = set(
        np.linspace(0, len(inputs) - 1, min(figure_images, len(inputs)))
        .round()
        .astype(int)
        .tolist()
    )
    maps = {name: [] for name in names}
    correct = {name: 0 for name in names}
    hits = {name: [] for name in names}
    energies = {name: [] for name in names}
    masks_of, images = [], {}
    for name, (model, info) in zip(names, models):
        for index, result in enumerate(
            explain_images(model, info, inputs, settings, masks, tolerance)
        ):
            if not result.ok:
                raise ValueError(result.error)
            maps[name].append(result.maps[0].numpy())
            correct[name] += int(result.heatmaps.logits[0].argmax()) == inputs[index].targets[0]
            if result.metrics is not None:
                hits[name].append(result.metrics["pointing_game"])
                energies[name].append(result.metrics["energy_in_mask"])
            if name == names[0]:
                masks_of.append(result.mask)
                if index in shown:
                    images[index] = result.image

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    rows = [
        {
            "variant": name,
            "checkpoint": str(path),
            "channels": info.channels,
            "accuracy": correct[name] / len(inputs),
            "pointing_game": mean(hits[name]),
            "energy_in_mask": mean(energies[name]),
            "images": len(inputs),
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
            write_csv(out / filename, table)
    import cv2

    figure_rows = []
    for index, picture in sorted(images.items()):
        mask = masks_of[index]
        tiles = [
            titled(
                cv2.resize(picture, (160, 160), interpolation=cv2.INTER_NEAREST),
                Path(inputs[index].key).name,
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
