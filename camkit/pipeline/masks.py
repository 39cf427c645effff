"""Masks for images: from files (one policy for sizes) or predicted by a segmenter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from camkit.cam import upsample
from camkit.data.folders import read_mask
from camkit.data.images import preprocess
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from camkit.models.resunet import ResUNet

__all__ = ["load_mask", "predict_masks"]


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
        from camkit.pipeline.masks import predict_masks

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


@torch.inference_mode()
def predict_masks(
    model: ResUNet,
    info: dict,
    images: Sequence[np.ndarray],
    threshold: float = 0.5,
    batch_size: int = 8,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Masks for RGB uint8 images of any size: resized to the model's input, predicted, and the
    probabilities resampled back (bilinear) to each image's own size.

    Returns ``(mask, probabilities)`` per image: a uint8 ``H×W`` mask ({0, 1} for binary, class
    indices otherwise) and float32 probabilities ``(C, H, W)``.
    """

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    device = next(model.parameters()).device
    size = int(info.get("input_size", 128))
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = preprocess(
            list(chunk), size, info.get("mean", IMAGENET_MEAN), info.get("std", IMAGENET_STD)
        )
        logits = model(batch.to(device)).float().cpu()
        for image, image_logits in zip(chunk, logits):
            resized = upsample(image_logits, image.shape[:2])  # (C, H, W)
            if resized.shape[0] == 1:
                probabilities = resized.sigmoid()
                mask = (probabilities[0] > threshold).to(torch.uint8)
            else:
                probabilities = resized.softmax(dim=0)
                mask = probabilities.argmax(dim=0).to(torch.uint8)
            results.append((mask.numpy(), probabilities.numpy().astype(np.float32)))
    return results
