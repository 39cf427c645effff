"""Masks for images: from files (one policy for sizes) or predicted by a segmenter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from camkit.cam import upsample
from camkit.data.folders import read_mask
from camkit.data.images import preprocess
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from camkit.models.resunet import ResUNet

__all__ = [
    "MaskSource",
    "check_mask",
    "load_mask",
    "masks_from_logits",
    "no_mask_message",
    "predict_masks",
    "segmenter_batch",
]


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
    if mask_path is None:
        if segmenter is None:
            raise ValueError(f"no mask for {image_path}: pass a mask file or --segmenter")
        model, info = segmenter
        return predict_masks(model, info, [image])[0][0] > 0
    return check_mask(read_mask(mask_path), image, image_path, resize_mask, mask_path)


def check_mask(
    mask: np.ndarray,
    image: np.ndarray,
    image_name: Path | str = "image",
    resize: bool = False,
    mask_name: Path | str = "the mask",
) -> np.ndarray:
    """The one size policy: a mask of another size than its image is an error naming both
    sizes, unless ``resize`` (nearest-neighbour). Returns a bool ``H×W`` mask (non-zero = object)."""
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{mask_name} must be H×W, got shape {mask.shape}")
    if mask.shape != image.shape[:2]:
        if not resize:
            label = f"mask {mask_name}" if mask_name != "the mask" else "the mask"
            raise ValueError(
                f"{label} is {mask.shape[1]}×{mask.shape[0]} but image {image_name} is "
                f"{image.shape[1]}×{image.shape[0]}; pass --resize-mask (resize_mask=True) to "
                "resize it"
            )
        mask = cv2.resize(
            mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
        )
    return mask > 0


def segmenter_batch(info: dict, images: Sequence[np.ndarray]) -> torch.Tensor:
    """RGB uint8 images as a segmenter's input: resized to its ``input_size`` and normalised
    with its ``mean`` / ``std`` (ImageNet's when the checkpoint records none)."""
    size = int(info.get("input_size", 128))
    return preprocess(
        list(images), size, info.get("mean", IMAGENET_MEAN), info.get("std", IMAGENET_STD)
    )


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
    _check_threshold(threshold)
    device = next(model.parameters()).device
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        logits = model(segmenter_batch(info, chunk).to(device))
        results += masks_from_logits(logits, [image.shape[:2] for image in chunk], threshold)
    return results


@torch.inference_mode()
def masks_from_logits(
    logits: torch.Tensor, shapes: Sequence[tuple[int, int]], threshold: float = 0.5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`predict_masks`' masks from a segmenter's logits ``(N, C, h, w)`` at its input
    size: each image's resampled (bilinear) to its own ``(H, W)`` in ``shapes``, then the
    sigmoid's ``> threshold`` (one output) or the softmax's argmax."""
    _check_threshold(threshold)
    results = []
    for shape, image_logits in zip(shapes, logits.float().cpu(), strict=True):
        resized = upsample(image_logits, tuple(shape))  # (C, H, W)
        if resized.shape[0] == 1:
            probabilities = resized.sigmoid()
            mask = (probabilities[0] > threshold).to(torch.uint8)
        else:
            probabilities = resized.softmax(dim=0)
            mask = probabilities.argmax(dim=0).to(torch.uint8)
        results.append((mask.numpy(), probabilities.numpy().astype(np.float32)))
    return results


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


@dataclass
class MaskSource:
    """Where a run's masks come from, and the one size policy.

    Exactly one of: ``file`` (a mask for a single image), ``folder`` (masks with the same
    relative path and stem as each input's key, any image suffix), ``by_key`` (input key → mask
    file), or ``segmenter`` (``(ResUNet, info)``: masks predicted on the model's device). A mask
    file of another size than its image is an error naming both sizes, unless ``resize``
    (nearest-neighbour); an input without a mask file is an error naming where camkit looked.
    """

    file: Path | None = None
    folder: Path | None = None
    by_key: dict[str, Path] | None = None
    segmenter: tuple | None = None
    resize: bool = False
    required: bool = True  # False: an input without a mask file just has no metrics
    hint: str = ""  # appended to "no mask" errors (e.g. how list-file paths are resolved)

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.file, self.folder, self.by_key, self.segmenter)]
        if sum(given) > 1 or (sum(given) == 0 and self.required):
            raise ValueError(
                "give exactly one mask source: a mask file (one image), a folder of masks, a "
                "mapping of keys to mask files, or a segmenter"
            )
        if self.folder is not None and not Path(self.folder).is_dir():
            raise FileNotFoundError(f"mask folder {self.folder} is not a folder; check --masks")
        if self.file is not None and Path(self.file).is_dir():
            raise FileNotFoundError(
                f"mask {self.file} is a folder, not a mask file; a folder of masks is --masks"
            )
        if self.file is not None and not Path(self.file).is_file():
            raise FileNotFoundError(f"mask {self.file} does not exist; check --mask")

    def bound(self, items: Sequence, model: torch.nn.Module | None = None) -> MaskSource:
        """Ready for these inputs: a folder scanned once for their keys, a single file refused
        for several images, the segmenter moved to ``model``'s device."""
        from dataclasses import replace

        from camkit.data.folders import masks_by_key

        if self.file is not None and len(items) != 1:
            raise ValueError(
                f"a mask file goes with one image, got {len(items)} images; pass a folder of "
                "masks (--masks DIR) or a segmenter"
            )
        if self.folder is not None:
            found = masks_by_key([item.key for item in items], Path(self.folder))
            return replace(self, folder=None, by_key=found, hint=self.hint or str(self.folder))
        if self.segmenter is not None and model is not None:
            segmenter, info = self.segmenter
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            return replace(self, segmenter=(segmenter.to(device), info))
        return self

    def from_file(self, item, image: np.ndarray) -> np.ndarray | None:
        """The mask file's mask for ``item`` (``None`` when masks come from a segmenter)."""
        if self.segmenter is not None:
            return None
        path = self.file if self.file is not None else (self.by_key or {}).get(item.key)
        if path is None and not self.required:
            return None
        if path is None:
            raise ValueError(no_mask_message(item, self.hint))
        return load_mask(image, path, resize_mask=self.resize, image_path=item.path or item.key)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray] | None:
        """Masks predicted by the segmenter for each image, or ``None`` without one."""
        if self.segmenter is None:
            return None
        model, info = self.segmenter
        return [mask > 0 for mask, _ in predict_masks(model, info, images)]


def no_mask_message(item, masks_root: str | Path = "") -> str:
    """Why ``item`` has no mask: where camkit looked, and how list-file keys are formed."""
    stem = Path(item.key).with_suffix("").as_posix()
    if not masks_root:
        return f"no mask for {item.key}: a mask needs the same relative path and stem as its image"
    root = Path(masks_root)
    message = (
        f"no mask for {item.key}: looked for {root / stem}.* under --masks {root} "
        "(the image's path relative to its input root, any image suffix)"
    )
    list_file = getattr(item, "list_file", None)
    if list_file is not None:
        message += (
            f"; {item.key!r} is the path as written in the list file {list_file} — its "
            f"relative paths are read relative to the list file's folder ({list_file.parent})"
            " and masks are looked up at those same paths under --masks: write the list's lines "
            "relative to the images' root, or pass a --masks folder that mirrors them"
        )
    return message
