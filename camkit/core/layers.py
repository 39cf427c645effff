"""Layers by dotted name: resolve them, with close-match errors."""

from __future__ import annotations

import difflib

from torch import nn

__all__ = ["mixes_positions", "resolve_layer"]


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
            f"unknown layer {layer!r}{hint} Run `camkit layers` to list every layer name "
            "(`camkit layers --segmenter CKPT` for a segmenter's)."
        )
    return name, module


def mixes_positions(module: nn.Module) -> bool:
    """Attention (self-attention, windowed or not): every output position sees many inputs."""
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__
