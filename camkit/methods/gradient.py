"""Gradient methods: Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, element-wise
Grad-CAM, Eigen-Grad-CAM, Finer-CAM, Shapley-CAM.

Each is its weights formula from :mod:`camkit.cam`, once: called with the full gradients on the
autograd paths, and with the constant gradient ``W[c] / (h·w)`` of a GAP + linear head for the
closed form. Finer-CAM changes the score the gradients are taken of (an ``objective``),
Shapley-CAM the gradients themselves (a Hessian-vector correction).
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
from camkit.methods.base import ClosedFormFn, Method, ObjectiveFn, Tensor
from camkit.methods.registry import register

__all__ = [
    "EIGENGRADCAM",
    "FINERCAM",
    "GRADCAM",
    "GRADCAMPP",
    "GRADCAM_ELEMENTWISE",
    "HIRESCAM",
    "LAYERCAM",
    "SHAPLEYCAM",
    "XGRADCAM",
    "finer_objective",
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


def finer_objective(
    alpha: float = 1.0, references: int = 3, weighting: str = "probability"
) -> ObjectiveFn:
    """Finer-CAM's score (Zhang et al. 2025): class ``c`` against its ``references`` nearest
    rivals ``j`` (the classes whose logits are closest to ``y_c``, ``c`` excluded).

    ``weighting="probability"`` (the authors' code in pytorch-grad-cam):
    ``Σ_j p_j (y_c − α·y_j) / (Σ_j p_j + 1e-9)`` with ``p = softmax(y)`` (differentiated too);
    ``"mean"`` (torch-cam, which uses ``α = 0.6``): ``y_c − α·mean_j y_j``. With one class
    there is no rival: the score is ``y_c``.
    """
    if weighting not in ("probability", "mean"):
        raise ValueError(f"weighting must be 'probability' or 'mean', got {weighting!r}")
    if not alpha >= 0 or references < 1:
        raise ValueError(f"alpha must be ≥ 0 and references ≥ 1, got {alpha!r}, {references!r}")

    def objective(logits: Tensor, class_ids: Tensor) -> Tensor:
        count = min(references, logits.shape[1] - 1)
        main = logits.gather(1, class_ids)  # (N, K)
        if count == 0:
            return main
        rows = logits.unsqueeze(1).expand(-1, class_ids.shape[1], -1)  # (N, K, classes)
        distance = (rows.detach() - main.detach().unsqueeze(-1)).abs()
        distance = distance.scatter(-1, class_ids.unsqueeze(-1), float("inf"))
        rivals = distance.topk(count, dim=-1, largest=False).indices  # (N, K, R)
        scores = rows.gather(-1, rivals)
        if weighting == "mean":
            return main - alpha * scores.mean(dim=-1)
        weights = logits.softmax(dim=1).unsqueeze(1).expand_as(rows).gather(-1, rivals)
        numerator = (weights * (main.unsqueeze(-1) - alpha * scores)).sum(dim=-1)
        return numerator / (weights.sum(dim=-1) + 1e-9)

    return objective


FINERCAM = register(
    Method(
        "finercam",
        needs="gradients",
        weights=gradcam_weights,
        closed_form=_closed_form(gradcam_weights),
        objective=finer_objective(),
        description="Finer-CAM: Grad-CAM of a class against its 3 nearest rivals",
    )
)
SHAPLEYCAM = register(
    Method(
        "shapleycam",
        needs="gradients",
        weights=gradcam_weights,
        # the Hessian of a GAP + linear head is 0: Grad-CAM's closed form
        closed_form=_closed_form(gradcam_weights),
        hessian=True,
        description="Shapley-CAM: mean of gradient − ½ Hessian·activation per channel",
    )
)
