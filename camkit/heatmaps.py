"""Heatmaps (the frozen result of an explanation), target resolution, and :func:`to_image`: the
one place a map is put on an image."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from camkit.cam import normalize, upsample
from camkit.core.geometry import LayerGeometry
from camkit.core.targets import check_targets, out_of_range

__all__ = [
    "ALIGNS",
    "Heatmaps",
    "Targets",
    "check_align",
    "check_targets",
    "resolve_targets",
    "to_image",
]

ALIGNS = ("rf", "grid")  # cells at their receptive-field centres; the peers' convention

Targets = int | str | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | None


@dataclass(frozen=True)
class Heatmaps:
    """What an explanation produced for a batch.

    Attributes:
        maps: raw maps ``(N, K, h, w)`` float32 at the layer's resolution (not normalised).
        class_ids: ``(N, K)`` target class of each map.
        scores: ``(N, K)`` logit of each target; ``probabilities``: its softmax probability.
        logits: ``(N, classes)`` the model's logits.
        layer, method, path: what was computed, and how.
        input_size: ``(H, W)`` of the model input; ``upsampled`` has this size.
        geometry: where the layer's cells are centred in the model input
            (:class:`~camkit.core.geometry.LayerGeometry`); ``align``: how maps are put on
            images (``"rf"``: each cell at its receptive-field centre; ``"grid"``: the peers'
            ``align_corners=False`` convention, also used where ``geometry`` is ``None``).
    """

    maps: torch.Tensor
    class_ids: torch.Tensor
    scores: torch.Tensor
    probabilities: torch.Tensor
    logits: torch.Tensor
    layer: str
    method: str
    path: str
    input_size: tuple[int, int]
    extra: dict = field(default_factory=dict, compare=False)
    fusion: str | None = None  # "mean" or "max" when maps of several layers were fused
    geometry: LayerGeometry | None = None
    align: str = "rf"

    def __len__(self) -> int:
        return self.maps.shape[0]

    def __getitem__(self, index: int | slice) -> Heatmaps:
        """The result of image ``index`` (a batch of one) or of a slice of the batch; tensors
        in ``extra`` with one row per image are cut alike."""
        count = len(self)
        if not isinstance(index, slice):
            try:
                if isinstance(index, bool):
                    raise TypeError
                number = operator.index(index)  # ints, numpy and 0-d torch integers
            except TypeError:
                raise TypeError(
                    f"index Heatmaps by an image number or a slice, got {index!r}"
                ) from None
            if not -count <= number < count:
                raise IndexError(f"image {index} of a batch of {count}")
            index = slice(number % count, number % count + 1)

        def cut(value):  # a tensor with a row per image, or a dict of them (per_layer)
            if isinstance(value, dict):
                return {key: cut(item) for key, item in value.items()}
            if isinstance(value, torch.Tensor) and value.ndim and len(value) == count:
                return value[index]
            return value

        extra = cut(self.extra)
        return replace(
            self,
            maps=self.maps[index],
            class_ids=self.class_ids[index],
            scores=self.scores[index],
            probabilities=self.probabilities[index],
            logits=self.logits[index],
            extra=extra,
        )

    @cached_property
    def upsampled(self) -> torch.Tensor:
        """``(N, K, H, W)``: raw maps resampled to the model input (see :func:`to_image`)."""
        return self.on_image(self.input_size)

    def on_image(self, size: tuple[int, int] | None = None, index: int | None = None):
        """Raw maps put on an image of ``size`` ``(H, W)`` (default: the model input), through
        :func:`to_image`: ``(N, K, H, W)``, or ``(K, H, W)`` for one ``index``."""
        maps = self.maps if index is None else self.maps[index]
        size = tuple(size or self.input_size)
        return to_image(maps, size, self.input_size, self.geometry, self.align)

    @property
    def alignment(self) -> str:
        """The convention maps are actually drawn with: ``"grid"`` without a geometry."""
        return self.align if self.geometry is not None else "grid"

    def cpu(self) -> Heatmaps:
        """The same result with every tensor on the CPU (for numpy, files, plotting)."""
        return replace(
            self,
            maps=self.maps.cpu(),
            class_ids=self.class_ids.cpu(),
            scores=self.scores.cpu(),
            probabilities=self.probabilities.cpu(),
            logits=self.logits.cpu(),
        )

    def normalized(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Maps in [0, 1] per map (flat maps → zeros), resampled to ``size`` (default: input)."""
        return normalize(self.on_image(size))


def check_align(align: str) -> None:
    """Refuse an alignment other than ``"rf"`` or ``"grid"``."""
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; use 'rf' (receptive-field centres) or 'grid'")


def to_image(
    maps: torch.Tensor,
    size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    geometry: LayerGeometry | None = None,
    align: str = "rf",
) -> torch.Tensor:
    """Put raw maps ``(..., h, w)`` on an image of ``size`` ``(H, W)``: the one place camkit
    resamples a heatmap for drawing, metrics, records and export.

    ``align="rf"`` (with the layer's ``geometry`` and the model ``input_size`` the image was
    resized to): bilinear between cell centres, each cell drawn at its receptive-field centre
    ``offset + stride·i`` in the model input, taken through the preprocessing resize (pixel
    centres: ``u = (p + ½)·input/size − ½``) to the image; flat beyond the outermost centres.
    ``align="grid"``, or no ``geometry``: bilinear with ``align_corners=False``
    (pytorch-grad-cam's and torch-cam's convention: cell ``i`` at ``(i + ½)·H/h − ½``, which
    for a ResNet is ``stride/2 − ½`` px down and right of its evidence).
    """
    check_align(align)
    maps = torch.as_tensor(maps)  # numpy arrays too (an NPZ's raw maps)
    size = (int(size[0]), int(size[1]))
    if min(size) < 1 or (input_size is not None and min(input_size) < 1):
        raise ValueError(f"sizes must be positive (H, W), got size {size}, input {input_size}")
    if maps.ndim < 2 or 0 in maps.shape[-2:]:
        raise ValueError(f"maps must be (..., h, w) with cells, got shape {tuple(maps.shape)}")
    if align == "grid" or geometry is None:
        return upsample(maps, size)
    input_size = tuple(input_size or size)
    cells = maps.shape[-2:]
    rows, columns = (
        _axis_weights(out, model, count, stride, offset).to(maps.device)
        for out, model, count, stride, offset in zip(
            size, input_size, cells, geometry.stride, geometry.offset
        )
    )
    return rows @ maps.float() @ columns.T


def _axis_weights(
    pixels: int, model_pixels: int, cells: int, stride: float, offset: float
) -> torch.Tensor:
    """``(pixels, cells)`` bilinear weights: image pixel ``p`` → model-input coordinate
    ``u = (p + ½)·model_pixels/pixels − ½`` → cell coordinate ``(u − offset)/stride``, clamped
    to the outermost cells."""
    position = (torch.arange(pixels, dtype=torch.float64) + 0.5) * model_pixels / pixels - 0.5
    cell = ((position - offset) / stride).clamp(0, cells - 1)
    low = cell.floor().clamp(max=max(cells - 2, 0)).long()
    high = (low + 1).clamp(max=cells - 1)
    fraction = cell - low
    weights = torch.zeros(pixels, cells, dtype=torch.float64)
    rows = torch.arange(pixels)
    weights[rows, low] += 1 - fraction
    weights[rows, high] += fraction
    return weights.float()


def resolve_targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
    """Turn a target spec into class ids ``(N, K)``.

    ``None``: the top class; ``int``: that class for every image; a sequence of N ints: one
    class per image; N sequences of K ints: K classes per image; ``"top-k"`` (e.g. ``"top-3"``):
    the k best classes; ``"all"``: every class.
    """
    batch, classes = logits.shape
    device = logits.device
    if targets is None:
        return logits.argmax(dim=1, keepdim=True)
    if isinstance(targets, str):
        spec = targets.strip().lower()
        if spec == "all":
            return torch.arange(classes, device=device).expand(batch, classes)
        match = re.fullmatch(r"top-?(\d+)", spec)
        if not match:
            raise ValueError(
                f"targets {targets!r} not understood; use a class id, 'top-k' (e.g. 'top-3') "
                "or 'all'"
            )
        k = int(match.group(1))
        if not 1 <= k <= classes:
            raise ValueError(f"targets {targets!r}: k must be between 1 and {classes}")
        return logits.topk(k, dim=1).indices
    if isinstance(targets, (bool, float)):
        raise TypeError(f"targets must be class ids (int), got {targets!r}")
    if isinstance(targets, int) and not 0 <= targets < classes:  # before torch (2**70 overflows)
        raise out_of_range(targets, classes)
    if isinstance(targets, int):
        ids = torch.full((batch, 1), targets, dtype=torch.long)
    else:
        try:
            ids = torch.as_tensor(targets)
        except (TypeError, ValueError, OverflowError) as error:
            raise TypeError(f"targets {targets!r} are not class ids: {error}") from None
        if ids.numel() == 0:
            raise ValueError("targets are empty; pass a class id, one per image, 'top-k' or 'all'")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise TypeError(f"targets must be integer class ids, got dtype {ids.dtype}")
        ids = ids.long()
        if ids.ndim == 0:
            ids = ids.expand(batch).reshape(batch, 1)
        elif ids.ndim == 1:
            if ids.shape[0] != batch:
                raise ValueError(
                    f"got {ids.shape[0]} targets for a batch of {batch} images; pass one class "
                    f"per image, an int for all, 'top-k' or 'all'"
                )
            ids = ids.reshape(batch, 1)
        elif ids.ndim == 2:
            if ids.shape[0] != batch:
                raise ValueError(
                    f"got targets for {ids.shape[0]} images ({tuple(ids.shape)}) for a batch "
                    f"of {batch} images"
                )
        else:
            raise ValueError(f"targets must be (N,) or (N, K), got shape {tuple(ids.shape)}")
    ids = ids.cpu()
    bad = ids[(ids < 0) | (ids >= classes)]
    if bad.numel():
        raise out_of_range(int(bad[0]), classes)
    return ids.to(device)
