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


def _listed(names, shown: int = 5) -> str:
    """``4 classes (circle, square, star, triangle)``, cut after ``shown`` names."""
    more = f", … {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} classes ({', '.join(names[:shown])}{more})"


def _mean(values) -> float | None:
    """The mean of the defined values; ``None`` where none is (no masks): JSON has no NaN."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _run_variant(model, info, inputs, settings, masks, tolerance) -> dict:
    """One variant over the inputs: its maps on each image, accuracy and localisation."""
    maps, correct, hits, energies, results = [], 0, [], [], []
    for item, result in zip(
        inputs, explain_images(model, info, inputs, settings, masks, tolerance)
    ):
        if not result.ok:
            raise ValueError(result.error)
        maps.append(result.maps[0].numpy())
        correct += int(result.heatmaps.logits[0].argmax()) == item.targets[0]
        if result.metrics is not None:
            hits.append(result.metrics["pointing_game"])
            energies.append(result.metrics["energy_in_mask"])
        results.append((result.image, result.mask))
    return {"maps": maps, "accuracy": correct / len(inputs), "pointing_game": _mean(hits),
            "energy_in_mask": _mean(energies), "pictures": results}  # fmt: skip


def _agreement(names: list[str], runs: dict, top_fraction: float) -> list[dict]:
    """Spearman and top-region IoU between the maps of every pair of variants."""
    rows = []
    for a, b in itertools.combinations(names, 2):
        pairs = list(zip(runs[a]["maps"], runs[b]["maps"]))
        rows.append(
            {
                "a": a,
                "b": b,
                "spearman": _mean([rank_correlation(x, y) for x, y in pairs]),
                f"iou_top{round(top_fraction * 100)}": _mean(
                    [top_region_iou(x, y, top_fraction) for x, y in pairs]
                ),
            }
        )
    return rows


def _figure(names: list[str], runs: dict, inputs, count: int) -> np.ndarray | None:
    """Rows of: image | each variant's heatmap (mask contour), for ``count`` spread images."""
    import cv2

    from camkit.viz.overlay import hstack, overlay, titled

    def tile(picture, title):
        return titled(cv2.resize(picture, (160, 160), interpolation=cv2.INTER_NEAREST), title)

    shown = sorted(
        set(np.linspace(0, len(inputs) - 1, min(count, len(inputs))).round().astype(int))
    )
    rows = []
    for index in shown:
        picture, mask = runs[names[0]]["pictures"][index]
        tiles = [tile(picture, Path(inputs[index].key).name)]
        tiles += [tile(overlay(picture, runs[n]["maps"][index], 0.5, mask=mask), n) for n in names]
        rows.append(hstack(tiles))
    if not rows:
        return None
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)


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
    from camkit.viz.overlay import save_image

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
            raise ValueError(
                f"{path} has {_listed(info.class_names)}, but {checkpoints[0]} has "
                f"{_listed(class_names)}; compare variants of one parent (camkit variant)"
            )
    inputs = _inputs(data, class_names, limit)
    masks = MaskSource(
        by_key=masks_by_key([item.key for item in inputs], data / "masks"),
        resize=resize_mask,
        required=False,
    )
    settings = Settings("layer4.2", output_stride=output_stride, batch_size=32)
    runs = {
        name: _run_variant(model, info, inputs, settings, masks, tolerance)
        for name, (model, info) in zip(names, models)
    }
    rows = [
        {
            "variant": name,
            "checkpoint": str(path),
            "channels": info.channels,
            **{k: runs[name][k] for k in ("accuracy", "pointing_game", "energy_in_mask")},
            "images": len(inputs),
        }
        for name, path, (_, info) in zip(names, checkpoints, models)
    ]
    agreement = _agreement(names, runs, top_fraction)
    for filename, table in (("variants.csv", rows), ("agreement.csv", agreement)):
        if table:
            write_csv(out / filename, table)
    figure = _figure(names, runs, inputs, figure_images)
    if figure is not None:
        save_image(out / "variants.png", figure)
    return {
        "variants": rows,
        "agreement": agreement,
        "output_stride": output_stride,
        "out": str(out),
    }
