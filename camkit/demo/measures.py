"""What the demo measures on held-out generated shapes: how well heatmaps find the objects
(pointing game, energy in mask, heat-mass centroid offset, the two-object test) and how well
a segmenter's masks match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from camkit.data.inputs import Input
from camkit.data.shapes import CLASSES, generate
from camkit.demo.config import DemoConfig
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings

__all__ = [
    "centroid_offset",
    "demo_inputs",
    "evaluate_localisation",
    "evaluate_segmentation",
    "maximum_places",
    "object_distances",
    "own_maximum",
    "place_of",
]


def evaluate_segmentation(checkpoint: Path, config: DemoConfig, count: int) -> dict:
    """Foreground IoU and Dice of a segmenter on the demo's held-out single-object images."""
    from camkit.metrics.segmentation import segmentation_scores
    from camkit.models.segmenter import load_segmenter
    from camkit.pipeline.masks import predict_masks

    model, info = load_segmenter(checkpoint)
    samples = [generate(i, config.seed + 2, config.size, config.difficulty) for i in range(count)]
    predicted = predict_masks(model, info, [s.image for s in samples], batch_size=25)
    scores = segmentation_scores(
        torch.from_numpy(np.stack([m for m, _ in predicted])),
        torch.from_numpy(np.stack([s.mask for s in samples])),
    )
    union, sizes = scores["union"], scores["sizes"]
    return {
        "arch": info["arch"],
        "train_images": info["config"].get("limit") or config.n_train,
        "train_seconds": info.get("train_seconds"),
        "iou": float(np.mean(scores["iou_per_image"])),
        "dice": float(np.mean(scores["dice_per_image"])),
        "iou_dataset": scores["intersection"] / union if union else 1.0,
        "dice_dataset": 2 * scores["intersection"] / sizes if sizes else 1.0,
        "images": count,
    }


def demo_inputs(samples, info, prefix: str) -> list[Input]:
    """Generated samples as pipeline inputs: their true classes as targets, masks in memory."""
    to_model = [list(info.class_names).index(name) for name in CLASSES]
    return [
        Input(
            f"{prefix}-{index:04d}",
            image=sample.image,
            targets=tuple(to_model[c] for c in sample.labels),
            mask=sample.mask > 0,
        )
        for index, sample in enumerate(samples)
    ]


def centroid_offset(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    """``(dy, dx)``: the heat-mass centroid (negative heat clipped) minus the mask's centroid,
    in pixels; ``None`` for an empty map or mask."""
    weights = np.clip(heat, 0, None)
    if weights.sum() <= 0 or not mask.any():
        return None
    ys, xs = np.mgrid[0 : heat.shape[0], 0 : heat.shape[1]]
    total = weights.sum()
    heat_yx = ((weights * ys).sum() / total, (weights * xs).sum() / total)
    mask_yx = (ys[mask].mean(), xs[mask].mean())
    return float(heat_yx[0] - mask_yx[0]), float(heat_yx[1] - mask_yx[1])


def object_distances(sample, label: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's distance (px) to class ``label``'s object and to the other object of a
    two-object image: computed once, read at every pixel :func:`place_of` is asked about."""
    import cv2

    mine = sample.mask == label + 1
    other = (sample.mask > 0) & ~mine
    return (
        cv2.distanceTransform((~mine).astype(np.uint8), cv2.DIST_L2, 5),
        cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 5),
    )


def place_of(distances: tuple[np.ndarray, np.ndarray], y: int, x: int, tolerance: float) -> str:
    """Where pixel ``(y, x)`` lies for a class with :func:`object_distances` ``distances``:
    ``"own"`` (within ``tolerance`` px of its own object and nearer to it than to the other),
    ``"other"`` (nearer the other object) or ``"neither"`` (farther than ``tolerance``)."""
    to_mine, to_other = distances[0][y, x], distances[1][y, x]
    if to_mine <= tolerance and to_mine < to_other:
        return "own"
    return "other" if to_other < to_mine else "neither"


def maximum_places(sample, result, tolerance: float) -> list[str]:
    """For each class of a two-object image, where its map's maximum lies (:func:`place_of`)."""
    places = []
    for j, label in enumerate(sample.labels):
        y, x = np.unravel_index(int(result.maps[j].argmax()), result.maps[j].shape)
        places.append(place_of(object_distances(sample, label), int(y), int(x), tolerance))
    return places


def own_maximum(sample, result, tolerance: float) -> list[bool]:
    """For each class of a two-object image: its map's maximum lies on its own object (within
    ``tolerance`` px, and nearer to it than to the other object)."""
    return [place == "own" for place in maximum_places(sample, result, tolerance)]


def evaluate_localisation(
    model: torch.nn.Module,
    info,
    config: DemoConfig,
    output_stride: int,
    align: str = "rf",
    difficulty: str = "easy",
    size: int | None = None,
    method: str = "gradcam",
):
    """Accuracy, pointing game, energy in mask and the heat-mass centroid's offset from the
    object's on held-out single-object images, and the two-object test (each class's map has
    its maximum on its own object). ``method`` (Grad-CAM) at ``layer4.2`` for the true classes, on the one
    pipeline, with maps put on the images by ``align``; the images are resized to ``size``
    px for the network (default: their own ``config.size``), the maps measured on the images."""
    size = size or config.size
    settings = Settings(
        "layer4.2", method, size=size, output_stride=output_stride, align=align, batch_size=50
    )
    singles = [generate(i, config.seed + 2, config.size, difficulty) for i in range(config.n_test)]
    inputs = demo_inputs(singles, info, "single")
    hits, energies, offsets, correct = [], [], [], 0
    results = explain_images(model, info, inputs, settings, None, config.tolerance)
    for item, sample, result in zip(inputs, singles, results):
        hits.append(result.metrics["pointing_game"])
        energies.append(result.metrics["energy_in_mask"])
        offsets.append(centroid_offset(result.maps[0].numpy(), sample.mask > 0))
        correct += int(result.heatmaps.logits[0].argmax()) == item.targets[0]
        map_size = list(result.heatmaps.maps.shape[-2:])
    pairs = [
        generate(i, config.seed + 3, config.size, difficulty, objects=2)
        for i in range(config.n_pairs)
    ]
    own = []
    for sample, result in zip(
        pairs, explain_images(model, info, demo_inputs(pairs, info, "pair"), settings)
    ):
        own.extend(own_maximum(sample, result, config.tolerance))
    offsets = np.array([o for o in offsets if o is not None])
    return {
        "output_stride": output_stride,
        "align": align,
        "difficulty": difficulty,
        "map_size": map_size,
        "input_size": size,
        "method": method,
        "accuracy": correct / len(singles),
        "pointing_game": float(np.mean([h for h in hits if h is not None])),
        "energy_in_mask": float(np.mean([e for e in energies if e is not None])),
        "centroid_offset_y": float(offsets[:, 0].mean()),
        "centroid_offset_x": float(offsets[:, 1].mean()),
        "two_object_own_max": float(np.mean(own)),
        "n_test": len(singles),
        "n_pairs": len(pairs),
    }
