"""Layer introspection: every layer with its output shape, a layer's output stride, and the
layer camkit explains by default."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camkit.core.layers import mixes_positions, resolve_layer

__all__ = ["LayerInfo", "default_layer", "last_spatial_module", "layer_stride", "list_layers"]


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

    try:
        shape = output_shape(probe_size)
    except RuntimeError:  # a model of one input size (MaxViT, ViT): its own, 224
        probe_size = 224
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


def _forward_outputs(model: nn.Module, size: int) -> tuple[list[str], dict, dict]:
    """One forward at ``size``: module names in the order their calls ended, their (last)
    tensor outputs, and how often each was called."""
    from camkit.core.probe import preserved_model_state, probe_input

    order, outputs, calls = [], {}, {}

    def hook(name: str):
        def record(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            order.append(name)
            if isinstance(output, torch.Tensor):
                outputs[name] = output

        return record

    named = [(name, module) for name, module in model.named_modules() if name]
    with preserved_model_state(model):
        model.eval()
        handles = [module.register_forward_hook(hook(name)) for name, module in named]
        try:
            with torch.inference_mode():
                model(probe_input(model, (size, size)))
        finally:
            for handle in handles:
                handle.remove()
    return order, outputs, calls


def last_spatial_module(model: nn.Module, size: int = 224) -> str:
    """The module whose output is the forward pass's last spatial map ``(N, C, h, w)`` — one
    whose ``h, w`` grow with the input and ``C`` does not (forwards at ``size`` and
    ``size + 64``; for a model of one input size, a square map after the channels): a ``features`` Sequential's last module when that is spatial, else the deepest
    container (else leaf) called once that returns the last such map.

    Raises:
        ValueError: no spatial map, or attention after the last one (a vision transformer's
            tokens), naming the model.
    """
    order, outputs, calls = _forward_outputs(model, size)
    try:
        _, larger, _ = _forward_outputs(model, size + 64)
    except (RuntimeError, AssertionError, ValueError):  # a model of one input size only
        larger = None

    def spatial(name: str) -> bool:
        out = outputs[name]
        if out.ndim != 4 or out.shape[-2:].numel() <= 1:
            return False
        if larger is None:  # square input: (N, C, h, h), not channels-last (N, h, h, C)
            return out.shape[2] == out.shape[3] and out.shape[1] != out.shape[2]
        big = larger.get(name)
        if big is None or big.ndim != 4 or out.shape[1] != big.shape[1]:
            return False
        return all(b > o for b, o in zip(big.shape[2:], out.shape[2:]))

    position = {name: index for index, name in enumerate(order)}  # each name's last call
    maps = [name for name in position if name in outputs and spatial(name)]
    last = max(maps, key=position.get) if maps else None
    after = order[position[last] + 1 :] if last else order
    if last is None or any(mixes_positions(model.get_submodule(n)) for n in after):
        raise ValueError(
            f"no default layer for {type(model).__name__}: its last layers output tokens, not "
            "a spatial map (N, C, h, w), and camkit does not explain transformer tokens yet; "
            "pass --layer with a convolutional layer (see `camkit layers`)"
        )
    final = outputs[last]
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 0:
        tail = f"features.{list(features._modules)[-1]}"
        if tail in maps:
            return tail
    found = [n for n in maps if outputs[n] is final and calls[n] == 1]
    containers = [n for n in found if any(True for _ in model.get_submodule(n).children())]
    return max(containers or found or [last], key=lambda name: name.count("."))


def default_layer(model: nn.Module) -> str:
    """The layer camkit explains when none is given: the last spatial stage.

    ResNet family (resnet*, wide_resnet*, resnext*): the last block of ``layer4``
    (``layer4.2`` for ResNet-50). VGG, AlexNet, DenseNet, EfficientNet, MobileNet, ConvNeXt,
    SqueezeNet and other models whose ``features`` Sequential ends in a spatial map: its last
    module (as pytorch-grad-cam recommends). Any other CNN: the module that produces the last
    spatial map of the forward pass (``camkit.core.introspect.last_spatial_module``), e.g.
    GoogLeNet's ``inception5b``, RegNet's last block. Otherwise an error asking for ``--layer``.
    """
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4) > 0:
        return f"layer4.{len(layer4) - 1}"
    return last_spatial_module(model)
