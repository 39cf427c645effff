"""Gradient methods: Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, element-wise
Grad-CAM, Eigen-Grad-CAM.

Each is its weights formula from :mod:`camkit.cam`, once: called with the full gradients on the
autograd paths, and with the constant gradient ``W[c] / (h·w)`` of a GAP + linear head for the
closed form.
"""

from __future__ import annotations

import torch

from camkit.cam import (
    gradcam_weights,
    gradcampp_weights,
    hirescam_weights,
    layercam_weights,
    xgradcam_weights,
)
from camkit.methods.base import ClosedFormFn, Method, Tensor
from camkit.methods.registry import register

__all__ = [
    "EIGENGRADCAM",
    "GRADCAM",
    "GRADCAMPP",
    "GRADCAM_ELEMENTWISE",
    "HIRESCAM",
    "LAYERCAM",
    "XGRADCAM",
    "from_weights",
]


def _closed_form(weights) -> ClosedFormFn:
    def closed_form(activations: Tensor, gradient: Tensor, scores: Tensor) -> Tensor:
        return weights(activations, gradient, constant=True)

    return closed_form


def from_weights(name: str, weights, description: str = "") -> Method:
    """A gradient method from a weights formula ``weights(activations, gradients,
    constant=False)`` that also takes a gradient constant per channel (see :mod:`camkit.cam`)."""
    return Method(
        name,
        needs="gradients",
        weights=weights,
        closed_form=_closed_form(weights),
        description=description,
    )


GRADCAM = register(
    from_weights("gradcam", gradcam_weights, "Grad-CAM: channels weighed by mean gradient")
)
GRADCAMPP = register(
    from_weights("gradcampp", gradcampp_weights, "Grad-CAM++: positive gradients, weighted")
)
XGRADCAM = register(
    from_weights("xgradcam", xgradcam_weights, "XGrad-CAM: gradients × activations, normalised")
)
HIRESCAM = register(
    from_weights("hirescam", hirescam_weights, "HiResCAM: gradient ⊙ activation, element-wise")
)
LAYERCAM = register(
    from_weights("layercam", layercam_weights, "LayerCAM: relu(gradient) ⊙ activation")
)
GRADCAM_ELEMENTWISE = register(
    Method(
        "gradcam-elementwise",
        needs="gradients",
        weights=hirescam_weights,
        terms=torch.relu,  # relu(g ⊙ A) per channel, then summed: no closed form
        description="element-wise Grad-CAM: Σ_k relu(gradient ⊙ activation)",
    )
)
EIGENGRADCAM = register(
    Method(
        "eigengradcam",
        needs="gradients",
        weights=hirescam_weights,
        # at a GAP + linear head g = W[c]/(h·w): the terms are Grad-CAM's, w_k A_k
        closed_form=_closed_form(gradcam_weights),
        eigen=True,
        description="Eigen-Grad-CAM: first principal component of gradient ⊙ activation",
    )
)
