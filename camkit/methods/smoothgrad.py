"""Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with the gradients' powers averaged over
copies of the input with Gaussian noise added.

``D_p = mean_s (dY_c/dA at x + ε_s)^p``, ``α = D_2 / (2·D_2 + Σ_ij D_3·A + 1e-8)``,
``w_k = Σ_ij α · relu(D_1)``, ``map = relu(Σ_k w_k A_k)`` with ``A`` the clean input's
activations. At a GAP + linear head the gradient is ``W[c] / (h·w)`` whatever the noise, so the
map is Grad-CAM++'s: the closed form.
"""

from __future__ import annotations

import torch

from camkit.core.probe import LayerProbe
from camkit.methods.base import Method, Passes, Tensor, image_seed
from camkit.methods.registry import register

__all__ = ["SMOOTHGRADCAMPP", "smooth_gradcampp_weights", "smoothgrad_weights"]


def smooth_gradcampp_weights(activations: Tensor, moments: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Channel weights ``(K, C)`` of one image from its activations ``(C, h, w)`` and the
    averaged gradient powers ``D_1, D_2, D_3`` ``(K, C, h, w)``."""
    first, second, third = moments
    spread = (third * activations).flatten(-2).sum(-1)[..., None, None]  # Σ_ij D_3·A
    alpha = second / (2 * second + spread + 1e-8)
    return (alpha * first.relu()).flatten(-2).sum(-1)


def smoothgrad_weights(samples: int = 4, std: float = 0.3):
    """Smooth Grad-CAM++'s ``pass_weights`` with ``samples`` noisy copies of each image, noise
    ``N(0, std²)`` on the normalised input (torch-cam's defaults): each image's noise comes
    from a generator of its own (:func:`~camkit.methods.base.image_seed` of ``Passes.seed`` and
    the image), so its map does not depend on which images share its batch (or shard)."""
    if samples < 1 or not std >= 0:
        raise ValueError(f"samples must be ≥ 1 and std ≥ 0, got {samples!r}, {std!r}")

    def pass_weights(passes: Passes) -> list[tuple[Tensor, Tensor]]:
        images, class_ids = passes.images, passes.class_ids
        generators = [
            torch.Generator(images.device).manual_seed(image_seed(passes.seed, image))
            for image in images
        ]
        moments = [0.0, 0.0, 0.0]  # Σ_s g, g², g³, each (N, K, C, h, w)
        for parameter in passes.model.parameters():
            parameter.requires_grad_(False)  # the Explainer restores the flags
        for _ in range(samples):
            noise = torch.stack(
                [
                    torch.randn(images.shape[1:], generator=g, device=images.device)
                    for g in generators
                ]
            )
            probe = LayerProbe(passes.model, [passes.module], mode="leaf")
            with probe, torch.enable_grad():
                logits = passes.run(passes.model, (images + std * noise).to(images.dtype))
            output = next(iter(probe.activations.values()))
            scores = logits.gather(1, class_ids)
            gradients = torch.stack(
                [
                    passes.to_map(
                        torch.autograd.grad(
                            scores[:, k].sum(), output, retain_graph=k < scores.shape[1] - 1
                        )[0]
                    ).float()
                    for k in range(scores.shape[1])
                ],
                dim=1,
            )  # (N, K, C, h, w)
            moments = [total + gradients**power for power, total in enumerate(moments, 1)]
        channels = torch.arange(passes.activations.shape[1], device=images.device)
        return [
            (
                smooth_gradcampp_weights(
                    passes.activations[index], tuple(m[index] / samples for m in moments)
                ),
                channels,
            )
            for index in range(len(images))
        ]

    return pass_weights


def _closed_form(activations: Tensor, gradient: Tensor, scores: Tensor) -> Tensor:
    """The weights at a constant gradient ``(K, C)`` or ``(N, K, C)``: every noisy copy has it."""
    if gradient.ndim == 2:
        gradient = gradient.expand(len(activations), -1, -1)
    full = gradient[..., None, None].expand(-1, -1, -1, *activations.shape[-2:])
    return smooth_gradcampp_weights(activations.unsqueeze(1), (full, full**2, full**3))


SMOOTHGRADCAMPP = register(
    Method(
        "smoothgradcampp",
        needs="noisy-gradients",
        pass_weights=smoothgrad_weights(),
        closed_form=_closed_form,
        description="Smooth Grad-CAM++: Grad-CAM++ of gradients averaged over 4 noisy inputs",
    )
)
