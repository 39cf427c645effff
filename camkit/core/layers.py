"""Layers by dotted name: resolve them (close-match errors) and pick a model's default layer."""

from __future__ import annotations

import difflib

from torch import nn

__all__ = ["default_layer", "resolve_layer"]


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
    """The layer camkit explains when none is given: the last spatial stage.

    ResNet family (resnet*, wide_resnet*, resnext*): the last block of ``layer4``
    (``layer4.2`` for ResNet-50). VGG, AlexNet, DenseNet, EfficientNet, MobileNet, ConvNeXt,
    SqueezeNet and other models whose ``features`` Sequential ends in a spatial map: its last
    module (as pytorch-grad-cam recommends). Any other CNN: the module that produces the last
    spatial map of the forward pass (``camkit.core.introspect.last_spatial_module``), e.g.
    GoogLeNet's ``inception5b``, RegNet's last block. Otherwise an error asking for ``--layer``.
    """
    from camkit.core.introspect import last_spatial_module

    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4) > 0:
        return f"layer4.{len(layer4) - 1}"
    return last_spatial_module(model)
