"""Derivatives a method takes beyond the layer's gradient: the slopes of a method's objective
in the logits (Finer-CAM's contrast, any objective over the scores), Shapley-CAM's
Hessian-vector product, and the attention kernel whose backward can be differentiated again.

The :class:`~camkit.explainer.Explainer` chains them with the layer's gradients; each is a
function of tensors, with no model or probe of its own.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from camkit.methods.base import ObjectiveFn

__all__ = ["hessian_corrected", "objective_slopes", "twice_differentiable"]


def objective_slopes(
    objective: ObjectiveFn, logits: torch.Tensor, class_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A method's objective at ``logits (N, classes)`` for ``class_ids (N, K)``: its values
    ``(N, K)`` and their gradients in the logits ``(N, K, classes)``, each image on its own."""
    count = class_ids.shape[1]
    with torch.enable_grad():
        leaf = logits.detach().float().requires_grad_(True)
        values = objective(leaf, class_ids)
        slopes = [
            torch.autograd.grad(values[:, k].sum(), leaf, retain_graph=k < count - 1)[0]
            for k in range(count)
        ]
    return values.detach(), torch.stack(slopes, dim=1)


def hessian_corrected(gradients: torch.Tensor, output: torch.Tensor, retain: bool) -> torch.Tensor:
    """Shapley-CAM's ``g − ½·H·A``: the Hessian of the score at the layer's ``output`` times
    the output itself, by a second backward through ``gradients`` (made with a graph). A tail
    that is linear in the output (ReLU, GAP + linear) has ``H = 0``."""
    if not gradients.requires_grad:
        return gradients
    (hvp,) = torch.autograd.grad(
        gradients, output, grad_outputs=output.detach(), retain_graph=retain, allow_unused=True
    )
    return gradients.detach() if hvp is None else gradients.detach() - 0.5 * hvp


def twice_differentiable(enabled: bool) -> contextlib.AbstractContextManager:
    """Attention computed by the math kernel, the one whose backward can be differentiated
    again (a Hessian-vector product through a transformer); as it is when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)
