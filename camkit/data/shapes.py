"""Deterministic synthetic shapes with pixel-exact masks: camkit's offline data set.

Each sample depends only on ``(seed, index)``, so any subset can be regenerated in any order
or in parallel. Classes: circle, square, triangle, star. ``difficulty="easy"`` gives each
class its own hue (jittered); ``"hard"`` colours objects at random, so only shape decides.
Masks are class-index masks: 0 = background, k + 1 = class k. The mask is drawn first and
the object is painted through it, so mask and pixels match exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CLASSES", "Sample", "ShapeStream", "generate", "write_dataset"]

CLASSES = ("circle", "square", "triangle", "star")
GENERATOR = "camkit.data.shapes"  # meta.json says who wrote the folder
GENERATOR_VERSION = 1
_GOLDEN = 0.6180339887498949  # index · golden mod 1 spreads a share of the stream evenly
_EASY_HUES = {"circle": 0, "square": 60, "triangle": 120, "star": 28}  # OpenCV hue, 0..179


@dataclass(frozen=True)
class Sample:
    """One generated image: RGB uint8 ``H×W×3``, class-index mask ``H×W``, and its class ids."""

    image: np.ndarray
    mask: np.ndarray
    labels: tuple[int, ...]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # four plane waves sin(2π(fx·x + fy·y) + φ), each an outer product of 1-D terms
    # (sin(a + b) = sin a cos b + cos a sin b): the same field as on the full grid, without
    # four full-grid sines (generate(): 11.9 → 9.4 ms per 128 px image)
    line = np.arange(size, dtype=np.float64) / size
    field = np.zeros((size, size), np.float64)
    for _ in range(4):
        fx, fy = rng.uniform(1.0, 7.0, 2)
        phase = rng.uniform(0, 2 * np.pi)
        u, v = 2 * np.pi * fx * line + phase, 2 * np.pi * fy * line
        wave = np.outer(np.cos(v), np.sin(u)) + np.outer(np.sin(v), np.cos(u))
        field += rng.uniform(0.3, 1.0) * wave
    field = field / (np.abs(field).max() + 1e-6)
    base = rng.uniform(90, 160)
    gray = base + 35 * field + rng.normal(0, 7, (size, size))
    tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)


def _polygon(kind: str, center: np.ndarray, radius: float, angle: float) -> np.ndarray:
    if kind == "square":
        angles = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif kind == "triangle":
        angles = angle - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    else:  # star: 5 outer points, 5 inner
        angles = angle - np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    points = center + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return np.round(points).astype(np.int32)


def _colour(rng: np.random.Generator, kind: str, difficulty: str) -> np.ndarray:
    import cv2

    if difficulty == "easy":
        hue = (_EASY_HUES[kind] + rng.integers(-5, 6)) % 180
    else:
        hue = rng.integers(0, 180)
    hsv = np.array([[[hue, rng.integers(170, 256), rng.integers(170, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def generate(
    index: int,
    seed: int = 0,
    size: int = 128,
    difficulty: str = "easy",
    objects: int = 1,
    label: int | None = None,
) -> Sample:
    """Generate sample ``index`` of the stream ``seed``.

    Args:
        objects: 1, or 2 for two objects of different classes (no overlap).
        label: class of the (first) object; default ``index % 4`` (balanced classes).
    """
    import cv2

    if difficulty not in ("easy", "hard"):
        raise ValueError(f"difficulty must be 'easy' or 'hard', got {difficulty!r}")
    if objects not in (1, 2):
        raise ValueError(f"objects must be 1 or 2, got {objects!r}")
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    rng = np.random.default_rng([seed, index, objects, size])
    first = index % len(CLASSES) if label is None else label
    labels = [first]
    if objects == 2:
        labels.append(int((first + rng.integers(1, len(CLASSES))) % len(CLASSES)))
    image = _background(rng, size).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    placed: list[tuple[np.ndarray, float]] = []
    scale = 0.8 if objects == 2 else 1.0
    for class_id in labels:
        for _ in range(100):
            radius = rng.uniform(0.14, 0.26) * size * scale
            center = rng.uniform(radius + 2, size - radius - 2, 2)
            if all(np.linalg.norm(center - c) > radius + r + 4 for c, r in placed):
                break
        placed.append((center, radius))
        kind = CLASSES[class_id]
        region = np.zeros((size, size), np.uint8)
        if kind == "circle":
            cv2.circle(
                region,
                tuple(int(v) for v in np.round(center)),
                round(radius * 0.85),
                1,
                -1,
                cv2.LINE_8,
            )
        else:
            cv2.fillPoly(
                region, [_polygon(kind, center, radius, rng.uniform(0, 2 * np.pi))], 1, cv2.LINE_8
            )
        inside = region.astype(bool)
        colour = _colour(rng, kind, difficulty)
        shading = rng.normal(0, 6, (size, size, 1)).astype(np.float32)
        image[inside] = np.clip(colour + shading[inside], 0, 255)
        mask[inside] = class_id + 1
    return Sample(np.round(image).astype(np.uint8), mask, tuple(int(v) for v in labels))


def _clear_previous(root: Path) -> None:
    """A data set written here before is removed first (so no image of it outlives its
    ``meta.json``); a folder holding images that this generator did not write is refused."""
    import shutil

    folders = [root / "images", root / "masks"]
    if not any(folder.exists() for folder in folders):
        return
    try:
        previous = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if not isinstance(previous, dict) or previous.get("generator") != GENERATOR:
        raise FileExistsError(
            f"{root} already holds images/ or masks/ that camkit data shapes did not write; "
            "choose an empty or new folder"
        )
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)


def write_dataset(
    out: str | os.PathLike,
    n: int,
    size: int = 128,
    seed: int = 0,
    difficulty: str = "easy",
    objects: int = 1,
    progress: bool | None = False,
) -> Path:
    """Write ``n`` samples as a folder data set and return its root.

    Layout: ``images/<class>/shape_00000.png`` and ``masks/<class>/shape_00000.png`` (class-index
    PNG) for one object; ``images/pair_00000.png`` + ``masks/...`` for two objects; and
    ``meta.json`` (classes, generator settings, labels). Files are written atomically.
    """
    import cv2

    from camkit.io.files import atomic_write_bytes

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    root = Path(out)
    _clear_previous(root)
    # claimed before the first image, so that a run cut short is still known as ours
    atomic_write_bytes(root / "meta.json", json.dumps({"generator": GENERATOR, "n": 0}).encode())
    labels = []
    from camkit.progress import progress as report

    # None: a bar on a terminal, a line now and then elsewhere (camkit.progress); False: quiet
    indices = report(range(n), desc=f"shapes → {root}", unit="img", enabled=progress)
    for index in indices:
        sample = generate(index, seed, size, difficulty, objects)
        if objects == 1:
            relative = Path(CLASSES[sample.labels[0]]) / f"shape_{index:05d}.png"
        else:
            relative = Path(f"pair_{index:05d}.png")
        ok, image_png = cv2.imencode(".png", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        ok_mask, mask_png = cv2.imencode(".png", sample.mask)
        if not (ok and ok_mask):
            raise RuntimeError(f"PNG encoding failed for sample {index}")
        atomic_write_bytes(root / "images" / relative, image_png.tobytes())
        atomic_write_bytes(root / "masks" / relative, mask_png.tobytes())
        labels.append({"file": relative.as_posix(), "labels": list(sample.labels)})
    meta = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "classes": list(CLASSES),
        "n": n,
        "size": size,
        "seed": seed,
        "difficulty": difficulty,
        "objects": objects,
        "samples": labels,
    }
    atomic_write_bytes(root / "meta.json", json.dumps(meta, indent=1).encode())
    return root


class ShapeStream:
    """``n`` generated single-object shapes as a classification data set: item ``i`` is
    ``(image tensor (3, S, S), label)`` of sample ``i`` of the stream ``seed``, made when it is
    read (nothing on disk). One epoch over it shows ``n`` different images, so a run trained on
    it sees fresh shapes at every step; a stream of another seed is disjoint held-out data.

    Args:
        n: how many samples; ``seed``, ``size`` (generated side), ``difficulty``: as
            :func:`generate`.
        input_size: side the images are resized to for the model (default ``size``).
        augment: applied to each RGB uint8 image before resizing (e.g.
            :class:`camkit.training.augment.Augmentation`); ``None``: none.
        mean, std: normalisation.
        pairs: share of samples with two objects of different classes (``0``: none). Then
            every label is a probability vector over the classes, ``0.5`` on each of a pair's
            two (a soft target ``cross_entropy`` takes), so the network learns to find each
            class's object among others.

    Labels index ``class_names``: :data:`CLASSES` sorted, the order a folder of the same shapes
    gets (``ClassificationFolder``), so stream- and folder-trained models agree. A torch
    ``Dataset`` by duck typing (``__len__``, ``__getitem__``); ``DataLoader`` takes it as is.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        size: int = 128,
        difficulty: str = "hard",
        input_size: int | None = None,
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        pairs: float = 0.0,
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if difficulty not in ("easy", "hard"):
            raise ValueError(f"difficulty must be 'easy' or 'hard', got {difficulty!r}")
        if not 0.0 <= pairs <= 1.0:
            raise ValueError(f"pairs must be a share between 0 and 1, got {pairs!r}")
        self.pairs = float(pairs)
        self.n, self.seed, self.size, self.difficulty = n, seed, size, difficulty
        self.input_size, self.augment = input_size or size, augment
        self.mean, self.std = tuple(mean), tuple(std)
        self.class_names = sorted(CLASSES)  # the order a folder of these shapes gets

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        from camkit.data.images import preprocess

        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for a stream of {self.n} shapes")
        objects = 2 if (index * _GOLDEN) % 1.0 < self.pairs else 1
        sample = generate(index, self.seed, self.size, self.difficulty, objects)
        image = self.augment(sample.image) if self.augment is not None else sample.image
        labels = [self.class_names.index(CLASSES[c]) for c in sample.labels]
        tensor = preprocess(image, self.input_size, self.mean, self.std)[0]
        if not self.pairs:
            return tensor, labels[0]
        import torch

        target = torch.zeros(len(self.class_names))
        target[labels] = 1.0 / len(labels)
        return tensor, target

    def with_input(
        self, input_size: int | None, augment: Callable[[np.ndarray], np.ndarray] | None
    ) -> ShapeStream:
        """The same samples resized to ``input_size`` and augmented by ``augment`` (what a
        trainer asks of its data source)."""
        return ShapeStream(
            self.n,
            self.seed,
            self.size,
            self.difficulty,
            input_size,
            augment,
            self.mean,
            self.std,
            self.pairs,
        )

    def __repr__(self) -> str:
        return (
            f"ShapeStream(n={self.n}, seed={self.seed}, size={self.size}, "
            f"difficulty={self.difficulty!r}, input_size={self.input_size}, pairs={self.pairs})"
        )
