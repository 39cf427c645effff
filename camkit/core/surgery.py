"""Temporary, weight-preserving changes to a network: output stride 16 by dilating ``layer4``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["dilated_last_stage"]


@contextlib.contextmanager
def dilated_last_stage(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily turn a ResNet's ``layer4`` stride into dilation: output stride 16, same weights.

    This is torchvision's ``replace_stride_with_dilation=[False, False, True]`` applied to an
    existing model: the first block's stride-2 convs get stride 1, the 3×3 convs of later blocks
    get dilation 2 (padding 2). Restored on exit.
    """
    layer4 = getattr(model, "layer4", None)
    if not isinstance(layer4, nn.Sequential) or len(layer4) == 0:
        raise ValueError(
            f"output_stride=16 needs a ResNet-style model with a `layer4` stage; "
            f"{type(model).__name__} has none. Use output_stride=32."
        )
    saved: list[tuple[nn.Conv2d, tuple, tuple, tuple]] = []

    def change(conv: nn.Conv2d, stride: int, dilation: int | None = None) -> None:
        saved.append((conv, conv.stride, conv.dilation, conv.padding))
        conv.stride = (stride, stride)
        if dilation is not None:
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation * (conv.kernel_size[0] // 2),) * 2

    try:
        for index, block in enumerate(layer4):
            for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
                if index == 0 and conv.stride != (1, 1):
                    change(conv, 1)
                elif index > 0 and conv.kernel_size[0] > 1:
                    change(conv, 1, dilation=2 * conv.dilation[0])
        yield model
    finally:
        for conv, stride, dilation, padding in saved:
            conv.stride, conv.dilation, conv.padding = stride, dilation, padding
