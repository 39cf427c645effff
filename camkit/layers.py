"""Layers by dotted name: resolve them, and list every layer with its output shape."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerInfo", "default_layer", "layer_stride", "list_layers", "resolve_layer"]


@dataclass(frozen=True)
class LayerInfo:
    """One named submodule and what it produced for a given input size."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None  # None: not called, or not a tensor
    parameters: int


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for a dotted name such as ``"layer4.2"`` or a module.

    Raises:
        ValueError: the name is not a submodule of ``model`` (with close matches and a hint),
            or the module object is not part of ``model``.
        TypeError: ``layer`` is neither a string nor a module.
    """
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(
            f"layer {type(layer).__name__} is not a submodule of this model; "
            "pass a module taken from the model itself or its dotted name (see `camkit layers`)"
        )
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted name or an nn.Module, got {type(layer).__name__}")
    name = layer.strip()
    try:
        module = model.get_submodule(name) if name else None
    except AttributeError:
        module = None
    if module is None or module is model:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown layer {layer!r}{hint} Run `camkit layers` to list every layer name."
        )
    return name, module


def default_layer(model: nn.Module) -> str:
    """The layer camkit explains when none is given: the last convolutional stage.

    ResNet family (resnet*, wide_resnet*, resnext*): the last block of ``layer4``
    (``layer4.2`` for ResNet-50). VGG, AlexNet, DenseNet and other models with a ``features``
    Sequential: its last module (as pytorch-grad-cam recommends). Otherwise an error asking
    for ``--layer``.
    """
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4) > 0:
        return f"layer4.{len(layer4) - 1}"
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 0:
        return f"features.{list(features._modules)[-1]}"
    raise ValueError(
        f"no default layer for {type(model).__name__}; pass --layer (see `camkit layers`)"
    )


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def list_layers(model: nn.Module, size: int | tuple[int, int] = 224) -> list[LayerInfo]:
    """Every named submodule with its output shape for a 1×3×H×W input (model left as found)."""
    from camkit.hooks import preserved_model_state

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
    from camkit.hooks import LayerProbe, preserved_model_state

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
