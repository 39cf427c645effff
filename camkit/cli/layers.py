"""``camkit layers``: every named layer with its output shape (the default layer marked)."""

from __future__ import annotations

import json
from pathlib import Path

from camkit.cli import options
from camkit.cli.common import DEFAULT_MODEL, CLIError, check_model, device, note

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "layers",
        help="list layer names and output shapes",
        description="List every named layer with its output shape. Names and shapes do not "
        "depend on the weights: without cached ImageNet weights, random ones are used.",
    )
    options.add_model_options(parser)
    parser.add_argument(
        "--segmenter",
        type=Path,
        default=None,
        help="list this camkit train-seg checkpoint's layers (for explain-seg) instead",
    )
    options.add_size_option(parser)
    parser.add_argument("--json", action="store_true", help="print the layers as JSON")
    parser.set_defaults(handler=run)


def _imagenet_cached(arch: str) -> bool:
    """Whether torchvision's ImageNet weights of ``arch`` are cached (never downloads)."""
    import os
    from pathlib import Path

    import torch
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        return True  # an unknown model: let the loader say so
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)).is_file()


def _load(args):
    """The model of ``--weights``; random weights, with a note, where ImageNet's are not cached.
    Random weights need no other note here: layer names and shapes do not depend on them."""
    from camkit.models.resnet import WeightsUnavailableError, load_classifier

    weights, arch = args.weights, args.model or DEFAULT_MODEL
    pretrained = weights.lower() in ("imagenet", "default")
    random = (
        f"listing a randomly initialised {arch} (layer names and shapes do not depend on "
        "the weights)"
    )
    if pretrained and not _imagenet_cached(arch):
        note(f"ImageNet weights for {arch} are not cached; {random}")
        weights = "none"
    try:
        model, info = load_classifier(weights, arch=arch)
    except WeightsUnavailableError:  # timm's hub cache, which only its loader can look into
        if not pretrained:
            raise
        note(f"pretrained weights for {arch} are not cached; {random}")
        model, info = load_classifier("none", arch=arch)
    check_model(args.model, weights, info)
    return model.to(device(args.device)), info


def _segmenter(args):
    """``--segmenter``: the ResUNet, its input size, and explain-seg's default layer."""
    from camkit.models.segmenter import load_segmenter
    from camkit.regions import DEFAULT_LAYER

    if args.weights.lower() not in ("imagenet", "default") or args.model is not None:
        raise CLIError("--segmenter lists a segmenter's layers; leave out --weights and --model")
    model, info = load_segmenter(args.segmenter)
    return (
        model.to(device(args.device)),
        args.size or int(info.get("input_size", 128)),
        DEFAULT_LAYER,
    )


def _cells(geometry) -> str:
    """Where the layer's cells sit: ``cell i at 0 + 32·i px (derived)``."""
    axes = [f"{o:g} + {s:g}·i" for o, s in zip(geometry.offset, geometry.stride)]
    where = axes[0] if axes[0] == axes[1] else f"y {axes[0]}, x {axes[1]}"
    return f"cell i centred on input px {where} ({geometry.source})"


def run(args) -> int:
    from camkit.core.geometry import layer_geometry
    from camkit.core.introspect import default_layer, list_layers

    if args.size == 0:
        raise CLIError(
            "layers has no image: --size 0 (each image's own size) does not apply; pass a side "
            "such as --size 224, or leave it out for the model's input size"
        )
    if args.segmenter is not None:
        model, size, default = _segmenter(args)
    else:
        model, info = _load(args)
        size = args.size or info.input_size
        try:
            default = default_layer(model)
        except ValueError:
            default = None
    rows = list_layers(model, size)
    geometry = layer_geometry(model, default) if default else None
    if args.json:
        rows = [
            {
                "name": r.name,
                "type": r.type,
                "output_shape": r.output_shape,
                "parameters": r.parameters,
                "default": r.name == default,
                **({"geometry": geometry.describe()} if r.name == default else {}),
            }
            for r in rows
        ]
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r.name) for r in rows)
    print(f"{'layer':<{width}}  {'type':<18} {'output shape':<22} params")
    for r in rows:
        shape = "×".join(str(d) for d in r.output_shape[1:]) if r.output_shape else "-"
        mark = f"  ← default: {_cells(geometry)}" if r.name == default else ""
        print(f"{r.name:<{width}}  {r.type:<18} {shape:<22} {r.parameters:,}{mark}")
    return 0
