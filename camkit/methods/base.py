"""Method: what a CAM method needs, and how it weighs channels.

A method is data, not a branch: the :class:`~camkit.explainer.Explainer` picks its path by
asking the method what it declares (``needs``, a closed form) and calls the functions it
carries. Adding a method is one :func:`~camkit.methods.registry.register` call.

Example:
    >>> from camkit.methods import Method, register
    >>> register(Method(
    ...     "gradcam-abs",
    ...     weights=lambda activations, gradients: gradients.mean(dim=(-2, -1)).abs(),
    ...     closed_form=lambda activations, gradient, scores: gradient.abs(),
    ... ))
    >>> Explainer(model, "layer4.2", "gradcam-abs")(images)   # closed form at layer4.2
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from camkit.cam import weighted_map, weighted_terms

__all__ = ["NEEDS", "REGION_NEEDS", "Method", "Passes", "image_seed"]

Tensor = torch.Tensor

NEEDS = (
    "gradients",
    "forward",
    "masked-forward",
    "ablation",
    "noisy-gradients",
    "input-gradients",
    "linear",
)
"""What a method computes from, besides one forward pass:

- ``"gradients"``: ``dY_c/dA`` at the layer (autograd, or the closed form at a GAP + linear head);
- ``"forward"``: the activations alone (Eigen-CAM);
- ``"masked-forward"``: forward passes of masked inputs (Score-CAM);
- ``"ablation"``: forward passes with channels of the layer zeroed (Ablation-CAM);
- ``"noisy-gradients"``: ``dY_c/dA`` at copies of the input with noise added (Smooth
  Grad-CAM++), forward and backward passes of its own;
- ``"input-gradients"``: gradients down to the input pixels (FullGrad, Guided Grad-CAM): maps
  at the input's resolution;
- ``"linear"``: the linear head applied at every position (CAM, FCN), closed form only.
"""

REGION_NEEDS = ("gradients", "forward")
"""The needs of a method that explains any score of one forward pass (e.g. a segmenter's logits
summed over a region): it never reruns the model on altered copies of the input."""


@dataclass(frozen=True)
class Passes:
    """What a method that runs its own forward passes gets from the Explainer (one call).

    Attributes:
        model: the classifier, in eval mode (left as found by the Explainer).
        module: the target layer of ``model``.
        channel_dim: the dimension of ``module``'s output that holds channels (1 for maps
            ``(N, C, h, w)``, -1 for channels-last cells and transformer tokens).
        run: ``run(network, inputs) -> logits``, one forward pass with the call's memory format
            and autocast settings.
        images: ``(N, 3, H, W)`` the model inputs.
        activations: ``(N, C, h, w)`` float32, the layer's output for ``images``.
        logits: ``(N, classes)`` the model's logits for ``images``.
        class_ids: ``(N, K)`` target classes.
        batch_size: forward passes per chunk (memory is bounded by this).
        score_channels: Score-CAM: only the top-N channels by activation variance (``None``: all).
        align_corners: Score-CAM's mask upsampling (pytorch-grad-cam uses ``True``).
        seed: the noise of SS-CAM and Smooth Grad-CAM++: each image's draws come from a
            generator seeded with :func:`image_seed` of it and the image.
        to_map: the layer's output (or its gradient) in its own layout → ``(N, C, h, w)``.
    """

    model: nn.Module
    module: nn.Module
    channel_dim: int
    run: Callable[[nn.Module, Tensor], Tensor]
    images: Tensor
    activations: Tensor
    logits: Tensor
    class_ids: Tensor
    batch_size: int = 32
    score_channels: int | None = None
    align_corners: bool = False
    seed: int = 0
    to_map: Callable[[Tensor], Tensor] = lambda tensor: tensor


def image_seed(seed: int, image: Tensor) -> int:
    """The noise seed of one image: a hash of ``seed`` and the image's values. Its draws then
    depend neither on the images that share its batch (or shard) nor on its place there, and
    two images do not get the same noise."""
    values = image.detach().float().cpu().contiguous().numpy().tobytes()
    digest = hashlib.blake2b(int(seed).to_bytes(8, "little", signed=True) + values, digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1  # manual_seed takes 63 bits here


WeightsFn = Callable[[Tensor, Tensor], Tensor]
ClosedFormFn = Callable[[Tensor, Tensor, Tensor], Tensor]
ActivationMapFn = Callable[[Tensor], Tensor]
ObjectiveFn = Callable[[Tensor, Tensor], Tensor]
PassWeightsFn = Callable[[Passes], list[tuple[Tensor, Tensor]]]
InputMapsFn = Callable[[Passes, "Tensor | None"], Tensor]

_REQUIRED = {
    "gradients": "weights",
    "forward": "activation_map",
    "masked-forward": "pass_weights",
    "ablation": "pass_weights",
    "noisy-gradients": "pass_weights",
    "input-gradients": "input_maps",
}


@dataclass(frozen=True)
class Method:
    """One CAM method: what it needs and the functions that compute it.

    Attributes:
        name: the registered name (``Explainer(method=name)``, ``--method name``).
        needs: one of :data:`NEEDS`.
        weights: ``"gradients"``: ``weights(activations (N, C, h, w), gradients (N, [K,] C, h,
            w))`` → per channel ``(N, [K,] C)`` or per position ``(N, [K,] C, h, w)``; the map
            is ``relu(Σ_k w_k A_k)``.
        closed_form: channel weights at a layer that feeds only global average pooling and a
            linear head: ``closed_form(activations (N, C, h, w), gradient, scores)`` where
            ``gradient = W[c] / (h·w)`` is ``dY_c/dA``, the same at every position — ``(K, C)``
            shared by all images or ``(N, K, C)`` — and ``scores`` the target logits ``(N, K)``;
            returns ``(K, C)`` or ``(N, K, C)``. ``None``: no closed form.
        activation_map: ``"forward"``: ``activations (N, C, h, w) -> maps (N, h, w)``,
            class-agnostic.
        pass_weights: ``"masked-forward"`` / ``"ablation"`` / ``"noisy-gradients"``:
            ``pass_weights(passes)`` → for each
            image, channel weights ``(K, C')`` and the channels ``(C',)`` they weigh.
        bias: ``"linear"``: add the head's bias (FCN score maps); without it, CAM.
        terms: ``"gradients"``: applied to the terms ``w_k A_k`` (``(N, [K,] C, h, w)``)
            before they are summed or projected, e.g. ``relu`` per channel (element-wise
            Grad-CAM); ``None``: the terms as they are.
        eigen: the map is always the eigen projection of the terms (Eigen-Grad-CAM), not
            their sum.
        objective: ``"gradients"``: the score the gradients are taken of, ``objective(logits
            (N, classes), class_ids (N, K)) -> (N, K)``, differentiable in the logits (Finer-CAM
            contrasts a class with its nearest rivals); ``None``: the target logits. At a GAP +
            linear head the closed form's gradient is then ``(dobjective/dlogits) · W / (h·w)``.
        hessian: ``"gradients"``: the gradients are corrected by the Hessian-vector product
            along the activations, ``g − ½·H·A`` (Shapley-CAM); at a GAP + linear head ``H = 0``.
        input_maps: ``"input-gradients"``: ``input_maps(passes, base)`` → maps ``(N, K, H, W)``
            at the input's resolution; ``base`` is the ``base`` method's map at the layer put on
            the input and min-max normalised ``(N, K, H, W)``, or ``None``.
        base: ``"input-gradients"``: the registered method whose layer map ``input_maps``
            takes (Guided Grad-CAM: ``"gradcam"``); ``None``: none (FullGrad).
        description: one line for listings.
    """

    name: str
    needs: str = "gradients"
    weights: WeightsFn | None = None
    closed_form: ClosedFormFn | None = None
    activation_map: ActivationMapFn | None = None
    pass_weights: PassWeightsFn | None = None
    bias: bool = False
    terms: Callable[[Tensor], Tensor] | None = None
    eigen: bool = False
    objective: ObjectiveFn | None = None
    hessian: bool = False
    input_maps: InputMapsFn | None = None
    base: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a method needs a non-empty name, got {self.name!r}")
        if self.needs not in NEEDS:
            raise ValueError(
                f"method {self.name!r}: needs={self.needs!r} is not one of {', '.join(NEEDS)}"
            )
        required = _REQUIRED.get(self.needs)
        if required is not None and not callable(getattr(self, required)):
            raise TypeError(
                f"method {self.name!r} needs {self.needs!r}, so it must give {required}= (a "
                "function); see camkit.methods.Method"
            )

    @property
    def uses_gradients(self) -> bool:
        """Whether the method's own computation takes ``dY/dA`` from autograd."""
        return self.needs == "gradients"

    @property
    def linear(self) -> bool:
        """A linear class map (``W[c]·A``, + ``b[c]`` with ``bias``): only the closed form."""
        return self.needs == "linear"

    @property
    def has_closed_form(self) -> bool:
        """Whether the method has a forward-only form at a GAP + linear head."""
        return self.linear or self.closed_form is not None

    @property
    def chooses_path(self) -> bool:
        """Whether ``Explainer(path=...)`` can pick how it runs: gradients (activation-only or
        full autograd), or a closed form with another way to compute it (Ablation-CAM)."""
        return self.uses_gradients or (self.has_closed_form and not self.linear)

    @property
    def class_specific(self) -> bool:
        """Whether the maps depend on the target class (Eigen-CAM's do not)."""
        return self.needs != "forward"

    def contributions(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """The terms the map sums over channels, ``(N, [K,] C, h, w)``: what eigen smoothing
        projects instead. ``activations (N, C, h, w)``, ``gradients (N, [K,] C, h, w)``."""
        terms = weighted_terms(activations, self._weights(activations, gradients))
        return terms if self.terms is None else self.terms(terms)

    def maps(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """``relu(Σ_k w_k A_k)``, ``(N, [K,] h, w)``, from full gradients (with ``terms``:
        ``relu(Σ_k terms(w_k A_k))``)."""
        if self.terms is not None:
            return self.contributions(activations, gradients).sum(dim=-3).relu()
        return weighted_map(activations, self._weights(activations, gradients))

    def _weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        if self.weights is None:
            raise TypeError(f"method {self.name!r} has no gradient weights (needs {self.needs!r})")
        return self.weights(activations, gradients)
