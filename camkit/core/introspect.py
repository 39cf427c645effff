"""Layer introspection: every layer with its output shape, a layer's output stride, and the
layer camkit explains by default."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camkit.core.layers import mixes_positions, resolve_layer

__all__ = [
    "LayerInfo",
    "default_layer",
    "last_block_tokens",
    "last_spatial_module",
    "layer_stride",
    "list_layers",
    "native_size",
]


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


def native_size(model: nn.Module, default: int = 224) -> int:
    """The input side a model declares (torchvision ViT ``image_size``, timm's
    ``pretrained_cfg["input_size"]`` or ``patch_embed.img_size``), else ``default``. Models
    of one input size take only this one."""
    size = getattr(model, "image_size", None)
    config = getattr(model, "pretrained_cfg", None) or {}
    if not isinstance(size, int) and isinstance(config.get("input_size"), (tuple, list)):
        size = config["input_size"][-1]
    if not isinstance(size, int):
        size = getattr(getattr(model, "patch_embed", None), "img_size", None)
        size = size[-1] if isinstance(size, (tuple, list)) else size
    return int(size) if isinstance(size, int) and size > 0 else default


def list_layers(model: nn.Module, size: int | tuple[int, int] = 224) -> list[LayerInfo]:
    """Every named submodule with its output shape for a 1×3×H×W input (model left as found)."""
    from camkit.core.probe import preserved_model_state, probe_input

    height, width = _as_size(size)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def record(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                shapes.setdefault(name, tuple(output.shape))

        return hook

    named = [(name, module) for name, module in model.named_modules() if name]
    with preserved_model_state(model):
        model.eval()
        try:
            for name, module in named:
                handles.append(module.register_forward_hook(record(name)))
            with torch.inference_mode():
                model(probe_input(model, (height, width)))  # the model's device and dtype
        except AssertionError as error:  # torchvision's ViT asserts its one input size
            side = native_size(model)
            raise ValueError(
                f"{type(model).__name__} refused a {width}×{height} px input ({error}); it "
                f"takes {side}×{side}: use --size {side}"
            ) from None
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
    """Output stride of ``layer`` (input side / grid side), measured with one small forward;
    maps, channels-last cells and transformer tokens alike (:mod:`camkit.core.tokens`)."""
    from camkit.core.probe import LayerProbe, preserved_model_state, probe_input
    from camkit.core.tokens import token_layout

    name, module = resolve_layer(model, layer)

    def grid(size: int) -> tuple[int, int]:
        with preserved_model_state(model), LayerProbe(model, [name]) as probe:
            model.eval()
            with torch.inference_mode():
                model(probe_input(model, (size, size)))  # the model's device and dtype
            shape = tuple(probe.activations[name].shape)
        return token_layout(shape, (size, size), model, module, name).grid

    try:
        cells = grid(probe_size)
    except (RuntimeError, AssertionError):  # a model of one input size (MaxViT, ViT): its own
        probe_size = native_size(model)
        cells = grid(probe_size)
    fix = "pick a convolutional layer, e.g. the default that `camkit layers` marks"
    if cells == (1, 1) and grid(2 * probe_size) == (1, 1):
        raise ValueError(
            f"layer {name!r} outputs a 1×1 map at every input size (it pools away space), so its "
            f"heatmap would be one value; {fix}"
        )
    return max(1, round(probe_size / cells[1]))


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


def last_spatial_module(model: nn.Module, size: int | None = None) -> str:
    """The module whose output is the forward pass's last spatial map ``(N, C, h, w)`` — one
    whose ``h, w`` grow with the input and ``C`` does not (forwards at ``size`` and
    ``size + 64``; for a model of one input size, a square map after the channels): a ``features`` Sequential's last module when that is spatial, else the deepest
    container (else leaf) called once that returns the last such map.

    Raises:
        ValueError: no spatial map, or attention after the last one (a vision transformer's
            tokens), naming the model.
    """
    size = size or native_size(model)
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
            "a spatial map (N, C, h, w), and no attention block's normalised tokens hold a grid "
            "of patches; pass --layer with a layer that does (see `camkit layers`)"
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


def last_block_tokens(model: nn.Module, size: int | None = None) -> str | None:
    """A transformer's last block's normalised tokens: the first normalisation inside the block
    that holds the forward pass's last attention (ViT ``encoder.layers.encoder_layer_11.ln_1``,
    Swin ``features.7.1.norm1``, timm ``blocks.11.norm1``), when its output holds a grid of
    patches (tokens or channels-last cells; :mod:`camkit.core.tokens`); else ``None``."""
    from camkit.core.tokens import token_layout

    size = size or native_size(model)
    order, outputs, _ = _forward_outputs(model, size)
    attention = [name for name in order if mixes_positions(model.get_submodule(name))]
    if not attention:
        return None
    block = attention[-1].rpartition(".")[0]
    owner = model.get_submodule(block) if block else model
    for child, module in owner.named_children():
        if isinstance(module, nn.LayerNorm) or "Norm" in type(module).__name__:
            name = f"{block}.{child}" if block else child
            if name not in outputs:
                return None
            try:
                layout = token_layout(outputs[name].shape, (size, size), model, module, name)
            except ValueError:
                return None
            return name if layout.kind != "map" else None
    return None


def default_layer(model: nn.Module) -> str:
    """The layer camkit explains when none is given: the last spatial stage.

    ResNet family (resnet*, wide_resnet*, resnext*): the last block of ``layer4``
    (``layer4.2`` for ResNet-50). Vision transformers (ViT, Swin, and any model whose last
    attention block works on patch tokens): the last block's normalised tokens
    (:func:`last_block_tokens`; its attention and MLP mix the patches into the class token, as
    pytorch-grad-cam recommends). VGG, AlexNet, DenseNet, EfficientNet, MobileNet, ConvNeXt,
    SqueezeNet and other models whose ``features`` Sequential ends in a spatial map: its last
    module. Any other CNN (and MaxViT, whose attention works on windows of a map): the module
    that produces the last spatial map of the forward pass
    (:func:`last_spatial_module`), e.g. GoogLeNet's ``inception5b``, RegNet's last block.
    Otherwise an error asking for ``--layer``.
    """
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, nn.Sequential) and len(layer4) > 0:
        return f"layer4.{len(layer4) - 1}"
    if any(mixes_positions(module) for module in model.modules()):
        tokens = last_block_tokens(model)
        if tokens is not None:
            return tokens
    return last_spatial_module(model)
