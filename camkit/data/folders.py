"""Folder data sets as users lay them out.

Classification: ``ROOT/images/<class>/*`` (or ``ROOT/<class>/*``). Segmentation:
``ROOT/images/**`` with ``ROOT/masks/**`` at the same relative path and stem (any image
suffix). Problems are reported up front with the files named.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from camkit.data.images import IMAGE_SUFFIXES, preprocess, read_image

__all__ = [
    "ClassificationFolder",
    "SegmentationFolder",
    "find_images",
    "match_masks",
    "read_mask",
    "spread",
]


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, hidden files skipped)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def spread(items: Sequence, limit: int | None) -> list:
    """At most ``limit`` items, evenly spaced over the sequence (all of them when ``None``)."""
    items = list(items)
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def masks_by_key(keys: Iterable[str], masks_root: Path) -> dict[str, Path]:
    """Mask file for each key (an image's path relative to its root, ``/``-separated): the same
    relative path and stem under ``masks_root``, any image suffix. One scan of ``masks_root``;
    keys without a mask are left out."""
    if not masks_root.is_dir():
        return {}
    masks = {
        p.relative_to(masks_root).with_suffix("").as_posix(): p for p in find_images(masks_root)
    }
    stems = {key: PurePosixPath(key).with_suffix("").as_posix() for key in keys}
    return {key: masks[stem] for key, stem in stems.items() if stem in masks}


def match_masks(images: Sequence[Path], images_root: Path, masks_root: Path) -> dict[Path, Path]:
    """Mask file for each image under ``images_root`` (see ``masks_by_key``); images without
    a mask are left out."""
    keys = {image.relative_to(images_root).as_posix(): image for image in images}
    return {keys[key]: mask for key, mask in masks_by_key(keys, masks_root).items()}


def read_mask(path: str | os.PathLike, classes: int | None = None) -> np.ndarray:
    """Read a class-index mask (uint8 ``H×W``; 0 = background). Colour masks use channel 0.

    Raises:
        FileNotFoundError / ValueError: missing, unreadable, or values above ``classes``.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mask {path} does not exist")
    if path.is_dir():
        raise ValueError(f"mask {path} is a folder, not a mask file")
    data = np.fromfile(path, dtype=np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None:
        raise ValueError(f"cannot decode mask {path} (empty or corrupt)")
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.dtype != np.uint8:
        raise ValueError(f"mask {path} has {mask.dtype} pixels; masks are 8-bit class indices")
    if classes is not None and int(mask.max()) > classes:
        raise ValueError(
            f"mask {path} has value {int(mask.max())} but there are only {classes} object "
            f"classes besides the background (values 0–{classes}; train-seg --classes "
            f"{classes + 1}); binary masks use 0/1 (or 0/255 with classes=None)"
        )
    return mask


class ClassificationFolder(Dataset):
    """``images/<class>/*`` → ``(image tensor (3, S, S), label)``.

    Args:
        root: the data set folder (holding ``images/``) or the class-folder root itself.
        size: side the images are resized to; ``mean``/``std``: normalisation.
        augment: ``True``: random horizontal flips; a callable: applied to each RGB uint8
            image before resizing (e.g. :class:`camkit.training.augment.Augmentation`).
        class_names: fix the class order (e.g. from a checkpoint); default: sorted folders.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int = 128,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        augment: bool | Callable[[np.ndarray], np.ndarray] = False,
        class_names: Sequence[str] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder {root} does not exist")
        base = root / "images" if (root / "images").is_dir() else root
        folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise ValueError(
                f"{base} has no class folders; lay images out as {base}/<class>/<image>"
            )
        names = list(class_names) if class_names is not None else [p.name for p in folders]
        missing = [n for n in names if not (base / n).is_dir()]
        if missing:
            raise ValueError(f"{base} lacks class folders {missing}")
        self.samples: list[tuple[Path, int]] = []
        empty = []
        for label, name in enumerate(names):
            files = find_images(base / name)
            if not files:
                empty.append(str(base / name))
            self.samples.extend((f, label) for f in files)
        if empty:
            raise ValueError(f"class folders with no images: {', '.join(empty)}")
        self.root, self.class_names = root, names
        self.size, self.mean, self.std, self.augment = size, tuple(mean), tuple(std), augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = read_image(path)
        if callable(self.augment):
            image = self.augment(image)
        elif self.augment and torch.rand(()) < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
        return preprocess(image, self.size, self.mean, self.std)[0], label


class SegmentationFolder(Dataset):
    """``images/**`` + ``masks/**`` (same relative path and stem) → ``(image, mask, path)``.

    Every image must have a mask; sizes are checked when a sample is read. ``size=None``
    keeps native sizes (then batch with ``batch_size=1``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | None = 128,
        classes: int | None = None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        augment: bool = False,
    ) -> None:
        root = Path(root)
        self.augment = augment
        images_dir, masks_dir = root / "images", root / "masks"
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{folder} does not exist; expected {root}/images and {root}/masks"
                )
        images = find_images(images_dir)
        if not images:
            raise ValueError(f"no images under {images_dir}")
        masks = {
            p.relative_to(masks_dir).with_suffix("").as_posix(): p for p in find_images(masks_dir)
        }
        pairs, missing = [], []
        for image in images:
            key = image.relative_to(images_dir).with_suffix("").as_posix()
            if key in masks:
                pairs.append((image, masks[key]))
            else:
                missing.append(str(image))
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise ValueError(f"{len(missing)} images have no mask in {masks_dir}: {shown}")
        self.pairs, self.size, self.classes = pairs, size, classes
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        import cv2

        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_mask(mask_path, self.classes)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"mask {mask_path} is {mask.shape[1]}×{mask.shape[0]} but image {image_path} is "
                f"{image.shape[1]}×{image.shape[0]}"
            )
        if self.augment:  # flips move image and mask together
            if torch.rand(()) < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if torch.rand(()) < 0.5:
                image, mask = image[::-1], mask[::-1]
            image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask)
        tensor = preprocess(image, self.size, self.mean, self.std)[0]
        if self.size is not None:
            mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return tensor, torch.from_numpy(mask.astype(np.int64)), str(image_path)
