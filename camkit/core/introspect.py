"""Layer introspection: every layer with its output shape, and a layer's output stride."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camkit.core.layers import resolve_layer

__all__ = ["LayerInfo", "layer_stride", "list_layers"]


@dataclass(frozen=True)
class LayerInfo:
    """One named submodule and what it produced for a given input size."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None  # None: not called, or not a tensor
    parameters: int


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def list_layers(model: nn.Module, size: int | tuple[int, int] = 224) -> list[LayerInfo]:
    """Every named submodule with its output shape for a 1×3×H×W input (model left as found)."""
    from camkit.core.probe import preserved_model_state

    height, width = _as_size(size)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def record(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(name, tuple(output.shape))

        return hook

    named = [(name, module) for name, module in model.named_modules() if name]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with preserved_model_state(model):
        model.eval()
        try:
            for name, module in named:
                handles.append(module.register_forward_hook(record(name)))
            with torch.inference_mode():
                model(torch.zeros(1, 3, height, width, device=device))
        finally:
            for handle in handles:
                handle.remove()
    return [
        LayerInfo(
            name=name,
            type=type(module).__name__,
            output_shape=shapes.get(name),
            parameters=sum(p.numel() for p in module.parameters()),
        )
        for name, module in named
    ]


def layer_stride(model: nn.Module, layer: str | nn.Module, probe_size: int = 256) -> int:
    """Output stride of ``layer`` (input side / output side), measured with one small forward."""
    from camkit.core.probe import LayerProbe, preserved_model_state

    name, _ = resolve_layer(model, layer)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def output_shape(size: int) -> tuple[int, ...]:
        with preserved_model_state(model), LayerProbe(model, [name]) as probe:
            model.eval()
            with torch.inference_mode():
                model(torch.zeros(1, 3, size, size, device=device))
            return tuple(probe.activations[name].shape)

    shape = output_shape(probe_size)
    fix = "pick a convolutional layer, e.g. the default that `camkit layers` marks"
    if len(shape) != 4:
        raise ValueError(
            f"layer {name!r} outputs shape {shape}, not a spatial map (N, C, h, w); {fix}"
        )
    if shape[-2:] == (1, 1) and output_shape(2 * probe_size)[-2:] == (1, 1):
        raise ValueError(
            f"layer {name!r} outputs a 1×1 map at every input size (it pools away space), so its "
            f"heatmap would be one value; {fix}"
        )
    return max(1, round(probe_size / shape[-1]))
