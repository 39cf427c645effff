"""Explaining a segmenter: the Grad-CAM family for the summed logit of a class over a region.

A segmenter outputs logits ``(N, K, H, W)``, not one score per class. Its explanation target is
a region score: ``y_c = Σ_{(i, j) ∈ R} logits[c, i, j]`` over a region ``R`` — by default the
segmenter's own predicted mask of class ``c`` (pytorch-grad-cam's ``SemanticSegmentationTarget``
with that mask). :class:`RegionScores` turns the segmenter into a model with one score per
class, so the :class:`~camkit.explainer.Explainer` explains it unchanged: any encoder or
decoder layer, the methods that take gradients or the activations alone, and the aligned
drawing (the layer's geometry, derived or measured through the decoder's upsampling).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from camkit.core.layers import resolve_layer
from camkit.explainer import Explainer
from camkit.heatmaps import Heatmaps
from camkit.methods import REGION_NEEDS
from camkit.methods import get as get_method

__all__ = ["DEFAULT_LAYER", "RegionScores", "SegmenterExplainer", "own_regions"]

DEFAULT_LAYER = "layer4"  # the encoder's last stage: the deepest map, as for a classifier


class RegionScores(nn.Module):
    """``segmenter`` with one score per class: the class's logits summed over its region.

    ``regions`` ``(N, K, H, W)`` (0/1 or weights), set for a batch by the caller; ``None``: the
    whole image (the shape probes of the Explainer run so).
    """

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.net = segmenter
        self.regions: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images)  # (N, K, H, W)
        if self.regions is None:
            return logits.flatten(2).sum(-1)
        if self.regions.shape != logits.shape:
            raise ValueError(
                f"regions {tuple(self.regions.shape)} do not match the segmenter's logits "
                f"{tuple(logits.shape)}; give one (K, H, W) region per image at the input size"
            )
        return (logits * self.regions.to(logits.dtype)).flatten(2).sum(-1)


def own_regions(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The segmenter's own predicted masks as regions ``(N, K, H, W)``: ``sigmoid > threshold``
    for one (binary) output, else the argmax's one-hot."""
    if logits.shape[1] == 1:
        return (logits.sigmoid() > threshold).to(logits.dtype)
    classes = logits.argmax(dim=1)
    return nn.functional.one_hot(classes, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)


def _default_classes(regions: torch.Tensor) -> torch.Tensor:
    """Binary: class 0 (the foreground). Else: the non-background class (``k ≥ 1``) with the
    largest region in each image."""
    if regions.shape[1] == 1:
        return torch.zeros(len(regions), 1, dtype=torch.long)
    area = regions[:, 1:].flatten(2).sum(-1)  # (N, K-1)
    return (area.argmax(dim=1, keepdim=True) + 1).long()


class SegmenterExplainer:
    """Grad-CAM-family maps of a segmenter's region scores at one of its layers.

    Args:
        segmenter: e.g. a :class:`~camkit.models.resunet.ResUNet` (logits ``(N, K, H, W)``).
        layer: a dotted name in the segmenter (``"layer4"``, ``"layer3"``, ``"dec2"`` …).
        method: a method that takes gradients (``gradcam``, ``gradcampp``, ``layercam`` …) or
            only the activations (``eigencam``); Score-CAM and Ablation-CAM, which rerun the
            model on altered copies of one image, are refused.
        threshold: where a binary segmenter's own mask starts (sigmoid probability).
        **options: the :class:`~camkit.explainer.Explainer`'s (``align``, ``eigen_smooth`` …).

    Example:
        >>> explainer = SegmenterExplainer(load_segmenter("seg.ckpt")[0], "layer4")
        >>> heatmaps = explainer(images)           # the foreground's own mask as the region
        >>> heatmaps.extra["regions"].shape        # (N, K, H, W)
    """

    def __init__(
        self,
        segmenter: nn.Module,
        layer: str = DEFAULT_LAYER,
        method: str = "gradcam",
        threshold: float = 0.5,
        **options,
    ) -> None:
        spec = get_method(method)
        if spec.needs not in REGION_NEEDS:
            raise ValueError(
                f"method {spec.name!r} reruns the model on altered copies of an image, which a "
                "region score does not follow; use a gradient method (gradcam, gradcampp, "
                "layercam …) or eigencam"
            )
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a dotted name in the segmenter, got {type(layer)}")
        layer, _ = resolve_layer(segmenter, layer)  # errors name the segmenter's own layers
        self.segmenter = segmenter
        self.threshold = threshold
        self.scores = RegionScores(segmenter)
        options.setdefault("path", "activation-grad" if spec.uses_gradients else "auto")
        self.explainer = Explainer(self.scores, f"net.{layer}", spec.name, **options)
        self.layer = layer

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The segmenter's float32 logits for ``images`` ``(N, K, H, W)``, in eval mode and
        without gradients (model left as found)."""
        from camkit.core.probe import preserved_model_state, set_eval

        with preserved_model_state(self.segmenter), torch.inference_mode():
            set_eval(self.segmenter)
            logits = self.segmenter(images.to(next(self.segmenter.parameters()).device))
        return logits.float()

    def regions(self, images: torch.Tensor) -> torch.Tensor:
        """The segmenter's own masks for ``images`` ``(N, K, H, W)`` (model left as found)."""
        return own_regions(self.logits(images), self.threshold)

    def __call__(
        self,
        images: torch.Tensor,
        classes=None,
        regions: torch.Tensor | None = None,
    ) -> Heatmaps:
        """Explain ``images`` ``(N, 3, H, W)``: for ``classes`` (ids, or ``None``: the
        foreground / each image's largest predicted class), over ``regions`` ``(N, K, H, W)``
        or ``(N, H, W)`` (one region for every class; ``None``: the segmenter's own masks)."""
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if regions is None:
            regions = self.regions(images)
        else:
            regions = torch.as_tensor(regions, dtype=torch.float32)
            if regions.ndim == 3:  # one region, the same for every class
                classes_count = getattr(self.segmenter, "classes", None)  # ResUNet has it
                classes_count = classes_count or self.regions(images[:1]).shape[1]
                regions = regions.unsqueeze(1).expand(-1, classes_count, -1, -1)
            if regions.shape[0] != len(images) or regions.shape[-2:] != images.shape[-2:]:
                raise ValueError(
                    f"regions {tuple(regions.shape)} do not fit images {tuple(images.shape)}: "
                    "give one (H, W) or (K, H, W) region per image at the model input size"
                )
        if classes is None:
            classes = _default_classes(regions).to(regions.device)
        # the layer's stride and geometry come from probes of other sizes: before the regions
        _ = self.explainer.stride, self.explainer.geometry
        self.scores.regions = regions.to(images.device)
        try:
            heatmaps = self.explainer(images, classes)
        finally:
            self.scores.regions = None
        return replace(heatmaps, layer=self.layer, extra={**heatmaps.extra, "regions": regions})
