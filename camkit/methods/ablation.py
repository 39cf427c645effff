"""Ablation-CAM (Desai & Ramaswamy 2020): channels weighed by the score drop when zeroed.

``w_k = (y_c − y_c with A_k = 0) / y_c``, ``map = relu(Σ_k w_k A_k)``. By forward passes with one
channel of the layer zeroed at a time (in chunks), or in closed form at a layer that feeds only
global average pooling and a linear head, where zeroing ``A_k`` lowers ``y_c`` by exactly
``W[c, k] · mean_ij A_k``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from camkit.methods.base import Method, Passes, Tensor
from camkit.methods.registry import register

__all__ = ["ABLATIONCAM", "ablation_closed_form", "ablation_weights"]


def _relative(drops: Tensor, scores: Tensor) -> Tensor:
    """``drops / scores``; a class score of exactly 0 leaves the weights undefined (0/0, NaN
    maps), which is one clear error instead."""
    if (scores == 0).any():
        raise ValueError(
            "Ablation-CAM divides each channel's score drop by the class score, which is exactly "
            "0 here (a zero-initialised head, e.g. an untrained ViT), so its map is undefined; "
            "use a trained model or a gradient method such as gradcam"
        )
    return drops / scores


def ablation_closed_form(activations: Tensor, gradient: Tensor, scores: Tensor) -> Tensor:
    """``w_k = W[c, k] · mean_ij A_k / y_c = g_k · Σ_ij A_k / y_c``, with the gradient
    ``g = W[c] / (h·w)`` ``(K, C)`` or ``(N, K, C)`` and ``scores = y_c`` ``(N, K)``.
    Returns ``(N, K, C)``."""
    sums = activations.sum(dim=(2, 3)).unsqueeze(1)  # (N, 1, C)
    drops = gradient * sums  # (N, K, C): what zeroing A_k takes off y_c
    return _relative(drops, scores.unsqueeze(-1))


@contextlib.contextmanager
def _ablated(module: nn.Module, channel_dim: int = 1) -> Iterator[dict]:
    """While open, ``module``'s output in row ``i`` of a batch has channel ``state["channels"][i]``
    (of dimension ``channel_dim``: every position, every token) zeroed."""
    state: dict = {}

    def ablate(_module, _inputs, output):
        output = output.movedim(channel_dim, 1).clone()
        output[torch.arange(len(state["channels"])), state["channels"]] = 0
        return output.movedim(1, channel_dim)

    handle = module.register_forward_hook(ablate)
    try:
        yield state
    finally:
        handle.remove()


def ablation_weights(passes: Passes) -> list[tuple[Tensor, Tensor]]:
    """For each image: the relative score drops ``(K, C)`` of its ablated forward passes, over
    every channel."""
    images, logits, class_ids = passes.images, passes.logits, passes.class_ids
    channels = passes.activations.shape[1]
    every = torch.arange(channels, device=passes.activations.device)
    out = []
    with _ablated(passes.module, passes.channel_dim) as state, torch.inference_mode():
        for index, image in enumerate(images):
            original = logits[index, class_ids[index]].float()  # (K,)
            ablated = []
            for start in range(0, channels, passes.batch_size):
                state["channels"] = torch.arange(start, min(start + passes.batch_size, channels))
                batch = image.unsqueeze(0).expand(len(state["channels"]), -1, -1, -1)
                ablated.append(passes.run(passes.model, batch).float()[:, class_ids[index]])
            drops = _relative(original - torch.cat(ablated), original)  # (C, K)
            out.append((drops.T, every))
    return out


ABLATIONCAM = register(
    Method(
        "ablationcam",
        needs="ablation",
        closed_form=ablation_closed_form,
        pass_weights=ablation_weights,
        description="Ablation-CAM: channels weighed by the score drop when zeroed",
    )
)
