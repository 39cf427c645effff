"""The one pipeline: images → Explainer in batches → maps on each image → mask and metrics.

Every command that explains images runs through here — ``explain``, ``compare``, ``evaluate``,
``export``, ``variants compare`` and the demo — so they read, resize, explain, resample, mask
and measure the same way:

1. :func:`prepare` reads one input (``read_image``: validated RGB uint8, bombs refused), makes
   its model input (``settings.size``; ``0``: native size, where an image smaller than one cell
   of the layer is an error) and its mask from a file (:class:`MaskSource`). It is picklable:
   export runs it in DataLoader workers.
2. :func:`explain_prepared` explains a batch, puts each map on its image through
   :meth:`Heatmaps.on_image`, predicts masks with a segmenter (on the model's device) where
   one is given, and measures every heatmap-vs-mask metric on the first target's raw map.
3. :func:`explain_images` streams one :class:`Result` per input, in input order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from camkit.data.inputs import Input, as_inputs
from camkit.heatmaps import Heatmaps
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.settings import Settings

__all__ = ["Prepared", "Result", "explain_images", "explain_prepared", "prepare"]


@dataclass(frozen=True)
class Prepared:
    """One input, read and made ready for the model (or the reason it could not be)."""

    index: int
    key: str
    path: str | None
    image: np.ndarray | None = None  # RGB uint8, what maps are drawn on and measured against
    tensor: torch.Tensor | None = None  # (3, h, w) model input
    mask: np.ndarray | None = None  # bool (H, W) from a mask file
    targets: tuple[int, ...] | None = None  # this input's own class ids
    error: str | None = None


@dataclass(frozen=True)
class Result:
    """What the pipeline made of one input.

    Attributes:
        key: the input's name (relative path, ``/``-separated); ``path``: its file, if any.
        image: RGB uint8 ``(H, W, 3)``; ``maps``: ``(K, H, W)`` raw maps on it (float32);
        ``input``: the model input ``(3, h, w)`` it was explained from.
        heatmaps: this image's :class:`Heatmaps` (``N = 1``, on the CPU).
        order: the targets by decreasing score when every class is explained, else as given;
            ``metrics`` are those of the first of them.
        mask: bool ``(H, W)`` or ``None``; ``metrics``: heatmap-vs-mask metrics or ``None``.
        seconds: this image's share of its batch's explanation time.
        error: why this input failed (then the other fields are ``None``).
    """

    key: str
    path: str | None
    image: np.ndarray | None = None
    heatmaps: Heatmaps | None = None
    maps: torch.Tensor | None = None
    order: list[int] = field(default_factory=list)
    mask: np.ndarray | None = None
    metrics: dict | None = None
    input: torch.Tensor | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _shrink(image: np.ndarray, mask: np.ndarray | None, max_side: int | None):
    import cv2

    scale = max_side / max(image.shape[:2]) if max_side else 1.0
    if scale >= 1:
        return image, mask
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return image, mask


def prepare(
    item: Input,
    index: int,
    settings: Settings,
    info,
    masks: MaskSource | None = None,
    stride: int = 1,
    max_side: int | None = None,
) -> Prepared:
    """Read ``item``, make its model input and its file mask; errors become ``Prepared.error``.

    ``stride``: the layer's output stride; at native size (``settings.size == 0``) an image
    smaller than one cell is refused. ``max_side``: shrink the image (and mask) that maps are
    drawn on to at most this side (the model input is made from the full image first).
    """
    from camkit.data.images import preprocess, read_image

    try:
        image = item.image if item.image is not None else read_image(item.path)
        height, width = image.shape[:2]
        if settings.size == 0 and (height < stride or width < stride):
            raise ValueError(
                f"image {item.path or item.key} is {width}×{height} px, smaller than one cell "
                f"of {settings.layer} (output stride {stride}) at its native size; resize it "
                f"(--size 224) or use an earlier layer"
            )
        tensor = preprocess(image, settings.size or None, info.mean, info.std)[0]
        mask = _mask(item, image, masks)
        image, mask = _shrink(image, mask, max_side)
    except (OSError, ValueError) as error:
        return Prepared(index, item.key, _path(item), error=str(error))
    return Prepared(index, item.key, _path(item), image, tensor, mask, item.targets)


def _mask(item: Input, image: np.ndarray, masks: MaskSource | None) -> np.ndarray | None:
    if item.mask is not None:
        from camkit.pipeline.masks import check_mask

        return check_mask(item.mask, image, item.key, resize=masks is not None and masks.resize)
    return masks.from_file(item, image) if masks is not None else None


def _path(item: Input) -> str | None:
    return None if item.path is None else str(item.path)


def _targets(settings: Settings, group: Sequence[Prepared]):
    """The targets of a batch: each input's own class ids, or the run's."""
    own = [item.targets for item in group]
    if any(t is not None for t in own):
        if any(t is None for t in own) or len({len(t) for t in own}) > 1:
            raise ValueError(
                "when inputs give their own targets, every input of the run must give the same "
                "number of class ids"
            )
        return [list(t) for t in own]
    targets = settings.targets
    if targets is not None and not isinstance(targets, (str, int)):
        return [list(targets)] * len(group)  # the same classes for every image
    return targets


def _explain(explainer, settings: Settings, batch: torch.Tensor, targets) -> Heatmaps:
    if settings.aug_smooth:
        from camkit.combine import augmentation_smoothed

        return augmentation_smoothed(explainer, batch, targets).cpu()
    return explainer(batch, targets).cpu()


def explain_prepared(
    explainer,
    settings: Settings,
    items: Sequence[Prepared],
    masks: MaskSource | None = None,
    tolerance: float = 15.0,
) -> list[Result]:
    """Explain prepared inputs (one forward per group of equal input size), in their order."""
    from camkit.metrics.localisation import heatmap_metrics

    results: dict[int, Result] = {}
    groups: dict[tuple, list[Prepared]] = {}
    for item in items:
        if item.error is not None:
            results[item.index] = Result(item.key, item.path, error=item.error)
        else:
            groups.setdefault(tuple(item.tensor.shape), []).append(item)
    for group in groups.values():
        batch = torch.stack([item.tensor for item in group])
        began = time.perf_counter()
        heatmaps = _explain(explainer, settings, batch, _targets(settings, group))
        seconds = (time.perf_counter() - began) / len(group)
        predicted = masks.predict([item.image for item in group]) if masks else None
        for position, item in enumerate(group):
            one = heatmaps[position]
            maps = one.on_image(item.image.shape[:2], index=0)  # (K, H, W)
            order = list(range(maps.shape[0]))
            if settings.targets == "all":
                order = torch.argsort(one.scores[0], descending=True).tolist()
            mask = item.mask if predicted is None else predicted[position]
            metrics = None
            if mask is not None:
                metrics = {"mask_share": float(mask.mean())}
                metrics.update(heatmap_metrics(maps[order[0]].numpy(), mask, tolerance))
            results[item.index] = Result(
                item.key,
                item.path,
                item.image,
                one,
                maps,
                order,
                mask,
                metrics,
                item.tensor,
                seconds,
            )
    return [results[item.index] for item in items]


def explain_images(
    model: nn.Module,
    info,
    inputs: str | Path | Iterable,
    settings: Settings | None = None,
    masks: MaskSource | None = None,
    tolerance: float = 15.0,
    max_side: int | None = None,
) -> Iterator[Result]:
    """Explain images and compare them with masks: one :class:`Result` per input, in order.

    Args:
        model, info: a classifier and its ``ModelInfo`` (``camkit.models.load_classifier``).
        inputs: a file, a folder (recursive), a glob, a list file (one path per line), or a
            sequence of paths, :class:`~camkit.data.inputs.Input` or RGB uint8 arrays.
        settings: what to explain (:class:`Settings`; defaults filled in for the model).
        masks: where masks come from (files, a folder, or a segmenter); ``None``: no masks.
        tolerance: the pointing game's tolerance in pixels at the image's size.
        max_side: draw and measure on images shrunk to at most this side.

    Example:
        >>> for result in explain_images(model, info, "photos/", Settings(method="gradcampp")):
        ...     print(result.key, result.heatmaps.class_ids[0].tolist(), result.metrics)
    """
    settings = (settings or Settings()).resolved(model, info)
    items = as_inputs(inputs)
    explainer = settings.explainer(model)
    if masks is not None:
        masks = masks.bound(items, model)
    stride = explainer.stride if settings.size == 0 else 1
    for start in range(0, len(items), settings.batch_size):
        chunk = items[start : start + settings.batch_size]
        prepared = [
            prepare(item, start + i, settings, info, masks, stride, max_side)
            for i, item in enumerate(chunk)
        ]
        yield from explain_prepared(explainer, settings, prepared, masks, tolerance)
