"""Guided backpropagation (Springenberg et al. 2015) and Guided Grad-CAM (Selvaraju et al. 2017).

Guided backpropagation is the gradient of a target score with respect to the input in which
every ReLU passes back only positive gradients at positive inputs::

    ∂/∂x_in = g · [x_in > 0] · [g > 0]      (g: the gradient arriving at the ReLU's output)

pytorch-grad-cam's ``GuidedBackpropReLUModel`` gets it by swapping the model's ``nn.ReLU``
modules in place (and puts back fresh non-in-place ones). camkit leaves the model alone: during
its one forward pass a torch function mode answers every ReLU call (``nn.ReLU`` modules, which
call ``F.relu``, and the functional ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` and their
in-place forms) with an autograd function that has the guided backward. Its forward is the ReLU's,
in place where the call was, so the logits are the model's own.

Equal to pytorch-grad-cam (to float rounding) wherever the model's ReLUs are ``nn.ReLU``
modules, as in torchvision's ResNets (one reused per Bottleneck). Intended differences: functional
ReLUs are guided too (pytorch-grad-cam leaves them plain, silently); a batch of images with their
own targets in one call (pytorch-grad-cam: image 0 only, one class); the model's modules,
``.grad`` and eval/train flags are not changed. ReLUs computed by other means (``clamp``,
``torch.ops.aten.relu`` called directly) keep their plain gradient in both.

Guided Grad-CAM is the element-wise product of the guided gradients with the Grad-CAM map
upsampled to the input.

Example:
    >>> guided = guided_gradients(model, images, [[3], [0]])  # (2, 1, 3, H, W)
    >>> heat = reduce_channels(guided_gradcam(gradcam_at_input, guided))  # (2, 1, H, W)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from camkit.methods.base import Method, Passes
from camkit.methods.pixel import Run, check_class_ids, input_graph, target_score
from camkit.methods.registry import register

__all__ = [
    "GUIDEDBACKPROP",
    "GUIDEDGRADCAM",
    "REDUCTIONS",
    "guided_gradcam",
    "guided_gradients",
    "reduce_channels",
]

Tensor = torch.Tensor

logger = logging.getLogger(__name__)


class _GuidedReLU(torch.autograd.Function):
    """``relu(x)`` forward; backward ``g · [x > 0] · [g > 0]``."""

    @staticmethod
    def forward(ctx, inputs: Tensor) -> Tensor:
        positive = inputs > 0
        ctx.save_for_backward(positive)  # a mask of our own: later in-place ops cannot touch it
        return inputs.clamp(min=0)

    @staticmethod
    def backward(ctx, gradient: Tensor) -> Tensor:
        (positive,) = ctx.saved_tensors
        return torch.where(positive & (gradient > 0), gradient, 0)


class _GuidedReLUInPlace(torch.autograd.Function):
    """``relu_(x)``: the same, changing ``x`` in place as the model asked."""

    @staticmethod
    def forward(ctx, inputs: Tensor) -> Tensor:
        positive = inputs > 0
        ctx.save_for_backward(positive)
        ctx.mark_dirty(inputs)
        return inputs.clamp_(min=0)

    @staticmethod
    def backward(ctx, gradient: Tensor) -> Tensor:
        (positive,) = ctx.saved_tensors
        return torch.where(positive & (gradient > 0), gradient, 0)


_OUT_OF_PLACE = {torch.relu, torch.Tensor.relu}
_IN_PLACE = {torch.relu_, torch.Tensor.relu_}  # F.relu_ is torch.relu_


class _GuidedReLUMode(TorchFunctionMode):
    """Answers every ReLU call made while it is active with the guided ReLU; counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.relu:
            inplace = kwargs.get("inplace", args[1] if len(args) > 1 else False)
            guided = _GuidedReLUInPlace if inplace else _GuidedReLU
        elif func in _OUT_OF_PLACE:
            guided = _GuidedReLU
        elif func in _IN_PLACE:
            guided = _GuidedReLUInPlace
        else:
            return func(*args, **kwargs)
        inputs = kwargs["input"] if "input" in kwargs else args[0]
        self.calls += 1
        return guided.apply(inputs)


def guided_gradients(
    model: nn.Module,
    images: Tensor,
    class_ids: Tensor | Sequence,
    run: Run | None = None,
) -> Tensor:
    """Guided-backpropagation gradients of each target score with respect to the input.

    Args:
        model: a classifier returning logits ``(N, classes)``; run in eval mode and left exactly
            as found (modules, training flags, ``requires_grad``, ``.grad``, hooks), also on error.
        images: ``(N, 3, H, W)`` model inputs (not modified).
        class_ids: ``(N, K)`` target classes per image (``(N,)``: one each).
        run: ``run(network, inputs) -> logits``, one forward pass; ``network(inputs)`` if None.

    Returns:
        ``(N, K, 3, H, W)`` float32 gradients (signed). ``guided[n, k]`` is pytorch-grad-cam's
        ``GuidedBackpropReLUModel(model)(images[n:n+1], class_ids[n, k])`` (there ``(H, W, 3)``).
        A warning is logged when the forward ran no ReLU (the result is then the plain gradient).
    """
    mode = _GuidedReLUMode()
    with input_graph(model, images, run, mode) as (inputs, logits):
        class_ids = check_class_ids(class_ids, logits)  # (N, K)
        if mode.calls == 0:
            logger.warning(
                "guided backpropagation: %s ran no ReLU, so its guided gradients are the plain "
                "input gradients",
                type(model).__name__,
            )
        targets = class_ids.shape[1]
        gradients = [
            torch.autograd.grad(
                target_score(logits, class_ids, k), inputs, retain_graph=k < targets - 1
            )[0].float()
            for k in range(targets)
        ]
    return torch.stack(gradients, dim=1)  # (N, K, 3, H, W)


def guided_gradcam(cam_maps: Tensor, guided: Tensor) -> Tensor:
    """Guided Grad-CAM: ``cam_maps[:, :, None] * guided``.

    Args:
        cam_maps: ``(N, K, H, W)`` Grad-CAM maps already at input resolution, normalised to
            [0, 1] as pytorch-grad-cam's ``cam.py`` does (its ``cam_mask * gb``).
        guided: ``(N, K, 3, H, W)`` from :func:`guided_gradients`.

    Returns:
        ``(N, K, 3, H, W)`` float32.
    """
    if (
        cam_maps.ndim != 4
        or guided.ndim != 5
        or guided.shape[:2] + guided.shape[3:] != cam_maps.shape
    ):
        raise ValueError(
            f"guided_gradcam needs cam_maps (N, K, H, W) and guided (N, K, 3, H, W) of the same "
            f"N, K, H, W; got {tuple(cam_maps.shape)} and {tuple(guided.shape)}: upsample the "
            "Grad-CAM maps to the input size first"
        )
    return cam_maps[:, :, None].float() * guided.float()


REDUCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "abs-max": lambda attributions: attributions.abs().amax(dim=-3),
    "abs-sum": lambda attributions: attributions.abs().sum(dim=-3),
    "l2": lambda attributions: torch.linalg.vector_norm(attributions, dim=-3),
}
"""Ways to turn per-colour attributions ``(..., 3, H, W)`` into one map ``(..., H, W)``:
``"abs-max"``, the largest absolute value over colour channels (the saliency map of Simonyan et
al. 2014, the default); ``"abs-sum"``; ``"l2"``, the norm over channels."""


def reduce_channels(attributions: Tensor, reduction: str = "abs-max") -> Tensor:
    """A 2-D heatmap per target from ``attributions (N, K, 3, H, W)`` (guided gradients or
    Guided Grad-CAM): ``(N, K, H, W)`` float32, non-negative; see :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if attributions.ndim < 3:
        raise ValueError(
            f"attributions must be (N, K, 3, H, W), got shape {tuple(attributions.shape)}"
        )
    return REDUCTIONS[reduction](attributions.float())


def _guided(passes: Passes) -> Tensor:
    return guided_gradients(passes.model, passes.images, passes.class_ids, passes.run)


GUIDEDBACKPROP = register(
    Method(
        "guidedbackprop",
        needs="input-gradients",
        input_maps=lambda passes, base: reduce_channels(_guided(passes)),
        description="guided backpropagation: max over colours of |guided input gradient|",
    )
)
GUIDEDGRADCAM = register(
    Method(
        "guidedgradcam",
        needs="input-gradients",
        base="gradcam",
        input_maps=lambda passes, base: reduce_channels(guided_gradcam(base, _guided(passes))),
        description="Guided Grad-CAM: Grad-CAM on the input × guided backpropagation",
    )
)
