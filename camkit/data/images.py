"""Read and validate images into RGB uint8 ``H×W×3`` arrays; preprocess them for a model.

Anything OpenCV decodes is accepted: grayscale, RGBA (composited over white), 16-bit and float
images (scaled to 8 bits), palette PNGs, and JPEGs with an EXIF orientation (applied). BGR
exists only inside this module, at the cv2 boundary.

Before decoding, the size a file claims in its header (PNG, JPEG, BMP, TIFF, WebP, JPEG 2000,
PBM/PGM/PPM/PAM/PFM) is checked against a pixel limit, so a decompression bomb (a few kilobytes
that claim 100000×100000 px) is refused in one line before anything is allocated; a 0 px side
is refused as corrupt. The limit is ``MAX_PIXELS`` (Pillow's default, about 179 megapixels); set
``CAMKIT_MAX_IMAGE_PIXELS`` or pass ``read_image(..., max_pixels=N)`` to change it. Other
formats meet OpenCV's own limit, reported the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageError",
    "max_image_pixels",
    "preprocess",
    "read_image",
    "to_rgb_uint8",
]

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


MAX_PIXELS = 178_956_970
"""Default limit on width × height claimed by a file: Pillow's ``Image.MAX_IMAGE_PIXELS``
(about 179 megapixels, e.g. 13379×13379; 0.5 GiB as RGB uint8)."""

MAX_PIXELS_ENV = "CAMKIT_MAX_IMAGE_PIXELS"
"""Environment variable that overrides ``MAX_PIXELS`` (a positive whole number of pixels).
OpenCV has its own ceiling (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by default, read when cv2 is
imported): beyond it, raise that one as well."""


class ImageError(ValueError):
    """An input file that is not a usable image (corrupt, empty, not an image, too small, or
    claiming more pixels than the limit)."""


def max_image_pixels() -> int:
    """The pixel limit in force: ``$CAMKIT_MAX_IMAGE_PIXELS`` if set, else ``MAX_PIXELS``."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(
            f"{MAX_PIXELS_ENV}={value!r} is not a positive whole number of pixels; "
            f"set it to e.g. {MAX_PIXELS} (the default) or unset it"
        )
    return limit


# --------------------------------------------------------------------------------------------
# header sizes: what a file claims, read without decoding it


def _jpeg_size(view: memoryview) -> tuple[int, int] | None:
    """Width and height from the first SOFn frame header (SOF0–SOF15 less DHT, JPG, DAC)."""
    offset, end = 2, len(view)
    while offset + 4 <= end:
        if view[offset] != 0xFF:
            return None  # not at a marker: corrupt, the decoder says so
        marker = view[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length field
            offset += 2
        elif marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            return None
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if offset + 9 > end:
                return None
            height, width = struct.unpack_from(">HH", view, offset + 5)
            return width, height
        else:
            offset += 2 + struct.unpack_from(">H", view, offset + 2)[0]
    return None


def _tiff_size(view: memoryview) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) from the first IFD (classic TIFF)."""
    order = {b"II": "<", b"MM": ">"}[bytes(view[:2])]
    (ifd,) = struct.unpack_from(order + "I", view, 4)
    if ifd + 2 > len(view):
        return None
    (count,) = struct.unpack_from(order + "H", view, ifd)
    sizes = {}
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(view) - 11), 12):
        tag, kind = struct.unpack_from(order + "HH", view, entry)
        if tag in (256, 257) and kind in (3, 4):  # SHORT or LONG, left-justified in the field
            sizes[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), view, entry + 8)[0]
    return (sizes[256], sizes[257]) if len(sizes) == 2 else None


def _webp_size(view: memoryview) -> tuple[int, int] | None:
    """Canvas size from the VP8X chunk, or the frame size from a VP8 / VP8L bitstream."""
    chunk = bytes(view[12:16])
    if chunk == b"VP8X":
        width = int.from_bytes(view[24:27], "little") + 1
        return width, int.from_bytes(view[27:30], "little") + 1
    if chunk == b"VP8 " and bytes(view[23:26]) == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", view, 26)
        return width & 0x3FFF, height & 0x3FFF  # the top 2 bits are a scaling hint
    if chunk == b"VP8L" and view[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", view, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# PBM/PGM/PPM and PFM: magic, then width and height as decimals among whitespace and comments
_PNM = re.compile(rb"P[1-6Ff](?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")
_PAM = re.compile(rb"P7(?=\n)(?=.*?\nWIDTH\s+(\d+))(?=.*?\nHEIGHT\s+(\d+))", re.DOTALL)


def _jp2_size(view: memoryview) -> tuple[int, int] | None:
    """Size from the ``ihdr`` box inside ``jp2h`` (JP2 file) or the SIZ marker (J2K stream)."""
    if bytes(view[:4]) == b"\xff\x4f\xff\x51":  # SOC, SIZ: Xsiz, Ysiz, XOsiz, YOsiz
        x_size, y_size, x_offset, y_offset = struct.unpack_from(">IIII", view, 8)
        return max(0, x_size - x_offset), max(0, y_size - y_offset)
    start, end = 0, len(view)
    while start + 8 <= end:
        length, kind = struct.unpack_from(">I4s", view, start)
        if kind == b"jp2h":  # a superbox: look inside it
            start, end = start + 8, min(end, start + length) if length else end
            continue
        if kind == b"ihdr" and start + 16 <= end:
            height, width = struct.unpack_from(">II", view, start + 8)
            return width, height
        if length < 8:  # 0 (to the end) or 1 (64-bit length): no ihdr where expected
            return None
        start += length
    return None


def _header_size(view: memoryview) -> tuple[str, int, int] | None:
    """``(format, width, height)`` claimed by a file's header, or None when unknown/unreadable
    (the decoder then has the last word)."""
    head = bytes(view[:16])
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", view, 16)
            return "PNG", width, height
        if head.startswith(b"\xff\xd8"):
            size = _jpeg_size(view)
            return None if size is None else ("JPEG", *size)
        if head.startswith(b"BM"):
            if struct.unpack_from("<I", view, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER
                width, height = struct.unpack_from("<HH", view, 18)
            else:
                width, height = struct.unpack_from("<ii", view, 18)  # height < 0: top-down
            return "BMP", abs(width), abs(height)
        if head.startswith((b"II*\x00", b"MM\x00*")):
            size = _tiff_size(view)
            return None if size is None else ("TIFF", *size)
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            size = _webp_size(view)
            return None if size is None else ("WebP", *size)
        if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f"):
            size = _jp2_size(view)
            return None if size is None else ("JPEG 2000", *size)
        match = _PNM.match(bytes(view[:4096])) or _PAM.match(bytes(view[:4096]))
        if match:
            return "PNM", int(match[1]), int(match[2])
    except (struct.error, IndexError):  # header cut short: corrupt, the decoder says so
        return None
    return None


def _check_header(path: Path, view: memoryview, max_pixels: int) -> tuple[str, int, int] | None:
    """Refuse a file whose header claims no pixels or more than ``max_pixels``."""
    claimed = _header_size(view)
    if claimed is None:
        return None
    kind, width, height = claimed
    if width == 0 or height == 0:
        raise ImageError(
            f"image {path} is corrupt: its {kind} header claims {width}×{height} px (no pixels)"
        )
    if width * height > max_pixels:
        raise ImageError(
            f"image {path} claims {width}×{height} px ({width * height / 1e6:,.1f} megapixels) "
            f"in its {kind} header, more than the limit of {max_pixels:,} px "
            f"({max_pixels / 1e6:,.1f} megapixels): a possible decompression bomb, not decoded; "
            f"if the file is trusted, raise the limit with {MAX_PIXELS_ENV}={width * height}"
        )
    return claimed


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


def _decode(
    path: Path, data: np.ndarray, flags: int, claimed: tuple[str, int, int] | None
) -> np.ndarray | None:
    """``cv2.imdecode``, with OpenCV's own refusals (e.g. its pixel limit) as one ImageError."""
    import cv2

    try:
        return cv2.imdecode(data, flags)
    except cv2.error as error:
        reason = str(error).strip().splitlines()[0].partition(" error: ")[2] or str(error)
        claim = "" if claimed is None else f" ({claimed[1]}×{claimed[2]} px)"
        if "CV_IO_MAX_IMAGE" in reason:
            raise ImageError(
                f"image {path}{claim} is larger than OpenCV decodes: raise its limits "
                "OPENCV_IO_MAX_IMAGE_PIXELS (2^30 by default) and OPENCV_IO_MAX_IMAGE_WIDTH/HEIGHT "
                "(2^20) in the environment before starting"
            ) from None
        raise ImageError(f"cannot decode {path}{claim}: OpenCV refused it ({reason})") from None


def read_image(
    path: str | os.PathLike, min_size: int = 1, max_pixels: int | None = None
) -> np.ndarray:
    """Read an image file into an RGB uint8 ``H×W×3`` array.

    The size claimed by the header is checked before decoding, so a decompression bomb costs
    nothing but its refusal.

    Args:
        path: the image file.
        min_size: the smallest side accepted, in pixels.
        max_pixels: the largest width × height accepted; default ``$CAMKIT_MAX_IMAGE_PIXELS``
            or ``MAX_PIXELS`` (178,956,970).

    Raises:
        FileNotFoundError: the path does not exist.
        ImageError: a directory, an empty file, not an image, corrupt (including a header
            claiming 0 px), claiming more than ``max_pixels``, or smaller than ``min_size``
            pixels on a side.
    """
    import cv2

    if max_pixels is None:
        max_pixels = max_image_pixels()
    elif max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image {path} does not exist; check the path")
    if path.is_dir():
        raise ImageError(
            f"{path} is a directory, not an image; pass the image files inside it (e.g. {path}/*.jpg)"
        )
    if not path.is_file():  # a FIFO or a device would block the read, or never end
        raise ImageError(f"{path} is not a regular file (a pipe or a device), not an image")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"image {path} is empty (0 bytes)")
    claimed = _check_header(path, memoryview(data), max_pixels)  # before anything is allocated
    _quiet_opencv()
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; IMREAD_COLOR applies
    # it. JPEGs have no alpha, so they take the orientation-aware decode directly.
    decoded = None
    if not is_jpeg:
        decoded = _decode(path, data, cv2.IMREAD_UNCHANGED, claimed)
    # only a file with EXIF data can carry an orientation: skip the second decode otherwise
    if decoded is None or (
        (decoded.ndim == 2 or decoded.shape[2] != 4) and b"Exif" in data.tobytes()
    ):
        oriented = _decode(path, data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR, claimed)
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


def _normalisation(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``std`` as float32 RGB triples: finite, and ``std`` > 0 (else the input,
    and every map, would be NaN or infinite)."""
    try:
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"mean and std must be numbers, got {mean!r} and {std!r}") from None
    if mean.shape not in ((), (1,), (3,)) or std.shape not in ((), (1,), (3,)):
        raise ValueError(f"mean and std need one value per RGB channel, got {mean!r} and {std!r}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(
            f"normalisation mean {np.round(mean, 4).tolist()} / std {np.round(std, 4).tolist()}: "
            "each must be finite and std > 0; check the checkpoint's 'mean' and 'std'"
        )
    return mean, std


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
    mean, std = _normalisation(mean, std)
    batch = []
    for image in images:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"expected an RGB H×W×3 array, got {type(image).__name__} {shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {image.dtype}; see read_image")
        if 0 in image.shape[:2]:
            raise ValueError(f"image is {image.shape[1]}×{image.shape[0]} px: it has no pixels")
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
    array = (array - mean) / std
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
