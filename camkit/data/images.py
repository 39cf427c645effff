"""Read and validate images into RGB uint8 ``H×W×3`` arrays; preprocess them for a model.

Anything OpenCV decodes is accepted: grayscale, RGBA (composited over white), 16-bit and float
images (scaled to 8 bits), palette PNGs, and JPEGs with an EXIF orientation (applied). BGR
exists only inside this module, at the cv2 boundary.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "ImageError", "preprocess", "read_image", "to_rgb_uint8"]

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".jp2",
)


class ImageError(ValueError):
    """An input file that is not a usable image (corrupt, empty, not an image, too small)."""


def _quiet_opencv() -> None:
    """Silence OpenCV's own log lines (camkit reports decoding errors itself, in one line)."""
    import cv2

    with contextlib.suppress(AttributeError):  # builds without the logging module
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def to_rgb_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert a decoded cv2 array (BGR/BGRA/gray, any depth) to RGB uint8 ``H×W×3``."""
    import cv2

    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ImageError(f"{source}: unsupported image layout {image.shape}")
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0)
    elif image.dtype.kind == "f":
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        image = finite * scale
    elif image.dtype != np.uint8:
        info = np.iinfo(image.dtype)
        image = (image.astype(np.float64) - info.min) / (info.max - info.min) * 255.0
    image = np.clip(image, 0, 255).astype(np.uint8) if image.dtype != np.uint8 else image
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        white = np.full_like(image[:, :, :3], 255, dtype=np.float32)
        blended = image[:, :, :3].astype(np.float32) * alpha + white * (1.0 - alpha)
        image = np.round(blended).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def read_image(path: str | os.PathLike, min_size: int = 1) -> np.ndarray:
    """Read an image file into an RGB uint8 ``H×W×3`` array.

    Raises:
        FileNotFoundError: the path does not exist.
        ImageError: a directory, an empty file, not an image, corrupt, or smaller than
            ``min_size`` pixels on a side.
    """
    import cv2

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image {path} does not exist; check the path")
    if path.is_dir():
        raise ImageError(
            f"{path} is a directory, not an image; pass the image files inside it (e.g. {path}/*.jpg)"
        )
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"image {path} is empty (0 bytes)")
    _quiet_opencv()
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; IMREAD_COLOR applies
    # it. JPEGs have no alpha, so they take the orientation-aware decode directly.
    decoded = None
    if not is_jpeg:
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    # only a file with EXIF data can carry an orientation: skip the second decode otherwise
    if decoded is None or (
        (decoded.ndim == 2 or decoded.shape[2] != 4) and b"Exif" in data.tobytes()
    ):
        oriented = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
        decoded = oriented if oriented is not None else decoded
    if decoded is None or decoded.size == 0:
        head = data[:8].tobytes()
        if head.startswith((b"GIF87a", b"GIF89a")):
            raise ImageError(f"{path} is a GIF, which OpenCV cannot read; convert it to PNG")
        known = (b"\x89PNG", b"\xff\xd8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
        if head.startswith(known):
            kind = "corrupt or truncated"
        elif all(32 <= b < 127 or b in (9, 10, 13) for b in head):
            kind = "looks like a text file"
        else:
            kind = "not an image format OpenCV reads"
        raise ImageError(
            f"cannot decode {path} as an image ({kind}, {data.size} bytes); "
            f"supported formats: {', '.join(IMAGE_SUFFIXES)}"
        )
    image = to_rgb_uint8(decoded, source=str(path))
    height, width = image.shape[:2]
    if height < min_size or width < min_size:
        raise ImageError(
            f"image {path} is {width}×{height} px; at least {min_size}×{min_size} is needed"
        )
    return image


def _as_hw(size: int | Sequence[int] | None, image: np.ndarray) -> tuple[int, int]:
    if size is None or size == 0:
        return image.shape[0], image.shape[1]
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def preprocess(
    images: np.ndarray | Sequence[np.ndarray],
    size: int | tuple[int, int] | None = 224,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> torch.Tensor:
    """RGB uint8 images → normalised float tensor ``(N, 3, H, W)``.

    Args:
        images: one ``H×W×3`` array or a list of them.
        size: side (square), ``(H, W)``, or ``None``/0 to keep each image's own size (all must
            then be equal). Area interpolation when shrinking, bilinear when enlarging.
    """
    import cv2

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    batch = []
    for image in images:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"expected an RGB H×W×3 array, got {type(image).__name__} {shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {image.dtype}; see read_image")
        height, width = _as_hw(size, image)
        if height < 1 or width < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        if (height, width) != image.shape[:2]:
            shrink = height * width < image.shape[0] * image.shape[1]
            interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            image = cv2.resize(image, (width, height), interpolation=interpolation)
        batch.append(image)
    shapes = {b.shape for b in batch}
    if len(shapes) != 1:
        raise ValueError(
            f"images have different sizes {sorted(shapes)}; pass a size to resize them"
        )
    array = np.stack(batch).astype(np.float32) / 255.0  # (N, H, W, 3)
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
