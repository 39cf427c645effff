"""Explanations combined from several: maps of several layers fused (``MultiLayerExplainer``),
and maps over test-time augmentations averaged (``augmentation_smoothed``). Both resample to
the model input and normalise each map first, so the parts are on one scale."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from camkit.cam import normalize
from camkit.core.geometry import IDENTITY
from camkit.explainer import Explainer
from camkit.heatmaps import Heatmaps, Targets

__all__ = ["FUSIONS", "MultiLayerExplainer", "augmentation_smoothed"]

FUSIONS = ("mean", "max")


class MultiLayerExplainer:
    """Maps from several layers, each resampled to the input and normalised to [0, 1], then
    fused by ``"mean"`` or ``"max"`` (named in ``Heatmaps.fusion``).

    Every layer explains the same class ids (those of the first layer's targets), so the
    fusion is class-consistent. ``maps`` of the result are at input resolution;
    ``extra["per_layer"]`` keeps each layer's raw maps.

    Example:
        >>> fused = MultiLayerExplainer(model, ["layer4.2", "layer3.5"], fusion="mean")(images)
    """

    def __init__(
        self, model: nn.Module, layers, method: str = "gradcam", fusion: str = "mean", **kwargs
    ) -> None:
        if isinstance(layers, str):
            layers = [part.strip() for part in layers.split(",") if part.strip()]
        if len(layers) < 1:
            raise ValueError("give at least one layer")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        self.explainers = [Explainer(model, layer, method, **kwargs) for layer in layers]
        self.fusion = fusion

    @property
    def stride(self) -> int:
        return max(explainer.stride for explainer in self.explainers)

    def __call__(self, images: torch.Tensor, targets: Targets = None) -> Heatmaps:
        first = self.explainers[0](images, targets)
        results = [first] + [e(images, first.class_ids) for e in self.explainers[1:]]
        if len(results) == 1:
            return first
        normalised = torch.stack([normalize(r.upsampled) for r in results])  # (L, N, K, H, W)
        fused = normalised.mean(dim=0) if self.fusion == "mean" else normalised.amax(dim=0)
        return Heatmaps(
            maps=fused,
            class_ids=first.class_ids,
            scores=first.scores,
            probabilities=first.probabilities,
            logits=first.logits,
            layer=",".join(r.layer for r in results),
            method=first.method,
            path=",".join(r.path for r in results),
            input_size=first.input_size,
            extra={"per_layer": {r.layer: r.maps for r in results}},
            fusion=self.fusion,
            geometry=IDENTITY if first.geometry is not None else None,  # maps at the input
            align=first.align,
        )


def augmentation_smoothed(
    explainer: Explainer, images: torch.Tensor, targets: Targets = None, factors=(0.9, 1.0, 1.1)
) -> Heatmaps:
    """Test-time-augmentation smoothing: the mean of the normalised, input-size maps over
    horizontal flips × intensity factors (pytorch-grad-cam's default ``aug_smooth``), computed
    as one batch; flipped maps are flipped back first. Targets are resolved on the plain images
    so every augmentation explains the same classes.
    """
    plain = explainer(images, targets)
    count = len(images)
    augmented = [
        images.flip(-1) * f if flip else images * f for flip in (False, True) for f in factors
    ]
    result = explainer(torch.cat(augmented), plain.class_ids.repeat(len(augmented), 1))
    maps = normalize(result.upsampled).view(2, len(factors), count, *result.upsampled.shape[1:])
    maps = torch.cat([maps[0], maps[1].flip(-1)]).mean(dim=0)  # (N, K, H, W)
    smoothing = " + ".join(filter(None, [plain.extra.get("smoothing"), f"flip × {list(factors)}"]))
    geometry = IDENTITY if plain.geometry is not None else None  # maps now at the input
    return replace(
        plain, maps=maps, geometry=geometry, extra={**plain.extra, "smoothing": smoothing}
    )
