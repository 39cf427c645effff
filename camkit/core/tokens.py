"""Token layouts: a layer's output as the ``(N, C, h, w)`` map every method works on.

CNNs output maps ``(N, C, h, w)``. Vision transformers output tokens: ViT-style
``(N, P + h·w, C)`` with ``P`` prefix tokens (a class token, distillation or register tokens)
before the patches in row-major order, and Swin-style ``(N, h, w, C)``, channels last. The
layout is recognised from the output's shape, the input's size and, where the model has one,
its patch size — at any input size the model accepts; no ``reshape_transform`` to write.

:meth:`TokenLayout.to_map` is a permutation and a slice, so it applies to activations and to
gradients alike (the gradient of the map is the map of the gradient); prefix tokens carry no
position and are dropped, as pytorch-grad-cam's ``vit_reshape_transform`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TokenLayout", "patch_size", "token_layout"]

_KINDS = ("map", "channels-last", "tokens")
_MAX_PREFIX = 8  # class, distillation and register tokens


@dataclass(frozen=True)
class TokenLayout:
    """How a layer's output holds an ``(h, w)`` grid of ``C``-channel cells.

    ``kind``: ``"map"`` ``(N, C, h, w)``, ``"channels-last"`` ``(N, h, w, C)`` or ``"tokens"``
    ``(N, prefix + h·w, C)``.
    """

    kind: str
    grid: tuple[int, int]
    prefix: int = 0

    @property
    def channel_dim(self) -> int:
        """The output's channel dimension (1 for maps, the last otherwise)."""
        return 1 if self.kind == "map" else -1

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """``output`` in this layout → ``(N, C, h, w)`` (a view where possible)."""
        if self.kind == "map":
            return output
        if self.kind == "channels-last":
            return output.permute(0, 3, 1, 2)
        patches = output[:, self.prefix :]  # (N, h·w, C)
        return patches.transpose(1, 2).unflatten(2, self.grid)

    def describe(self) -> dict:
        return {"kind": self.kind, "grid": list(self.grid), "prefix": self.prefix}


def patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The model's patch size where it declares one (torchvision ViT ``patch_size``, timm
    ``patch_embed.patch_size``), else ``None``."""
    for owner in (model, getattr(model, "patch_embed", None)):
        size = getattr(owner, "patch_size", None)
        if isinstance(size, int):
            return size, size
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return int(size[0]), int(size[1])
    return None


def _on_grid(cells: tuple[int, int], input_size: tuple[int, int], exact: bool = False) -> bool:
    """Could an ``(h, w)`` grid tile an ``(H, W)`` input with one integer stride for both axes
    (each side the input side over the stride, rounded either way; ``exact``: rounded down, as
    a patch embedding does)?"""
    (h, w), (height, width) = cells, input_size
    if h < 1 or w < 1 or h > height or w > width:
        return False
    for stride in range(1, max(height, width) + 1):
        if all(
            side // stride == n if exact else -(-side // stride) >= n >= side // stride
            for n, side in ((h, height), (w, width))
        ):
            return True
    return False


def _token_grid(
    tokens: int, input_size: tuple[int, int], patch: tuple[int, int] | None
) -> tuple[tuple[int, int], int] | None:
    """``((h, w), prefix)`` for ``tokens`` tokens on an ``(H, W)`` input, or ``None``."""
    height, width = input_size
    if patch is not None:
        grid = (height // patch[0], width // patch[1])
        prefix = tokens - grid[0] * grid[1]
        if 0 <= prefix <= _MAX_PREFIX:
            return grid, prefix
    for prefix in range(min(_MAX_PREFIX, tokens - 1) + 1):  # fewest prefix tokens first
        count = tokens - prefix
        for h in range(1, count + 1):
            if count % h == 0 and _on_grid((h, count // h), input_size, exact=True):
                return (h, count // h), prefix
    return None


def token_layout(
    shape: tuple[int, ...],
    input_size: tuple[int, int],
    model: nn.Module | None = None,
    module: nn.Module | None = None,
    name: str = "layer",
) -> TokenLayout:
    """The layout of a layer output of ``shape`` for an ``(H, W)`` input.

    4-D: ``(N, C, h, w)`` when ``h, w`` tile the input, else ``(N, h, w, C)`` when those do
    (both: a map, unless ``module`` is a ``LayerNorm`` over the last dimension). 3-D: tokens,
    the grid from the model's patch size or, without one, the fewest prefix tokens whose
    remaining count factors into a grid of the input's aspect.

    Raises:
        ValueError: no grid of the input fits the shape, naming the layer and what to pick.
    """
    fix = (
        "pick a convolutional layer or a transformer block's tokens (a map (N, C, h, w), "
        "cells (N, h, w, C) or patch tokens (N, [cls +] h·w, C)), e.g. the default that "
        "`camkit layers` marks"
    )
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        as_map = _on_grid(shape[2:], input_size)
        as_last = _on_grid(shape[1:3], input_size)
        last_norm = type(module) is nn.LayerNorm and tuple(module.normalized_shape) == shape[3:]
        if as_map and not (as_last and last_norm):
            return TokenLayout("map", shape[2:])
        if as_last:
            return TokenLayout("channels-last", shape[1:3])
    elif len(shape) == 3:
        found = _token_grid(shape[1], input_size, patch_size(model) if model else None)
        if found is not None:
            return TokenLayout("tokens", *found)
    raise ValueError(
        f"layer {name!r} outputs shape {shape}, not a spatial map: no grid of cells fits it "
        f"(probed with a {input_size[1]}×{input_size[0]} px input); {fix}"
    )
