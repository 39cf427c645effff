"""Option groups shared by the commands, each declared once, and the argument types.

A flag means the same in every command that has it:

- ``--weights``: ``imagenet`` (default everywhere), ``none`` (random) or a classifier checkpoint;
  a segmenter checkpoint goes to ``--segmenter``.
- ``--size``: the model input: a side, ``HxW``, or ``0`` for each image's own size; by default
  the model's input size (224 for ImageNet, the checkpoint's otherwise).
- ``--class``: one or more class ids; ``--topk K`` / ``--all-classes`` where several targets
  make sense.
- masks: ``--mask FILE`` (one image), ``--masks DIR`` (a folder, same relative names),
  ``--segmenter CKPT`` (predicted), ``--resize-mask`` (else a mask of another size is an error),
  ``--tolerance PX`` (pointing game).
- ``--method``: any registered method, read from the registry when the parser is built.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = [
    "MASK_SOURCES",
    "SPEED_OPTIONS",
    "add_data_folder",
    "add_device_option",
    "add_layer_options",
    "add_mask_options",
    "add_model_options",
    "add_output_options",
    "add_size_option",
    "add_speed_options",
    "add_target_options",
    "alpha",
    "folder",
    "is_linear",
    "method_names",
    "positive",
    "size",
]

# --------------------------------------------------------------------------------------------
# argument types


MAX_SIDE = 4096  # a ResNet-50 at 4096² px needs gigabytes per image; far beyond, memory runs out


def size(text: str) -> int | tuple[int, int]:
    """A side (``224``), ``HxW`` (``300x500``), or ``0`` for the image's own size; at most
    ``MAX_SIDE`` px a side."""
    try:
        if "x" in text.lower():
            height, width = (int(part) for part in text.lower().split("x"))
            if height < 1 or width < 1:
                raise ValueError
            value: int | tuple[int, int] = (height, width)
        else:
            value = int(text)
            if value < 0:
                raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use a side (224), HxW (300x500) or 0 for the image's own size"
        ) from None
    if max(value if isinstance(value, tuple) else (value,)) > MAX_SIDE:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is over {MAX_SIDE} px a side, more than a network input needs (and "
            "more memory than most machines have); use the model's size (224) or 0"
        )
    return value


def _number(text: str, kind: type, accept, expected: str):
    """``text`` as ``kind`` where ``accept(value)``, else one argparse error naming ``expected``."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def count(text: str) -> int:
    """A whole number ≥ 0 (``--workers 0``: no worker processes)."""
    return _number(text, int, lambda v: v >= 0, "a whole number ≥ 0")


def distance(text: str) -> float:
    """A finite number of pixels ≥ 0."""
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a distance in px ≥ 0")


def folder(text: str) -> Path:
    """An output folder: missing (it is created) or a folder, and no file on the way to it."""
    path = Path(text)
    for part in (path, *path.parents):
        try:
            is_file = part.exists() and not part.is_dir()
        except OSError as error:  # a name too long, a folder that cannot be read
            raise argparse.ArgumentTypeError(f"{text!r}: {error.strerror or error}") from None
        if is_file:
            where = "is a file" if part == path else f"is under {part}, which is a file"
            raise argparse.ArgumentTypeError(
                f"{text!r} {where}; pass a folder (a missing one is created)"
            )
    return path


def layer_name(text: str) -> str:
    """A dotted layer name, or several joined by commas; no empty name among them."""
    if not text.strip() or any(not part.strip() for part in text.split(",")):
        raise argparse.ArgumentTypeError(
            f"invalid layer {text!r}: an empty name; give a dotted name such as layer4.2 (or "
            "several joined by commas) — `camkit layers` lists them"
        )
    return text


def positive(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def alpha(text: str) -> float:
    """An overlay opacity in [0, 1]."""
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "an opacity in [0, 1]")


def method_names() -> tuple[str, ...]:
    """The registered methods, read now (so a method registered at runtime is a choice)."""
    from camkit import methods

    return tuple(methods.names())


def is_linear(method: str) -> bool:
    """Whether ``method`` is a linear class map (CAM, FCN): no gradients, nothing to smooth."""
    from camkit import methods

    return methods.get(method).needs == "linear"


# --------------------------------------------------------------------------------------------
# option groups


def add_device_option(parser) -> None:
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)"
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--weights``, ``--model``, ``--device``: the classifier and where it runs."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--weights",
        default="imagenet",
        help="classifier: 'imagenet' (default), 'none' (random) or a checkpoint path",
    )
    group.add_argument(
        "--model",
        default=None,
        help="torchvision model name (vit_b_16, swin_t, convnext_tiny …) or timm:NAME with "
        "camkit[timm] (default: resnet50; a camkit checkpoint names its own)",
    )
    add_device_option(group)


def add_size_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--size",
        type=size,
        default=None,
        help="model input: a side (224), HxW (300x500) or 0 for each image's own size "
        "(default: the model's input size)",
    )


def add_layer_options(
    parser: argparse.ArgumentParser, method: bool = True, several: bool = False
) -> None:
    """``--layer`` and (``method``) ``--method``; ``several``: comma-separated layers, fused."""
    group = parser.add_argument_group("what to explain")
    fused = "; several, comma-separated (layer4.2,layer3.5), are fused" if several else ""
    group.add_argument(
        "--layer",
        type=layer_name,
        default=None,
        help=f"dotted layer name (default: the last stage, layer4.2 for ResNet-50{fused}; "
        "see `camkit layers`)",
    )
    if method:
        group.add_argument(
            "--method",
            choices=method_names(),
            default="gradcam",
            help="CAM method (default gradcam); cam = W·A and fcn = W·A + b are the linear "
            "class maps",
        )


def add_target_options(parser: argparse.ArgumentParser, several: bool = True) -> None:
    """``--class`` (one or more ids); with ``several`` also ``--topk`` and ``--all-classes``."""
    targets = parser.add_argument_group("targets").add_mutually_exclusive_group()
    targets.add_argument(
        "--class",
        dest="class_ids",
        type=int,
        nargs="+",
        metavar="ID",
        help="explain these class ids (for every image; default: the predicted class)",
    )
    if several:
        targets.add_argument(
            "--topk",
            type=positive,
            default=None,
            metavar="K",
            help="explain the K best classes (default 1)",
        )
        targets.add_argument(
            "--all-classes",
            action="store_true",
            help="maps for every class (panels show the best 8)",
        )


def _speed_arguments() -> dict[str, tuple[str, dict]]:
    from camkit.combine import FUSIONS
    from camkit.explainer import PATHS
    from camkit.heatmaps import ALIGNS

    return {
        "path": (
            "--path",
            {"choices": PATHS, "default": "auto", "help": "computation path (default: auto)"},
        ),
        "output_stride": (
            "--output-stride",
            {
                "type": int,
                "choices": (32, 16),
                "default": 32,
                "help": "16 dilates layer4 for 2× denser maps (same weights; default 32)",
            },
        ),
        "eigen_smooth": (
            "--eigen-smooth",
            {
                "action": "store_true",
                "help": "project the weighted activations on their first principal component "
                "(less noise)",
            },
        ),
        "aug_smooth": (
            "--aug-smooth",
            {
                "action": "store_true",
                "help": "average the normalised maps over flips × intensity 0.9/1/1.1 "
                "(test-time augmentation)",
            },
        ),
        "chunk_size": (
            "--chunk-size",
            {
                "type": positive,
                "default": 32,
                "metavar": "N",
                "help": "Score-CAM family / Ablation-CAM: masked or ablated passes per chunk; "
                "memory grows with N, not with the channel count (default 32)",
            },
        ),
        "score_channels": (
            "--score-channels",
            {
                "type": positive,
                "default": None,
                "metavar": "N",
                "help": "Score-CAM, SS-CAM, IS-CAM: only the top-N channels by activation "
                "variance (Faster Score-CAM)",
            },
        ),
        "seed": (
            "--seed",
            {
                "type": int,
                "default": 0,
                "metavar": "N",
                "help": "the noise of SS-CAM and Smooth Grad-CAM++ (default 0: the same maps "
                "on every run)",
            },
        ),
        "fusion": (
            "--fusion",
            {
                "choices": FUSIONS,
                "default": None,
                "help": "how the maps of several layers (--layer layer4.2,layer3.5) are fused "
                "(default mean); an error with one layer",
            },
        ),
        "channels_last": (
            "--channels-last",
            {
                "action": "store_true",
                "help": "feed the model channels-last inputs: the same maps to float rounding, "
                "often faster",
            },
        ),
        "align": (
            "--align",
            {
                "choices": ALIGNS,
                "default": "rf",
                "help": "how maps are put on images: rf puts each cell at its receptive-field "
                "centre (default); grid is pytorch-grad-cam's convention (align_corners=False), "
                "which draws a ResNet map stride/2 px down and right of its evidence",
            },
        ),
        "autocast": (
            "--autocast",
            {
                "choices": ("bf16", "fp16"),
                "default": None,
                "help": "run the forward passes under torch.autocast: faster where the hardware "
                "has it, but the maps only approximate float32's (recorded in the output)",
            },
        ),
    }


SPEED_OPTIONS = (
    "path",
    "output_stride",
    "eigen_smooth",
    "aug_smooth",
    "chunk_size",
    "score_channels",
    "seed",
    "fusion",
    "channels_last",
    "autocast",
    "align",
)


def add_speed_options(
    parser: argparse.ArgumentParser, only: tuple[str, ...] = SPEED_OPTIONS
) -> None:
    """The Explainer's options: the subset ``only`` that the command's library call takes."""
    unknown = set(only) - set(SPEED_OPTIONS)
    if unknown:
        raise ValueError(f"unknown speed options {sorted(unknown)}; choose from {SPEED_OPTIONS}")
    group = parser.add_argument_group("computation")
    for name, (flag, options) in _speed_arguments().items():
        if name in only:
            group.add_argument(flag, **options)


MASK_SOURCES = {
    "mask": "mask file for a single image (non-zero = object)",
    "masks": "mask folder for a folder of images (same relative paths and stems)",
    "segmenter": "segmenter checkpoint (camkit train-seg): predict the masks",
}


def add_mask_options(
    parser: argparse.ArgumentParser,
    sources: tuple[str, ...] = ("mask", "masks", "segmenter"),
    required: bool = False,
    resize: bool = True,
    tolerance: bool = True,
) -> None:
    """Where the masks come from (one of ``sources``, at most one per run), ``--resize-mask``
    (``resize``) and ``--tolerance`` (``tolerance``)."""
    group = parser.add_argument_group("masks")
    if sources:
        source = group.add_mutually_exclusive_group(required=required)
        for name in sources:
            source.add_argument(f"--{name}", type=Path, default=None, help=MASK_SOURCES[name])
    if resize:
        group.add_argument(
            "--resize-mask",
            action="store_true",
            help="resize mask files of another size than their image (nearest-neighbour); "
            "else that is an error",
        )
    if tolerance:
        group.add_argument(
            "--tolerance",
            type=distance,
            default=15.0,
            help="pointing-game tolerance in px (default 15)",
        )


def add_output_options(
    parser: argparse.ArgumentParser, out: str, json: bool = True, overlay: bool = False
) -> None:
    """``--out`` (default ``out``), ``--json``; with ``overlay`` also ``--alpha``, ``--colormap``."""
    group = parser.add_argument_group("output")
    group.add_argument(
        "--out", type=folder, default=Path(out), help=f"output folder (default: {out})"
    )
    if json:
        group.add_argument("--json", action="store_true", help="print the results as JSON")
    if overlay:
        from camkit.viz.overlay import COLORMAPS

        group.add_argument(
            "--alpha", type=alpha, default=0.5, help="overlay opacity in [0, 1] (default 0.5)"
        )
        group.add_argument(
            "--colormap", choices=COLORMAPS, default="jet", help="heatmap colours (default jet)"
        )


def add_data_folder(parser: argparse.ArgumentParser, help: str) -> None:
    """The data folder, positional (``DIR``) or as ``--data DIR``; see ``common.data_folder``."""
    parser.add_argument("data_folder", nargs="?", type=Path, metavar="DIR", help=help)
    parser.add_argument(
        "--data", type=Path, default=None, metavar="DIR", help="the same as the DIR argument"
    )
