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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camkit.checkpoint import atomic_write_bytes
from camkit.compare import energy_in_mask, pointing_game, rank_correlation, top_region_iou
from camkit.data.folders import ClassificationFolder, match_masks, read_mask, spread
from camkit.explain import Explainer
from camkit.models.resnet import load_classifier, variant_from
from camkit.train import TrainConfig, _loaders, train_classifier

__all__ = ["VariantReport", "compare_variants", "logit_gap", "make_variant"]


@dataclass(frozen=True)
class VariantReport:
    """What ``make_variant`` did: surgery fidelity before training, and metrics after."""

    channels: int
    kept: int
    before: dict
    after: dict
    checkpoint: str


@torch.inference_mode()
def logit_gap(parent, variant, loader) -> dict:
    """How far a variant is from its parent on a loader: logit differences and both accuracies."""
    parent.eval()
    variant.eval()
    worst = relative = 0.0
    agree = parent_correct = variant_correct = total = 0
    for images, labels in loader:
        a, b = parent(images), variant(images)
        worst = max(worst, float((a - b).abs().max()))
        relative += float(((a - b).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)).sum())
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        parent_correct += int((a.argmax(1) == labels).sum())
        variant_correct += int((b.argmax(1) == labels).sum())
        total += labels.numel()
    return {
        "max_abs_logit_diff": worst,
        "mean_relative_logit_diff": relative / max(total, 1),
        "prediction_agreement": agree / max(total, 1),
        "parent_accuracy": parent_correct / max(total, 1),
        "variant_accuracy": variant_correct / max(total, 1),
        "count": total,
    }


def make_variant(
    parent: str | os.PathLike,
    channels: int,
    data: str | os.PathLike,
    out: str | os.PathLike,
    epochs: int = 1,
    train_all: bool = False,
    val_data: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    keep: list[int] | None = None,
    progress: bool | None = None,
) -> VariantReport:
    """Surgery on ``parent`` (a checkpoint) to ``channels`` maps, report its fidelity, fine-tune.

    By default only what changed trains — ``layer4.2`` and ``fc`` — with every other layer
    frozen (BatchNorm statistics included); ``train_all`` trains everything. ``epochs=0`` saves
    the variant right after surgery.
    """
    from camkit.checkpoint import save_checkpoint
    from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD

    parent_model, info = load_classifier(parent)
    variant, kept = variant_from(parent_model, channels, keep)
    config = config or TrainConfig(size=info.input_size)
    config.epochs = max(epochs, 1)
    _, _, val_loader = _loaders(
        Path(data), Path(val_data) if val_data else None, config, list(info.class_names)
    )
    before = logit_gap(parent_model, variant, val_loader)
    metadata = {
        "parent": str(parent),
        "kept_channels": kept,
        "surgery": before,
        "origin": f"surgery from {Path(parent).name} ({info.channels}→{channels} channels)",
    }
    if epochs == 0:
        save_checkpoint(
            out,
            variant.state_dict(),
            arch="resnet50",
            channels=channels,
            num_classes=info.num_classes,
            class_names=list(info.class_names),
            input_size=info.input_size,
            mean=list(IMAGENET_MEAN),
            std=list(IMAGENET_STD),
            metrics={"val_accuracy": before["variant_accuracy"]},
            **metadata,
        )
        after = {"val_accuracy": before["variant_accuracy"], "epoch": 0}
    else:
        after = train_classifier(
            data,
            out,
            config,
            val_data=val_data,
            progress=progress,
            model=variant,
            train_only=None if train_all else ["layer4.2", "fc"],
            metadata=metadata,
        )
    return VariantReport(channels, len(kept), before, after, str(out))


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
    from camkit.overlay import hstack, overlay, save_image, titled

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
