"""Explainer: model + layer + method -> Heatmaps, on the fastest exact path available.

Paths (reported in ``Heatmaps.path``):

- ``"closed-form"``: the layer feeds only global average pooling + a linear head, checked
  numerically on every batch (``head(mean_hw(A)) == logits``). Then every gradient is
  ``W[c] / (h·w)``: one forward under ``inference_mode`` and one ``einsum``, for any number of
  classes.
- ``"activation-grad"``: the graph starts at the layer (nothing before it is recorded, no
  parameter requires grad), and ``torch.autograd.grad`` runs backward through the tail only.
- ``"autograd"``: the plain reference: the whole forward is recorded from the input.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
from torch import nn

from camkit.cam import (
    GRADIENT_METHODS,
    closed_form_weights,
    contributions,
    eigen_smooth,
    eigencam,
    gradcam_closed_form,
    gradient_method,
    normalize,
)
from camkit.core.heads import class_maps, find_linear_head, head_matches
from camkit.core.introspect import layer_stride
from camkit.core.layers import resolve_layer
from camkit.core.probe import LayerProbe, preserved_model_state, set_eval
from camkit.core.surgery import dilated_last_stage
from camkit.heatmaps import Heatmaps, Targets, resolve_targets

__all__ = [
    "AUTOCAST",
    "FUSIONS",
    "HEAD_RTOL",
    "METHODS",
    "PATHS",
    "Explainer",
    "MultiLayerExplainer",
    "augmentation_smoothed",
    "autocast_dtype",
    "score_masks",
]

METHODS = (*GRADIENT_METHODS, "scorecam", "ablationcam", "eigencam", "cam", "fcn")


PATHS = ("auto", "closed-form", "activation-grad", "autograd")


FUSIONS = ("mean", "max")


AUTOCAST = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


# head check tolerance: float32 rounding, or the precision the forward ran in
HEAD_RTOL = {None: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def autocast_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """``None``/``"none"``/``"fp32"`` → ``None``; ``"bf16"``, ``"fp16"`` or a dtype → that dtype."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "fp32", "float32")):
        return None
    if isinstance(value, torch.dtype) and value in (torch.bfloat16, torch.float16):
        return value
    if isinstance(value, str) and value.lower() in AUTOCAST:
        return AUTOCAST[value.lower()]
    raise ValueError(f"unknown autocast {value!r}; use 'bf16' or 'fp16' (or None for float32)")


class Explainer:
    """Grad-CAM-family heatmaps and FCN class maps for one layer of a classifier.

    Args:
        model: a classifier (ResNet-50 or a channel variant, any model for gradient paths).
        layer: dotted name (``"layer4.2"``) or module.
        method: ``"gradcam"``; ``"cam"`` (class activation map ``W[c]·A``, no bias) or
            ``"fcn"`` (score map ``W[c]·A + b[c]``), which need a GAP + linear head after the
            layer.
        path: ``"auto"`` (closed form when the numeric check passes, else activation-only
            gradients), or force ``"closed-form"``, ``"activation-grad"``, ``"autograd"``.
        output_stride: 32 (the network as it is) or 16: ``layer4``'s stride becomes dilation
            for the call (same weights), so maps are twice as dense: 8×8 instead of 4×4 at
            128 px. The identities hold for the dilated network.
        batch_size: Score-CAM / Ablation-CAM: masked or ablated forward passes per chunk
            (memory is bounded by this, not by the channel count).
        score_channels: Score-CAM: use only the top-N channels by activation variance
            (Faster Score-CAM); ``None`` for all.
        eigen_smooth: replace ``relu(Σ_k w_k A_k)`` by the ``relu``-ed projection of the
            weighted activations on their first principal component (pytorch-grad-cam's
            ``eigen_smooth``); any method but ``cam``/``fcn``; Eigen-CAM already is one.
        channels_last: feed the model channels-last inputs (the same function to float
            rounding; often faster on CPUs and tensor-core GPUs). The model is not converted.
        autocast: ``"bf16"`` / ``"fp16"`` (or a torch dtype) runs the model's forward passes
            under ``torch.autocast``: faster where the hardware has it, but the maps are then
            only approximately those of float32 (recorded in ``Heatmaps.extra["autocast"]``).
            Maps, weights and metrics are still computed in float32.

    The model is run in eval mode and left exactly as found (training flags, ``requires_grad``,
    ``.grad``, hooks), also when an exception is raised.

    Example:
        >>> explainer = Explainer(resnet50(weights=None), layer="layer4.2")
        >>> heatmaps = explainer(images, targets="top-3")   # (N, 3, 7, 7) for 224 px
        >>> heatmaps.normalized().shape                     # (N, 3, 224, 224)
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module = "layer4.2",
        method: str = "gradcam",
        path: str = "auto",
        head: nn.Linear | None = None,
        output_stride: int = 32,
        batch_size: int = 32,
        score_channels: int | None = None,
        eigen_smooth: bool = False,
        channels_last: bool = False,
        autocast: str | torch.dtype | None = None,
    ) -> None:
        self.channels_last = bool(channels_last)
        self.autocast = autocast_dtype(autocast)
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride!r}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
        if method in ("cam", "fcn", "eigencam", "scorecam") and path in (
            "activation-grad",
            "autograd",
        ):
            raise ValueError(
                f"method {method!r} is not gradient-based; it only has the closed-form path"
            )
        if eigen_smooth and method in ("cam", "fcn"):
            raise ValueError(
                f"eigen_smooth does not apply to {method!r} (a linear class map); use a "
                "Grad-CAM-family method such as 'gradcam'"
            )
        self.eigen_smooth = eigen_smooth
        self._eigen_block = 64  # maps decomposed per eigen-smoothing block
        self.model = model
        self.layer, self.module = resolve_layer(model, layer)
        self.method = method
        self.path = path
        self.head = head if head is not None else find_linear_head(model)[1]
        self.output_stride = output_stride
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size  # masked / ablated forward passes per chunk
        self.score_channels = score_channels  # Score-CAM: only the top-N channels by variance
        # camkit resamples with align_corners=False everywhere; pytorch-grad-cam's Score-CAM uses
        # UpsamplingBilinear2d (align_corners=True). The parity test flips this private switch.
        self._score_align_corners = False
        self._closed_form_failed = False
        self._stride: int | None = None

    def _run(self, network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """One forward pass with the call's memory format and autocast settings."""
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if self.autocast is None:
            return network(inputs)
        with torch.autocast(inputs.device.type, dtype=self.autocast):
            return network(inputs)

    def _network(self) -> contextlib.AbstractContextManager:
        """The network the call runs: as it is, or with ``layer4`` dilated (restored after)."""
        if self.output_stride == 16:
            return dilated_last_stage(self.model)
        return contextlib.nullcontext()

    @property
    def stride(self) -> int:
        """The layer's output stride (input side / map side)."""
        if self._stride is None:
            with self._network():
                self._stride = layer_stride(self.model, self.layer)
        return self._stride

    def _device(self) -> torch.device:
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"images must be a float tensor (N, 3, H, W), got {type(images).__name__}; "
                "use camkit.data.images.preprocess"
            )
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images must be (N, 3, H, W) with N ≥ 1, got {tuple(images.shape)}")
        if not images.dtype.is_floating_point:
            raise TypeError(
                f"images must be normalised float tensors, got dtype {images.dtype}; "
                "use camkit.data.images.preprocess"
            )
        height, width = images.shape[-2:]
        if height < self.stride or width < self.stride:
            raise ValueError(
                f"input is {width}×{height} px; {self.layer} has output stride {self.stride}, so "
                f"it needs at least {self.stride}×{self.stride} — resize to 224 (--size 224)"
            )
        parameter = next(iter(self.model.parameters()), None)
        dtype = parameter.dtype if parameter is not None else images.dtype
        return images.detach().to(self._device(), dtype)

    def __call__(self, images: torch.Tensor, targets: Targets = None) -> Heatmaps:
        """Explain a batch of preprocessed images ``(N, 3, H, W)`` for the given targets."""
        images = self._check_images(images)
        with self._network():
            return self._explain(images, targets)

    def _explain(self, images: torch.Tensor, targets: Targets) -> Heatmaps:
        if self.method in ("eigencam", "scorecam"):
            return self._forward_methods(images, targets)
        path = self.path
        if path == "auto":
            closed_ok = self.method in ("cam", "fcn") or not self._closed_form_failed
            path = "closed-form" if closed_ok else "activation-grad"
        if path == "closed-form":
            result = self._closed_form(images, targets, strict=self.path == "closed-form")
            if result is not None:
                return result
            self._closed_form_failed = True
            path = "activation-grad"
        if self.method == "ablationcam":
            return self._ablation(images, targets)
        return self._gradient_path(images, targets, leaf=path == "activation-grad")

    def _package(self, maps, class_ids, logits, path, images) -> Heatmaps:
        logits = logits.detach().float().clone()
        class_ids = class_ids.clone()
        scores = logits.gather(1, class_ids)
        probabilities = logits.softmax(dim=1).gather(1, class_ids)
        extra = {"smoothing": "eigen"} if self.eigen_smooth else {}
        if self.autocast is not None:
            extra["autocast"] = str(self.autocast).removeprefix("torch.")
        return Heatmaps(
            extra=extra,
            maps=maps.detach().float().clone(),
            class_ids=class_ids,
            scores=scores,
            probabilities=probabilities,
            logits=logits,
            layer=self.layer,
            method=self.method,
            path=path,
            input_size=(int(images.shape[-2]), int(images.shape[-1])),
        )

    def _closed_form(self, images, targets, strict: bool) -> Heatmaps | None:
        with (
            preserved_model_state(self.model),
            LayerProbe(self.model, [self.layer]) as probe,
        ):
            set_eval(self.model)
            with torch.inference_mode():
                logits = self._run(self.model, images)
                activations = probe.activations[self.layer]  # (N, C, h, w)
                rtol = HEAD_RTOL[self.autocast]
                if not head_matches(activations, self.head, logits, rtol=rtol):
                    if self.method in ("cam", "fcn") or strict:
                        raise ValueError(
                            f"layer {self.layer!r} (output {tuple(activations.shape)}) does not "
                            f"feed global average pooling + the linear head "
                            f"({self.head.in_features}→{self.head.out_features}): "
                            f"head(mean_hw(A)) != logits. Method {self.method!r} with the "
                            "closed form needs the last stage, e.g. 'layer4.2'"
                        )
                    return None
                all_classes = isinstance(targets, str) and targets.strip().lower() == "all"
                class_ids = resolve_targets(targets, logits)
                weight = self.head.weight.float()
                activations = activations.float()
                height, width = activations.shape[-2:]
                if self.method == "gradcam" and not self.eigen_smooth:
                    maps = gradcam_closed_form(
                        activations, weight, None if all_classes else class_ids
                    )
                elif self.method in GRADIENT_METHODS:
                    gradient = weight / (height * width)  # dY_c/dA_k, the same at every position
                    gradient = gradient if all_classes else gradient[class_ids]
                    channel_weights = closed_form_weights(self.method, activations, gradient)
                    maps = self._weighted_maps(channel_weights, activations)
                elif self.method == "ablationcam":
                    # zeroing channel k lowers logit c by W[c, k]·mean(A_k); weight = that drop / y_c
                    chosen = (
                        weight if all_classes else weight[class_ids]
                    )  # (classes, C) | (N, K, C)
                    means = activations.mean(dim=(2, 3))  # (N, C)
                    scores = logits.float() if all_classes else logits.float().gather(1, class_ids)
                    drops = chosen * (means.unsqueeze(1) if chosen.ndim == 3 else means[:, None, :])
                    channel_weights = drops / scores.unsqueeze(-1)
                    maps = self._weighted_maps(channel_weights, activations)
                else:
                    bias = self.head.bias if self.method == "fcn" else None
                    bias = bias.float() if bias is not None else None
                    maps = class_maps(activations, weight, bias, None if all_classes else class_ids)
        return self._package(maps, class_ids, logits, "closed-form", images)

    def _weighted_maps(self, weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        """``relu(Σ_k w_k A_k)``, or its eigen-smoothed form. weights ``(N, K, C)``."""
        if not self.eigen_smooth:
            return torch.einsum("nkc,nchw->nkhw", weights, activations).relu()
        step = max(1, self._eigen_block // len(activations))  # bound the (N, K', C, h, w) block
        return torch.cat(
            [
                eigen_smooth(weights[:, k : k + step, :, None, None] * activations.unsqueeze(1))
                for k in range(0, weights.shape[1], step)
            ],
            dim=1,
        )

    def _gradient_path(self, images, targets, leaf: bool) -> Heatmaps:
        mode = "leaf" if leaf else "capture"
        with (
            preserved_model_state(self.model),
            LayerProbe(self.model, [self.layer], mode=mode) as probe,
        ):
            set_eval(self.model)
            if leaf:
                for parameter in self.model.parameters():
                    parameter.requires_grad_(False)
                inputs = images
            else:
                inputs = images.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = self._run(self.model, inputs)
            activations = probe.activations[self.layer]  # (N, C, h, w): layer_stride checked
            class_ids = resolve_targets(targets, logits.detach())
            count = class_ids.shape[1]
            method_fn = gradient_method(self.method)
            maps = []
            for k in range(count):
                score = logits.gather(1, class_ids[:, k : k + 1]).sum()
                (gradients,) = torch.autograd.grad(score, activations, retain_graph=k < count - 1)
                if self.eigen_smooth:
                    terms = contributions(self.method, activations.detach().float(), gradients)
                    maps.append(eigen_smooth(terms.float()))
                else:
                    maps.append(method_fn(activations.detach().float(), gradients.float()))
            probe.clear()
        path = "activation-grad" if leaf else "autograd"
        return self._package(torch.stack(maps, dim=1), class_ids, logits, path, images)

    def _forward_methods(self, images: torch.Tensor, targets: Targets) -> Heatmaps:
        """Eigen-CAM (one forward) and Score-CAM (masked forward passes in chunks)."""
        from tqdm import tqdm

        with preserved_model_state(self.model):
            set_eval(self.model)
            with LayerProbe(self.model, [self.layer]) as probe, torch.inference_mode():
                logits = self._run(self.model, images)
                activations = probe.activations[self.layer].float()  # (N, C, h, w)
            class_ids = resolve_targets(targets, logits)
            if self.method == "eigencam":
                maps = eigencam(activations).unsqueeze(1).expand(-1, class_ids.shape[1], -1, -1)
                return self._package(maps, class_ids, logits, "forward", images)
            maps = []
            channels = activations.shape[1]
            total = len(images) * min(channels, self.score_channels or channels)
            bar = tqdm(
                total=total,
                desc="Score-CAM",
                unit="pass",
                leave=False,
                disable=True if total <= 4 * self.batch_size else None,  # None: terminal only
            )
            network = _inference_copy(self.model)
            with torch.inference_mode():
                for index, image in enumerate(images):
                    selected = torch.arange(channels, device=activations.device)
                    if self.score_channels is not None and self.score_channels < channels:
                        variance = activations[index].flatten(1).var(dim=1)
                        selected = variance.topk(self.score_channels).indices
                    # channels whose maps are equal up to a positive affine map (dead channels,
                    # one-hot maps at the same cell) make the same mask: one pass for each
                    distinct, inverse = _distinct_masks(activations[index, selected])
                    counts = torch.bincount(inverse)  # channels per distinct mask
                    masks = score_masks(
                        activations[index, selected[distinct]],
                        tuple(images.shape[-2:]),
                        self._score_align_corners,
                    )  # (C'', H, W)
                    scores = []
                    for start in range(0, len(masks), self.batch_size):
                        chunk = masks[start : start + self.batch_size]
                        masked = image.unsqueeze(0) * chunk.unsqueeze(1)
                        masked = masked.contiguous(memory_format=torch.channels_last)
                        scores.append(self._run(network, masked).float())
                        bar.update(int(counts[start : start + len(chunk)].sum()))
                    picked = class_ids[index].unsqueeze(0).expand(len(selected), -1)
                    scores = torch.cat(scores)[inverse].gather(1, picked)  # (C', K)
                    weights = scores.softmax(dim=0).T  # (K, C'): softmax over channels
                    maps.append(
                        self._weighted_maps(weights[None], activations[index, selected][None])[0]
                    )
            bar.close()
        return self._package(torch.stack(maps), class_ids, logits, "masked-forward", images)

    def _ablation(self, images: torch.Tensor, targets: Targets) -> Heatmaps:
        """Ablation-CAM by forward passes: zero one channel of the layer at a time, in chunks.

        ``w_k = (y_c − y_c with A_k = 0) / y_c``, ``map = relu(Σ_k w_k A_k)``.
        """
        with preserved_model_state(self.model):
            set_eval(self.model)
            with LayerProbe(self.model, [self.layer]) as probe, torch.inference_mode():
                logits = self._run(self.model, images)
                activations = probe.activations[self.layer].float()
            class_ids = resolve_targets(targets, logits)
            channels = activations.shape[1]
            state: dict = {}

            def ablate(_module, _inputs, output):
                output = output.clone()
                output[torch.arange(len(state["channels"])), state["channels"]] = 0
                return output

            maps = []
            handle = self.module.register_forward_hook(ablate)
            try:
                with torch.inference_mode():
                    for index, image in enumerate(images):
                        original = logits[index, class_ids[index]].float()  # (K,)
                        ablated = []
                        for start in range(0, channels, self.batch_size):
                            state["channels"] = torch.arange(
                                start, min(start + self.batch_size, channels)
                            )
                            batch = image.unsqueeze(0).expand(len(state["channels"]), -1, -1, -1)
                            ablated.append(
                                self._run(self.model, batch).float()[:, class_ids[index]]
                            )
                        drops = (original - torch.cat(ablated)) / original  # (C, K)
                        maps.append(self._weighted_maps(drops.T[None], activations[index][None])[0])
            finally:
                handle.remove()
        return self._package(torch.stack(maps), class_ids, logits, "ablation-forward", images)


def score_masks(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False):
    """Score-CAM's masks: each map of ``maps (..., C, h, w)`` upsampled to ``size`` (bilinear)
    and min-max normalised to [0, 1] (a flat map gives zeros)."""
    upsampled = torch.nn.functional.interpolate(
        maps.reshape(-1, *maps.shape[-3:]), size=size, mode="bilinear", align_corners=align_corners
    ).reshape(*maps.shape[:-2], *size)
    low = upsampled.flatten(-2).amin(-1)[..., None, None]
    high = upsampled.flatten(-2).amax(-1)[..., None, None]
    return (upsampled - low) / (high - low + 1e-8)


def _distinct_masks(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM masks are min-max normalised, so maps equal up to ``a·x + b`` (``a > 0``) give
    the same mask. ``maps (C, h, w)`` → indices of one channel per distinct mask, and for each
    channel the position of its mask among those (normalised maps equal to 1e-6)."""
    flat = maps.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    normalised = torch.where(high > low, (flat - low) / (high - low).clamp_min(1e-30), 0)
    keys = torch.round(normalised * 1e6)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(maps), device=maps.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(maps), device=maps.device), "amin")
    return first, inverse


def _inference_copy(model: nn.Module) -> nn.Module:
    """For forward passes that only need logits (Score-CAM's masked inputs): a copy with batch
    norm folded into the convolutions (``torch.fx``), run on channels-last inputs — the same
    function to float rounding, ~1.35× faster on a CPU. The model itself where it cannot be
    traced; the user's model is never changed."""
    import copy
    import warnings

    try:
        from torch.fx.experimental.optimization import fuse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fuse(copy.deepcopy(model)).eval()
    except Exception:  # any model fx cannot trace runs as it is
        return model


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
    return replace(plain, maps=maps, extra={**plain.extra, "smoothing": smoothing})
