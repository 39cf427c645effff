"""Explainer: model + layer + method -> Heatmaps, on the fastest exact path available.

The method (a registered :class:`~camkit.methods.Method`) declares what it needs; the
Explainer runs one forward pass with the layer probed and takes the path that declaration and
``path`` allow (reported in ``Heatmaps.path``):

- ``"closed-form"``: the layer feeds only global average pooling + a linear head, checked
  numerically on every batch (``head(mean_hw(A)) == logits``). Then every gradient is
  ``W[c] / (h·w)``: one forward and one ``einsum``, for any number of classes.
- ``"activation-grad"``: the graph starts at the layer (nothing before it is recorded, no
  parameter requires grad), and ``torch.autograd.grad`` runs backward through the tail only.
- ``"autograd"``: the plain reference: the whole forward is recorded from the input.
- ``"forward"`` (Eigen-CAM), ``"masked-forward"`` (Score-CAM), ``"ablation-forward"``
  (Ablation-CAM away from a GAP + linear head), ``"noisy-gradients"`` (Smooth Grad-CAM++):
  the method's own passes.

With ``path="auto"`` the forward records the graph from the layer on (it costs nothing before
it), so a failed head check falls back to gradients without a second forward; nothing is
remembered between calls.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Literal

import torch
from torch import nn

from camkit import methods
from camkit.cam import eigen_smooth, weighted_map
from camkit.core.checks import check_images, check_logits
from camkit.core.derivatives import hessian_corrected, objective_slopes, twice_differentiable
from camkit.core.geometry import IDENTITY, LayerGeometry, layer_geometry
from camkit.core.heads import class_maps, find_linear_head, head_matches, probability_maps
from camkit.core.introspect import default_layer, layer_stride, native_size
from camkit.core.layers import resolve_layer
from camkit.core.paths import (
    AUTOCAST,
    HEAD_RTOL,
    OWN_PATHS,
    PATHS,
    autocast_dtype,
    check_method_options,
)
from camkit.core.probe import LayerProbe, preserved_model_state, set_eval
from camkit.core.surgery import dilated_last_stage
from camkit.core.tokens import TokenLayout, token_layout
from camkit.heatmaps import Heatmaps, Targets, check_align, resolve_targets
from camkit.methods import Method, Passes

__all__ = [
    "AUTOCAST",
    "HEAD_RTOL",
    "METHODS",
    "PATHS",
    "Explainer",
    "autocast_dtype",
    "score_maps",
]

log = logging.getLogger(__name__)

METHODS = methods.names()  # registered at import; camkit.methods.names() sees later ones too


Forward = Literal["inference", "leaf", "capture"]


def _linear_head(model: nn.Module) -> nn.Linear | None:
    try:
        return find_linear_head(model)[1]
    except ValueError:  # e.g. SqueezeNet's 1×1-convolution classifier
        return None


def _all_classes(targets: Targets) -> bool:
    return isinstance(targets, str) and targets.strip().lower() == "all"


class Explainer:
    """Grad-CAM-family heatmaps and FCN class maps for one layer of a classifier.

    Args:
        model: a classifier (ResNet-50 or a channel variant, any model for gradient paths).
        layer: dotted name (``"layer4.2"``) or module; ``None``: the model's default layer
            (:func:`~camkit.core.introspect.default_layer`: ``layer4.2`` for a ResNet-50, the
            last block's normalised tokens for a vision transformer). Its output may be a map
            ``(N, C, h, w)``, channels-last cells ``(N, h, w, C)`` or patch tokens
            ``(N, P + h·w, C)`` (:mod:`camkit.core.tokens`): maps are ``(N, K, h, w)`` alike.
        method: a registered method name (``camkit.methods.names()``) or a
            :class:`~camkit.methods.Method`: ``"gradcam"``; ``"cam"`` (class activation map
            ``W[c]·A``, no bias) or ``"fcn"`` (score map ``W[c]·A + b[c]``), which need a GAP +
            linear head after the layer.
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
        align: how the maps are put on images (``Heatmaps.on_image``, overlays, metrics):
            ``"rf"`` puts each cell at its receptive-field centre (``Explainer.geometry``,
            derived from the layer's path); ``"grid"`` is pytorch-grad-cam's and torch-cam's
            ``align_corners=False`` convention, which draws a ResNet map ``stride/2 − ½`` px
            down and right of its evidence.
        seed: the noise of the methods that add it (SS-CAM, Smooth Grad-CAM++): a generator
            seeded with it on every call, so a call's result depends only on its arguments.

    The model is run in eval mode and left exactly as found (training flags, ``requires_grad``,
    ``.grad``, hooks), also when an exception is raised. A call's result depends only on its
    arguments: the head check runs on every batch.

    Example:
        >>> explainer = Explainer(resnet50(weights=None), layer="layer4.2")
        >>> heatmaps = explainer(images, targets="top-3")   # (N, 3, 7, 7) for 224 px
        >>> heatmaps.normalized().shape                     # (N, 3, 224, 224)
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        method: str | Method = "gradcam",
        path: str = "auto",
        head: nn.Linear | None = None,
        output_stride: int = 32,
        batch_size: int = 32,
        score_channels: int | None = None,
        eigen_smooth: bool = False,
        channels_last: bool = False,
        autocast: str | torch.dtype | None = None,
        align: str = "rf",
        seed: int = 0,
    ) -> None:
        check_align(align)
        self.seed = int(seed)  # the noise of SS-CAM and Smooth Grad-CAM++
        self.align = align
        self.channels_last = bool(channels_last)
        self.autocast = autocast_dtype(autocast)
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride!r}")
        self.spec = methods.get(method)
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; choose one of {', '.join(PATHS)}")
        check_method_options(self.spec, path, eigen_smooth)
        self.eigen_smooth = eigen_smooth
        self._smooth = eigen_smooth or self.spec.eigen  # the maps are eigen projections
        self._eigen_block = 64  # maps decomposed per eigen-smoothing block
        self.model = model
        self.layer, self.module = resolve_layer(
            model, default_layer(model) if layer is None else layer
        )
        self.method = self.spec.name
        self.path = path
        self.head = head if head is not None else _linear_head(model)  # None: no closed form
        self.output_stride = output_stride
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size  # masked / ablated forward passes per chunk
        self.score_channels = score_channels  # Score-CAM: only the top-N channels by variance
        # camkit resamples with align_corners=False everywhere; pytorch-grad-cam's Score-CAM uses
        # UpsamplingBilinear2d (align_corners=True). The parity test flips this private switch.
        self._score_align_corners = False
        self._stride: int | None = None
        self._geometry: LayerGeometry | bool | None = None  # False: none to be had

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

    @property
    def geometry(self) -> LayerGeometry | None:
        """Where the layer's cells are centred in the model input (derived once, in the network
        the call runs: dilated for output stride 16); ``None`` where they can be neither
        derived nor measured (the maps are then put on images with the grid convention, and
        say so)."""
        if self._geometry is None:
            with self._network():
                try:
                    self._geometry = layer_geometry(self.model, self.layer)
                except ValueError as error:
                    log.warning("%s; its maps are drawn with align='grid'", error)
                    self._geometry = False
        return self._geometry or None

    def _map_geometry(self, path: str) -> LayerGeometry | None:
        """Where a result's cells sit in the input: the layer's, or each input pixel's own."""
        if self.align != "rf":
            return None
        return IDENTITY if path == "input-gradients" else self.geometry

    def __call__(self, images: torch.Tensor, targets: Targets = None) -> Heatmaps:
        """Explain a batch of preprocessed images ``(N, 3, H, W)`` for the given targets."""
        images = check_images(images, self.model, self.layer, self.stride)
        with self._network():
            return self._explain(images, targets)

    def _explain(self, images: torch.Tensor, targets: Targets) -> Heatmaps:
        """One forward, then the closed form if the method has one and the head allows it,
        else the method's own computation (gradients, or its forward passes)."""
        spec = self.spec
        closed = spec.has_closed_form and self.path in ("auto", "closed-form")
        strict = closed and (spec.linear or self.path == "closed-form")  # no fallback
        if spec.uses_gradients and not strict:
            mode: Forward = "capture" if self.path == "autograd" else "leaf"
        else:
            mode = "inference"
        with preserved_model_state(self.model):
            set_eval(self.model)
            try:
                output, logits = self._forward(images, mode)  # the layer's output, (N, classes)
            except AssertionError as error:  # torchvision's ViT asserts its one input size
                height, width = images.shape[-2:]
                side = native_size(self.model)
                raise ValueError(
                    f"{type(self.model).__name__} refused a {width}×{height} px input ({error}); "
                    f"it takes {side}×{side}: resize to it (--size {side})"
                ) from None
            check_logits(logits, self.model)
            layout = self.layout(output.shape, images.shape[-2:])
            activations = layout.to_map(output)  # (N, C, h, w)
            if closed and self._head_matches(activations, logits, strict):
                path = "closed-form"
                maps, class_ids = self._closed_form(activations, logits, targets)
            elif spec.uses_gradients:
                path = "autograd" if mode == "capture" else "activation-grad"
                maps, class_ids = self._gradient_maps(output, layout, logits, targets)
            elif spec.needs == "input-gradients":
                path = "input-gradients"
                maps, class_ids = self._input_maps(images, activations, layout, logits, targets)
            else:
                path = OWN_PATHS[spec.needs]
                maps, class_ids = self._own_maps(images, activations, layout, logits, targets)
        return self._package(maps, class_ids, logits, path, images)

    def layout(self, shape: tuple[int, ...], input_size: tuple[int, int]) -> TokenLayout:
        """How the layer's output of ``shape`` for an ``(H, W)`` input holds its cells: a map,
        channels-last cells or patch tokens (:func:`~camkit.core.tokens.token_layout`)."""
        return token_layout(shape, tuple(input_size), self.model, self.module, self.layer)

    def _forward(self, images: torch.Tensor, mode: Forward) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass with the layer probed: its output (in its own layout) and logits.

        ``"inference"``: no graph; ``"leaf"``: the graph starts at the layer (no parameter
        requires grad, so nothing before it is recorded); ``"capture"``: the whole forward is
        recorded from the input.
        """
        inputs = images
        if mode == "leaf":
            for parameter in self.model.parameters():
                parameter.requires_grad_(False)
        elif mode == "capture":
            inputs = images.clone().requires_grad_(True)
        probe_mode = "capture" if mode == "inference" else mode
        grad_mode = torch.inference_mode() if mode == "inference" else torch.enable_grad()
        twice = twice_differentiable(self.spec.hessian and mode != "inference")
        with LayerProbe(self.model, [self.layer], mode=probe_mode) as probe, grad_mode, twice:
            logits = self._run(self.model, inputs)
        return probe.activations[self.layer], logits

    def _head_matches(self, activations: torch.Tensor, logits: torch.Tensor, strict: bool) -> bool:
        """The closed-form check ``head(mean_hw(A)) == logits``, at the forward's precision;
        a mismatch is an error when there is no other path."""
        if self.head is None:
            if strict:
                raise ValueError(
                    f"{type(self.model).__name__} has no nn.Linear head, so method "
                    f"{self.method!r} has no closed form here; use a gradient method such as "
                    "'gradcam'"
                )
            return False
        with torch.no_grad():
            rtol = HEAD_RTOL[self.autocast]
            if head_matches(activations.detach(), self.head, logits.detach(), rtol=rtol):
                return True
        if strict:
            raise ValueError(
                f"layer {self.layer!r} (output {tuple(activations.shape)}) does not "
                f"feed global average pooling + the linear head "
                f"({self.head.in_features}→{self.head.out_features}): "
                f"head(mean_hw(A)) != logits. Method {self.method!r} with the "
                "closed form needs the layer that feeds them directly (a ResNet's last stage, "
                "e.g. 'layer4.2'; a model whose head is an MLP, such as VGG, has none: use a "
                "gradient method such as 'gradcam')"
            )
        return False

    def _closed_form(
        self, activations: torch.Tensor, logits: torch.Tensor, targets: Targets
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps ``(N, K, h, w)`` where ``dY_c/dA_k = W[c, k] / (h·w)`` at every position."""
        class_ids = resolve_targets(targets, logits)
        objective = self.spec.objective
        # every class, scored by its logit: the head's rows, shared by all images
        every = _all_classes(targets) and objective is None
        activations = activations.detach().float()  # (N, C, h, w)
        weight = self.head.weight.detach().float()  # (classes, C)
        with torch.no_grad():
            if self.spec.linear:
                bias = self.head.bias if self.spec.bias else None
                bias = bias.detach().float() if bias is not None else None
                maps = class_maps(activations, weight, bias, None if every else class_ids)
                return maps, class_ids
            height, width = activations.shape[-2:]
            gradient = weight / (height * width)  # dY_c/dA_k, the same at every position
            if objective is not None:  # dobjective/dA = Σ_c dobjective/dY_c · W[c] / (h·w)
                scores, slopes = objective_slopes(objective, logits, class_ids)
                gradient = slopes @ gradient  # (N, K, C)
            else:
                gradient = gradient if every else gradient[class_ids]  # (classes, C) | (N, K, C)
                scores = logits.detach().float()
                scores = scores if every else scores.gather(1, class_ids)  # (N, K)
            weights = self.spec.closed_form(activations, gradient, scores)
            return self._weighted_maps(weights, activations), class_ids

    def _gradient_maps(
        self, output: torch.Tensor, layout: TokenLayout, logits: torch.Tensor, targets: Targets
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps ``(N, K, h, w)`` from ``torch.autograd.grad`` of each target's score with
        respect to the layer's ``output``, both put in map layout by ``layout``."""
        class_ids = resolve_targets(targets, logits.detach())
        values = layout.to_map(output.detach()).float()  # (N, C, h, w)
        count = class_ids.shape[1]
        if self.spec.objective is not None:
            scores = self.spec.objective(logits.float(), class_ids)  # (N, K)
        else:
            scores = logits.gather(1, class_ids)
        maps = []
        for k in range(count):
            retain = k < count - 1 or self.spec.hessian
            (gradients,) = torch.autograd.grad(
                scores[:, k].sum(), output, retain_graph=retain, create_graph=self.spec.hessian
            )
            if self.spec.hessian:
                gradients = hessian_corrected(gradients, output, retain=k < count - 1)
            gradients = layout.to_map(gradients)
            if self._smooth:
                maps.append(eigen_smooth(self.spec.contributions(values, gradients).float()))
            else:
                maps.append(self.spec.maps(values, gradients.float()))  # (N, h, w)
        return torch.stack(maps, dim=1), class_ids

    def _own_maps(
        self,
        images: torch.Tensor,
        activations: torch.Tensor,
        layout: TokenLayout,
        logits: torch.Tensor,
        targets: Targets,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps from the activations alone (Eigen-CAM) or from the method's forward passes."""
        class_ids = resolve_targets(targets, logits)
        activations = activations.float()  # (N, C, h, w)
        if self.spec.activation_map is not None:
            maps = self.spec.activation_map(activations)  # (N, h, w): class-agnostic
            return maps.unsqueeze(1).expand(-1, class_ids.shape[1], -1, -1), class_ids
        passes = self._passes(images, activations, layout, logits, class_ids)
        maps = [
            self._weighted_maps(weights[None], activations[index, channels][None])[0]
            for index, (weights, channels) in enumerate(self.spec.pass_weights(passes))
        ]  # (K, h, w) per image: weights (K, C') over its channels (C',)
        return torch.stack(maps), class_ids

    def _input_maps(
        self,
        images: torch.Tensor,
        activations: torch.Tensor,
        layout: TokenLayout,
        logits: torch.Tensor,
        targets: Targets,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps ``(N, K, H, W)`` of input pixels (FullGrad, Guided Grad-CAM): the method's own
        gradients, with its ``base`` method's layer map put on the input (this call's
        alignment) and normalised."""
        class_ids = resolve_targets(targets, logits)
        base = None
        if self.spec.base is not None:
            explainer = Explainer(self.model, self.module, self.spec.base, align=self.align)
            explainer.layer = self.layer  # inside this call's network (dilated for stride 16)
            base = explainer._explain(images, class_ids).normalized()
        passes = self._passes(images, activations.float(), layout, logits, class_ids)
        return self.spec.input_maps(passes, base).float(), class_ids

    def _passes(
        self,
        images: torch.Tensor,
        activations: torch.Tensor,
        layout: TokenLayout,
        logits: torch.Tensor,
        class_ids: torch.Tensor,
    ) -> Passes:
        """What a method that runs its own passes gets (:class:`~camkit.methods.Passes`)."""
        return Passes(
            model=self.model,
            module=self.module,
            channel_dim=layout.channel_dim,
            run=self._run,
            images=images,
            activations=activations,
            logits=logits,
            class_ids=class_ids,
            batch_size=self.batch_size,
            score_channels=self.score_channels,
            align_corners=self._score_align_corners,
            seed=self.seed,
            to_map=layout.to_map,
        )

    def _weighted_maps(self, weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
        """``relu(Σ_k w_k A_k)``, or its eigen-smoothed form; weights ``(K, C)`` shared by all
        images or ``(N, K, C)``. Returns ``(N, K, h, w)``."""
        if weights.ndim == 2:  # a stride-0 view, not a copy: "all" and a subset of classes
            weights = weights.expand(len(activations), -1, -1)  # share one kernel, same numbers
        if not self._smooth:
            return weighted_map(activations, weights)
        step = max(1, self._eigen_block // len(activations))  # bound the (N, K', C, h, w) block
        return torch.cat(
            [
                eigen_smooth(weights[:, k : k + step, :, None, None] * activations.unsqueeze(1))
                for k in range(0, weights.shape[1], step)
            ],
            dim=1,
        )

    def _package(
        self,
        maps: torch.Tensor,
        class_ids: torch.Tensor,
        logits: torch.Tensor,
        path: str,
        images: torch.Tensor,
    ) -> Heatmaps:
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
            geometry=self._map_geometry(path),
            align=self.align,
        )


def score_maps(
    model: nn.Module,
    images: torch.Tensor,
    layer: str = "layer4",
    output_stride: int = 32,
    probabilities: bool = False,
    include_bias: bool = True,
) -> torch.Tensor:
    """Per-class FCN score maps ``(N, classes, h, w)`` for a batch of preprocessed images:
    ``Explainer(model, layer, "fcn")(images, "all").maps`` (``"cam"`` without the bias).

    Works for any input size (224, 448, 300×500 …). ``output_stride=16`` dilates ``layer4``
    for maps twice as dense. ``probabilities=True`` returns the softmax over classes at each
    position (bias included). The model is left as found.
    """
    method = "fcn" if include_bias or probabilities else "cam"
    maps = Explainer(model, layer, method, output_stride=output_stride)(images, "all").maps
    return probability_maps(maps) if probabilities else maps
