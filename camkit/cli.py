"""The ``camkit`` command line: ``main(argv) -> int``, testable in-process."""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

__all__ = ["build_parser", "main"]

log = logging.getLogger("camkit")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


def _size(text: str) -> int | tuple[int, int]:
    try:
        if "x" in text.lower():
            height, width = (int(part) for part in text.lower().split("x"))
            if height < 1 or width < 1:
                raise ValueError
            return height, width
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use a side (224), HxW (300x500) or 0 for the image's own size"
        ) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be in [0, 1], got {text!r}")
    return value


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_mutually_exclusive_group()
    targets.add_argument(
        "--class",
        dest="class_ids",
        type=int,
        nargs="+",
        metavar="ID",
        help="explain these class ids (for every image)",
    )
    targets.add_argument(
        "--topk",
        type=_positive,
        default=None,
        metavar="K",
        help="explain the K best classes (default 1)",
    )
    targets.add_argument(
        "--all-classes", action="store_true", help="maps for every class (panel shows the best 8)"
    )


def _add_model_arguments(parser: argparse.ArgumentParser, default_weights: str) -> None:
    parser.add_argument(
        "--weights",
        default=default_weights,
        help=f"'imagenet', 'none' (random) or a checkpoint path (default: {default_weights})",
    )
    parser.add_argument(
        "--model", default="resnet50", help="torchvision model name (default: resnet50)"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)"
    )


def _add_speed_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--channels-last",
        action="store_true",
        help="feed the model channels-last inputs: the same maps to float rounding, often faster",
    )
    command.add_argument(
        "--autocast",
        choices=("bf16", "fp16"),
        default=None,
        help="run the forward passes under torch.autocast: faster where the hardware has it, "
        "but the maps only approximate float32's (recorded in the output)",
    )


def build_parser() -> argparse.ArgumentParser:
    from camkit import __version__
    from camkit.explainer import METHODS, PATHS
    from camkit.viz.overlay import COLORMAPS

    parser = argparse.ArgumentParser(
        prog="camkit",
        description="Grad-CAM and FCN class maps for ResNet-50, checked against masks.",
    )
    parser.add_argument("--version", action="version", version=f"camkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    explain = commands.add_parser(
        "explain",
        help="heatmaps for images",
        description="Explain images: predictions, heatmap panels, raw maps.",
    )
    explain.add_argument("images", nargs="+", metavar="IMG", help="image files")
    explain.add_argument(
        "--layer", default=None, help="dotted layer name (default: layer4.2; see `camkit layers`)"
    )
    explain.add_argument(
        "--method",
        choices=METHODS,
        default="gradcam",
        help="gradcam (default), gradcampp, xgradcam, hirescam, layercam, scorecam, ablationcam, eigencam; cam = W·A, fcn = W·A + b",
    )
    _add_target_arguments(explain)
    _add_model_arguments(explain, "imagenet")
    explain.add_argument(
        "--size",
        type=_size,
        default=None,
        help="model input: side, HxW, or 0 for native (default: the model's, 224)",
    )
    explain.add_argument(
        "--out", type=Path, default=Path("camkit-out"), help="output folder (default: camkit-out)"
    )
    explain.add_argument("--save-raw", action="store_true", help="also write raw maps as .npz")
    explain.add_argument("--json", action="store_true", help="print results as JSON")
    explain.add_argument(
        "--path", choices=PATHS, default="auto", help="computation path (default: auto)"
    )
    explain.add_argument(
        "--alpha", type=_alpha, default=0.5, help="overlay opacity in [0, 1] (default 0.5)"
    )
    explain.add_argument("--colormap", choices=COLORMAPS, default="jet")
    explain.add_argument("--batch-size", type=_positive, default=16)

    explain.add_argument(
        "--aug-smooth",
        action="store_true",
        help="average the normalised maps over flips × intensity 0.9/1/1.1 (test-time augmentation)",
    )
    explain.add_argument(
        "--eigen-smooth",
        action="store_true",
        help="project the weighted activations on their first principal component (less noise)",
    )
    _add_speed_options(explain)
    explain.add_argument(
        "--chunk-size",
        type=_positive,
        default=32,
        metavar="N",
        help="Score-CAM / Ablation-CAM: masked or ablated forward passes per chunk; memory "
        "grows with N, not with the channel count (default 32)",
    )
    explain.add_argument(
        "--score-channels",
        type=_positive,
        default=None,
        metavar="N",
        help="Score-CAM: only the top-N channels by activation variance (Faster Score-CAM)",
    )
    explain.add_argument(
        "--fusion",
        choices=("mean", "max"),
        default="mean",
        help="how maps of several layers (--layer layer4.2,layer3.5) are fused (default mean)",
    )
    explain.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="mask file (one image): contour and metrics on the panel",
    )
    explain.add_argument(
        "--segmenter",
        type=Path,
        default=None,
        help="segmenter checkpoint: predicted mask contour and metrics",
    )
    explain.add_argument(
        "--output-stride",
        type=int,
        choices=(32, 16),
        default=32,
        help="16 dilates layer4 for 2× denser maps (same weights)",
    )

    demo = commands.add_parser(
        "demo",
        help="the offline demo: shapes data, training, report",
        description="Generate shapes data, train a ResNet-50 (cached), explain held-out images and write a report.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("camkit-demo"), help="demo folder (default: camkit-demo)"
    )
    demo.add_argument("--n-train", type=_positive, default=1500)
    demo.add_argument("--epochs", type=_positive, default=1)
    demo.add_argument("--size", type=_positive, default=128)
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--no-segmenter", action="store_true", help="skip the ResUNet")
    demo.add_argument(
        "--compare-seed",
        type=int,
        default=0,
        metavar="N",
        help="also train the notes' seed ResUNet and a unet on N images each (equal data; seed is ~17× slower per image)",
    )

    data = commands.add_parser(
        "data", help="generate data sets", description="Generate camkit's synthetic data sets."
    )
    data_commands = data.add_subparsers(dest="data_command", metavar="KIND")
    data_commands.required = True
    shapes = data_commands.add_parser(
        "shapes",
        help="synthetic shapes with masks",
        description="Write synthetic shapes as a folder data set (images/<class>/*.png, masks/<class>/*.png).",
    )
    shapes.add_argument("--out", type=Path, required=True)
    shapes.add_argument("--n", type=_positive, default=2000)
    shapes.add_argument("--size", type=_positive, default=128)
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--difficulty", choices=("easy", "hard"), default="easy")
    shapes.add_argument("--objects", type=int, choices=(1, 2), default=1)

    train = commands.add_parser(
        "train",
        help="train a ResNet-50 classifier on a folder data set",
        description="Train or fine-tune a ResNet-50 classifier on images/<class>/* .",
    )
    train.add_argument("data", type=Path, help="data folder (images/<class>/*)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    train.add_argument(
        "--val", type=Path, default=None, help="validation folder (default: a seeded split of DATA)"
    )
    train.add_argument("--epochs", type=_positive, default=1)
    train.add_argument("--size", type=_positive, default=128)
    train.add_argument("--batch-size", type=_positive, default=16)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--workers", type=int, default=1)
    train.add_argument(
        "--pretrained",
        choices=("auto", "imagenet", "none"),
        default="auto",
        help="auto: ImageNet weights if cached locally, else from scratch",
    )
    train.add_argument("--resume", action="store_true", help="continue from --out")
    train.add_argument("--device", default=None)

    variant = commands.add_parser(
        "variant",
        help="build a channel variant of layer4.2 from a trained checkpoint and fine-tune it",
        description="Weight-preserving surgery to C output channels in layer4.2, then fine-tuning (layer4.2 + fc unless --train-all).",
    )
    variant.add_argument(
        "--channels", type=_positive, required=True, help="output channels C of layer4.2"
    )
    variant.add_argument(
        "--from", dest="parent", type=Path, required=True, help="parent checkpoint"
    )
    variant.add_argument(
        "--data", type=Path, required=True, help="training folder (images/<class>/*)"
    )
    variant.add_argument(
        "--val", type=Path, default=None, help="validation folder (default: a seeded split)"
    )
    variant.add_argument("--out", type=Path, required=True, help="variant checkpoint to write")
    variant.add_argument(
        "--epochs", type=int, default=1, help="fine-tuning epochs (0: surgery only)"
    )
    variant.add_argument(
        "--train-all", action="store_true", help="train every layer, not only layer4.2 and fc"
    )
    variant.add_argument("--batch-size", type=_positive, default=16)
    variant.add_argument("--lr", type=float, default=1e-3)
    variant.add_argument("--workers", type=int, default=1)

    variants = commands.add_parser(
        "variants", help="study channel variants", description="Study channel variants."
    )
    variants_commands = variants.add_subparsers(dest="variants_command", metavar="ACTION")
    variants_commands.required = True
    compare = variants_commands.add_parser(
        "compare",
        help="accuracy, localisation and heatmap agreement of variants on the same images",
        description="Run each variant on the same images: accuracy, pointing game and energy in mask (needs masks/), Spearman and top-20%% IoU between variants; CSV tables and a figure.",
    )
    compare.add_argument("checkpoints", nargs="+", type=Path, metavar="CKPT")
    compare.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with images/<class>/* (and masks/<class>/*)",
    )
    compare.add_argument("--out", type=Path, default=Path("camkit-variants"), help="output folder")
    compare.add_argument(
        "--n",
        type=_positive,
        default=200,
        help="images to use, spread over the classes (default 200)",
    )
    compare.add_argument("--output-stride", type=int, choices=(32, 16), default=32)
    compare.add_argument("--json", action="store_true")

    train_seg = commands.add_parser(
        "train-seg",
        help="train a ResUNet segmenter on images/ + masks/",
        description="Train a ResUNet (unet or seed) on a folder data set with images/ and masks/ (same relative paths).",
    )
    train_seg.add_argument("data", type=Path, help="folder with images/ and masks/")
    train_seg.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    train_seg.add_argument(
        "--val", type=Path, default=None, help="validation folder (default: a seeded split)"
    )
    train_seg.add_argument("--arch", choices=("unet", "seed"), default="unet")
    train_seg.add_argument(
        "--classes",
        type=_positive,
        default=1,
        help="1: binary foreground; K+1: K classes plus background",
    )
    train_seg.add_argument("--epochs", type=_positive, default=1)
    train_seg.add_argument(
        "--size", type=_positive, default=128, help="training side, a multiple of 32"
    )
    train_seg.add_argument("--batch-size", type=_positive, default=16)
    train_seg.add_argument("--lr", type=float, default=1e-3)
    train_seg.add_argument(
        "--loss", default="bce+dice", help="'+'-joined: bce, focal, dice, lovasz (default bce+dice)"
    )
    train_seg.add_argument("--no-deep-supervision", action="store_true")
    train_seg.add_argument(
        "--encoder", default=None, help="'imagenet' (local cache), a classifier checkpoint, or none"
    )
    train_seg.add_argument(
        "--limit", type=_positive, default=None, help="train on this many images only"
    )
    train_seg.add_argument("--workers", type=int, default=1)
    train_seg.add_argument("--resume", action="store_true")
    train_seg.add_argument("--device", default=None)

    segment = commands.add_parser(
        "segment",
        help="predict masks with a trained segmenter",
        description="Write a mask PNG and an overlay per image (any size; resized for the model and back).",
    )
    segment.add_argument("images", nargs="+", metavar="IMG")
    segment.add_argument(
        "--weights", type=Path, required=True, help="segmenter checkpoint (camkit train-seg)"
    )
    segment.add_argument("--out", type=Path, default=Path("camkit-masks"))
    segment.add_argument("--threshold", type=float, default=0.5)
    segment.add_argument(
        "--probabilities", action="store_true", help="also write probability maps (.npz, float16)"
    )
    segment.add_argument("--device", default=None)

    compare = commands.add_parser(
        "compare",
        help="compare heatmaps with masks (files, a segmenter, or ground truth)",
        description="Heatmap-vs-mask metrics for one image (--mask or --segmenter) or a folder (--masks DIR or --segmenter): printed, CSV, and comparison panels.",
    )
    compare.add_argument("input", type=Path, help="an image, or a folder of images (recursive)")
    source = compare.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--mask", type=Path, help="mask file for a single image (non-zero = object)"
    )
    source.add_argument(
        "--masks", type=Path, help="mask folder for a folder of images (same relative paths)"
    )
    source.add_argument("--segmenter", type=Path, help="segmenter checkpoint: predict the masks")
    _add_model_arguments(compare, "imagenet")
    compare.add_argument("--layer", default=None)
    compare.add_argument("--method", choices=METHODS, default="gradcam")
    compare.add_argument(
        "--class",
        dest="class_id",
        type=int,
        default=None,
        help="explain this class (default: the prediction)",
    )
    compare.add_argument(
        "--size", type=_positive, default=None, help="model input side (default: the model's)"
    )
    compare.add_argument("--output-stride", type=int, choices=(32, 16), default=32)
    compare.add_argument(
        "--tolerance", type=float, default=15.0, help="pointing-game tolerance in px (default 15)"
    )
    compare.add_argument(
        "--resize-mask", action="store_true", help="resize masks of another size than their image"
    )
    compare.add_argument("--out", type=Path, default=Path("camkit-compare"))
    compare.add_argument(
        "--panels", type=int, default=None, help="panels to write in folder mode (default 16)"
    )
    compare.add_argument("--json", action="store_true")

    evaluate = commands.add_parser(
        "evaluate",
        help="compare CAM methods: localisation, faithfulness, time",
        description="For each method on the same images: pointing game and energy in mask (if DIR/masks exists), deletion/insertion AUC (RISE), Average Drop, Increase in Confidence, time per image.",
    )
    evaluate.add_argument(
        "--data", type=Path, required=True, help="folder with images/ (and masks/), or of images"
    )
    evaluate.add_argument(
        "--methods",
        default="gradcam,gradcampp,xgradcam,hirescam,layercam,ablationcam,eigencam",
        help="comma-separated (default: all but scorecam, which needs one pass per channel)",
    )
    _add_model_arguments(evaluate, "imagenet")
    evaluate.add_argument("--layer", default=None)
    evaluate.add_argument(
        "--n", type=_positive, default=50, help="images, spread over the folder (default 50)"
    )
    evaluate.add_argument("--output-stride", type=int, choices=(32, 16), default=32)
    evaluate.add_argument(
        "--steps", type=_positive, default=32, help="deletion/insertion steps (default 32)"
    )
    evaluate.add_argument("--baseline", choices=("blur", "zero"), default="blur")
    evaluate.add_argument(
        "--score-channels",
        type=_positive,
        default=None,
        help="Score-CAM: only the top-N channels by variance",
    )
    evaluate.add_argument("--out", type=Path, default=Path("camkit-evaluate"))
    evaluate.add_argument("--json", action="store_true")

    export = commands.add_parser(
        "export",
        help="heatmaps for a whole folder: resumable, atomic, with a gallery",
        description="Explain every image of a folder, glob or list file into OUT: overlays/, "
        "raw/ (float16 maps), manifest.jsonl, summary.csv and index.html. Rerun the same "
        "command to resume. Exit code 3 when some images failed (see the manifest). "
        "Scale out with `torchrun --nproc-per-node N -m camkit.cli export ...` or --shard K/N "
        "per process, then `camkit export --merge OUT`.",
    )
    export.add_argument(
        "input", nargs="?", help="a folder (recursive), a glob ('a/**/*.jpg'), or a list file"
    )
    export.add_argument(
        "--out", type=Path, default=Path("camkit-export"), help="output folder (camkit-export)"
    )
    export.add_argument(
        "--merge",
        type=Path,
        default=None,
        metavar="OUT",
        help="join the shards' manifests of OUT and write summary.csv and index.html",
    )
    export.add_argument("--layer", default=None, help="default: the model's last stage")
    export.add_argument("--method", choices=[m for m in METHODS if m != "fcn"], default="gradcam")
    _add_target_arguments(export)
    _add_model_arguments(export, "imagenet")
    export.add_argument("--size", type=_size, default=None, help="model input side or HxW")
    export.add_argument("--batch-size", type=_positive, default=16)
    export.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: min(4, CPUs))"
    )
    export.add_argument(
        "--formats",
        default="overlay,raw",
        help="comma-separated: overlay, raw, mask, panel (default overlay,raw)",
    )
    export.add_argument("--segmenter", type=Path, default=None, help="segmenter checkpoint")
    export.add_argument(
        "--masks", type=Path, default=None, help="folder of masks (same relative names)"
    )
    export.add_argument("--resize-mask", action="store_true")
    export.add_argument("--output-stride", type=int, choices=(32, 16), default=32)
    export.add_argument("--eigen-smooth", action="store_true")
    _add_speed_options(export)
    export.add_argument("--alpha", type=_alpha, default=0.5)
    export.add_argument("--colormap", choices=COLORMAPS, default="jet")
    export.add_argument(
        "--max-side", type=_positive, default=1024, help="overlays are at most this big"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="redo every image (needed when settings change)"
    )
    export.add_argument(
        "--retry-errors", action="store_true", help="try images that failed before again"
    )
    export.add_argument("--shard", default=None, metavar="K/N", help="this process's shard")

    layers = commands.add_parser(
        "layers",
        help="list layer names and output shapes",
        description="List every named layer with its output shape.",
    )
    _add_model_arguments(layers, "none")
    layers.add_argument("--size", type=_size, default=224, help="input side or HxW (default 224)")
    layers.add_argument("--json", action="store_true")
    return parser


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CLIError(f"--device {name!r} is not a device; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def _load(args):
    from camkit.models.resnet import load_classifier

    model, info = load_classifier(args.weights, arch=args.model)
    if info.random:
        print(
            f"note: weights are random (--weights {args.weights}): the heatmaps show camkit "
            "working, not what a trained model looks at",
            file=sys.stderr,
        )
    return model.to(_device(args.device)), info


def _cmd_layers(args) -> int:
    from camkit.core.introspect import list_layers
    from camkit.core.layers import default_layer

    model, _info = _load(args)
    size = args.size if args.size else 224
    rows = list_layers(model, size)
    try:
        default = default_layer(model)
    except ValueError:
        default = None
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "type": r.type,
                        "output_shape": r.output_shape,
                        "parameters": r.parameters,
                        "default": r.name == default,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )
        return 0
    width = max(len(r.name) for r in rows)
    print(f"{'layer':<{width}}  {'type':<18} {'output shape':<22} params")
    for r in rows:
        shape = "×".join(str(d) for d in r.output_shape[1:]) if r.output_shape else "-"
        mark = "  ← default" if r.name == default else ""
        print(f"{r.name:<{width}}  {r.type:<18} {shape:<22} {r.parameters:,}{mark}")
    return 0


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.stem or "image"
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f"{stem}-{count + 1}")
    return stems


def _cmd_explain(args) -> int:
    import numpy as np
    import torch

    from camkit.cam import upsample
    from camkit.core.layers import default_layer
    from camkit.data.images import preprocess, read_image
    from camkit.explainer import Explainer
    from camkit.io.files import atomic_write_bytes
    from camkit.viz.overlay import panel, save_image

    model, info = _load(args)
    layer = args.layer or default_layer(model)
    if args.eigen_smooth and args.method in ("cam", "fcn"):
        raise CLIError(
            f"--eigen-smooth does not apply to --method {args.method} (a linear class map); "
            "use it with a Grad-CAM-family method such as gradcam"
        )
    options = {
        "path": args.path,
        "output_stride": args.output_stride,
        "batch_size": args.chunk_size,
        "score_channels": args.score_channels,
        "eigen_smooth": args.eigen_smooth,
        "channels_last": args.channels_last,
        "autocast": args.autocast,
    }
    if "," in layer:  # several layers: maps normalised, resampled to the input, fused
        from camkit.explainer import MultiLayerExplainer

        explainer = MultiLayerExplainer(model, layer, args.method, fusion=args.fusion, **options)
    else:
        explainer = Explainer(model, layer=layer, method=args.method, **options)
    size = info.input_size if args.size is None else args.size
    size = None if size == 0 else size
    if args.class_ids is not None:
        for class_id in args.class_ids:
            if not 0 <= class_id < info.num_classes:
                raise CLIError(
                    f"--class {class_id} is out of range: the model has {info.num_classes} "
                    f"classes (0–{info.num_classes - 1})"
                )
    stride = explainer.stride
    paths = [Path(p) for p in args.images]
    if args.mask is not None and len(paths) != 1:
        raise CLIError(
            "--mask goes with one image; for several use --segmenter or `camkit compare DIR --masks`"
        )
    if args.mask is not None and args.segmenter is not None:
        raise CLIError("pass --mask or --segmenter, not both")
    segmenter = None
    if args.segmenter is not None:
        from camkit.models.segmenter import load_segmenter

        segmenter = load_segmenter(args.segmenter)
    stems = _unique_stems(paths)
    failures = 0
    loaded = []
    for path, stem in zip(paths, stems):
        try:
            image = read_image(path)
            height, width = image.shape[:2]
            if height < stride or width < stride:
                raise ValueError(
                    f"image {path} is {width}×{height} px, smaller than one cell of {layer} "
                    f"(output stride {stride}); its heatmap would carry no spatial information. "
                    f"Use an image of at least {stride}×{stride} px or an earlier layer"
                )
            loaded.append((path, stem, image))
        except (OSError, ValueError) as error:
            failures += 1
            print(f"camkit: error: {error}", file=sys.stderr)
    groups: dict[tuple, list] = {}
    for item in loaded:
        key = item[2].shape[:2] if size is None else ("fixed",)
        groups.setdefault(key, []).append(item)
    records = []
    topn = min(5, info.num_classes)
    for items in groups.values():
        for start in range(0, len(items), args.batch_size):
            chunk = items[start : start + args.batch_size]
            batch = preprocess([image for _, _, image in chunk], size, info.mean, info.std)
            count = len(chunk)
            if args.class_ids is not None:
                targets = [list(args.class_ids)] * count
            elif args.all_classes:
                targets = "all"
            else:
                targets = f"top-{min(args.topk or 1, info.num_classes)}"
            if args.aug_smooth:
                from camkit.explainer import augmentation_smoothed

                heatmaps = augmentation_smoothed(explainer, batch, targets).cpu()
            else:
                heatmaps = explainer(batch, targets).cpu()
            probabilities = heatmaps.logits.softmax(dim=1)
            for index, (path, stem, image) in enumerate(chunk):
                top = probabilities[index].topk(topn)
                predictions = [
                    {"class_id": int(c), "name": info.class_name(int(c)), "probability": float(p)}
                    for p, c in zip(top.values, top.indices)
                ]
                order = torch.argsort(heatmaps.scores[index], descending=True)[:8]
                shown = order if args.all_classes else torch.arange(heatmaps.class_ids.shape[1])
                maps = upsample(heatmaps.maps[index, shown], image.shape[:2]).numpy()
                titles = [
                    f"{info.class_name(int(heatmaps.class_ids[index, k]))} "
                    f"p={float(heatmaps.probabilities[index, k]):.2f}"
                    for k in shown
                ]
                mask, mask_metrics = None, None
                if args.mask is not None or segmenter is not None:
                    from camkit.metrics.localisation import heatmap_metrics
                    from camkit.pipeline.masks import load_mask

                    mask = load_mask(image, args.mask, segmenter, image_path=path)
                    mask_metrics = heatmap_metrics(maps[0], mask)
                    titles[0] = (
                        f"{titles[0]} PG={mask_metrics['pointing_game']} E={mask_metrics['energy_in_mask'] or 0:.2f}"
                    )
                panel_path = args.out / f"{stem}.{args.method}.png"
                save_image(
                    panel_path,
                    panel(
                        image,
                        list(maps),
                        titles,
                        args.alpha,
                        args.colormap,
                        mask=mask,
                        image_title=f"{stem} ({layer}, {args.method})",
                    ),
                )
                record = {
                    "image": str(path),
                    "layer": layer,
                    "method": args.method,
                    "path": heatmaps.path,
                    "smoothing": heatmaps.extra.get("smoothing"),
                    "autocast": heatmaps.extra.get("autocast"),
                    "weights": info.weights,
                    "predictions": predictions,
                    "targets": [
                        {
                            "class_id": int(heatmaps.class_ids[index, k]),
                            "name": info.class_name(int(heatmaps.class_ids[index, k])),
                            "score": float(heatmaps.scores[index, k]),
                            "probability": float(heatmaps.probabilities[index, k]),
                        }
                        for k in range(heatmaps.class_ids.shape[1])
                    ][:50],
                    "panel": str(panel_path),
                }
                if mask_metrics is not None:
                    record["mask_metrics"] = mask_metrics
                if args.save_raw:
                    buffer = io.BytesIO()
                    np.savez_compressed(
                        buffer,
                        maps=heatmaps.maps[index].numpy().astype(np.float32),
                        class_ids=heatmaps.class_ids[index].numpy(),
                        scores=heatmaps.scores[index].numpy(),
                        probabilities=heatmaps.probabilities[index].numpy(),
                        layer=np.array(layer),
                        method=np.array(args.method),
                        path=np.array(heatmaps.path),
                        input_size=np.array(heatmaps.input_size),
                        image_size=np.array(image.shape[:2]),
                    )
                    raw_path = args.out / f"{stem}.{args.method}.npz"
                    atomic_write_bytes(raw_path, buffer.getvalue())
                    record["raw"] = str(raw_path)
                records.append(record)
                if not args.json:
                    best = ", ".join(f"{p['name']} {p['probability']:.3f}" for p in predictions)
                    print(f"{path}: {best}")
                    print(f"  {layer} {args.method} [{heatmaps.path}] → {panel_path}")
                    if mask_metrics is not None:
                        shown = ("pointing_game", "energy_in_mask", "iou@0.2", "pxap")
                        print(
                            "  vs mask: "
                            + ", ".join(
                                f"{k} {'n/a' if mask_metrics[k] is None else format(mask_metrics[k], '.3f')}"
                                for k in shown
                            )
                        )
    if args.json:
        print(json.dumps(records, indent=1))
    if failures:
        print(f"camkit: {failures} of {len(paths)} images failed", file=sys.stderr)
    return 1 if failures else 0


def _cmd_demo(args) -> int:
    from camkit.demo import DemoConfig, run_demo

    config = DemoConfig(
        out=str(args.out),
        n_train=args.n_train,
        epochs=args.epochs,
        size=args.size,
        segmenter=not args.no_segmenter,
        compare_seed=args.compare_seed,
    )
    summary = run_demo(config, quiet=args.json)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    training = summary["training"]
    print(
        f"classifier: validation accuracy {training['val_accuracy']:.3f} ({training['origin']}, {training['epochs']} epoch, {training['n_train']} images at {training['size']} px)"
    )
    print(
        f"{'Grad-CAM at layer4.2':<26} {'map':>5} {'accuracy':>9} {'pointing':>9} {'energy':>7} {'2-object':>9}"
    )
    for name, row in summary["localisation"].items():
        shape = f"{row['map_size'][0]}×{row['map_size'][1]}"
        print(
            f"{name:<26} {shape:>5} {row['accuracy']:9.3f} {row['pointing_game']:9.3f} {row['energy_in_mask']:7.3f} {row['two_object_own_max']:9.3f}"
        )
    for name, row in summary.get("segmentation", {}).items():
        print(
            f"ResUNet {name:<20} trained on {row['train_images']:>4} images: IoU {row['iou']:.3f} "
            f"(data set {row['iou_dataset']:.3f}), Dice {row['dice']:.3f} on {row['images']} held-out images"
        )
    print(f"report: {summary['report']}  ({summary['seconds']:.0f} s)")
    return 0


def _cmd_data(args) -> int:
    from camkit.data.shapes import write_dataset

    root = write_dataset(
        args.out,
        args.n,
        args.size,
        args.seed,
        args.difficulty,
        args.objects,
        progress=sys.stderr.isatty(),
    )
    print(f"wrote {args.n} images and masks to {root}")
    return 0


def _cmd_train(args) -> int:
    from camkit.training.classifier import TrainConfig, train_classifier

    config = TrainConfig(
        epochs=args.epochs,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        pretrained=args.pretrained,
    )
    metrics = train_classifier(
        args.data, args.out, config, val_data=args.val, resume=args.resume, device=args.device
    )
    print(
        f"epoch {metrics.get('epoch')}: validation accuracy {metrics.get('val_accuracy', float('nan')):.3f}, loss {metrics.get('val_loss', float('nan')):.3f} → {args.out}"
    )
    return 0


def _cmd_variant(args) -> int:
    from camkit.training.classifier import TrainConfig
    from camkit.training.variants import make_variant

    config = TrainConfig(batch_size=args.batch_size, lr=args.lr, workers=args.workers)
    from camkit.models.resnet import load_classifier

    _, info = load_classifier(args.parent)
    config.size = info.input_size
    report = make_variant(
        args.parent,
        args.channels,
        args.data,
        args.out,
        args.epochs,
        args.train_all,
        args.val,
        config,
    )
    before = report.before
    print(
        f"surgery {info.channels}→{report.channels} channels (kept {report.kept} of the parent's): "
        f"max |Δlogit| {before['max_abs_logit_diff']:.3g}, mean relative {before['mean_relative_logit_diff']:.3g}, "
        f"accuracy {before['variant_accuracy']:.3f} vs parent {before['parent_accuracy']:.3f} "
        f"(same prediction on {before['prediction_agreement']:.1%} of {before['count']} images)"
    )
    if args.epochs:
        print(
            f"after {args.epochs} epoch(s) of fine-tuning: validation accuracy {report.after['val_accuracy']:.3f} → {report.checkpoint}"
        )
    else:
        print(f"saved without training → {report.checkpoint}")
    return 0


def _cmd_variants(args) -> int:
    from camkit.pipeline.variants import compare_variants

    result = compare_variants(
        [str(c) for c in args.checkpoints], args.data, args.out, args.n, args.output_stride
    )
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{'variant':<32} {'accuracy':>9} {'pointing':>9} {'energy':>7}   (Grad-CAM layer4.2, output stride {result['output_stride']})"
    )
    for row in result["variants"]:
        print(
            f"{row['variant']:<32} {row['accuracy']:9.3f} {row['pointing_game']:9.3f} {row['energy_in_mask']:7.3f}"
        )
    for row in result["agreement"]:
        values = list(row.values())
        print(f"{row['a']} vs {row['b']}: Spearman {values[2]:.3f}, {list(row)[3]} {values[3]:.3f}")
    print(f"tables and figure: {result['out']}")
    return 0


def _cmd_train_seg(args) -> int:
    from camkit.training.segmenter import SegConfig, train_segmenter

    encoder = None if args.encoder in (None, "none") else args.encoder
    config = SegConfig(
        arch=args.arch,
        classes=args.classes,
        epochs=args.epochs,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        deep_supervision=not args.no_deep_supervision,
        encoder=encoder,
        limit=args.limit,
        workers=args.workers,
    )
    metrics = train_segmenter(
        args.data, args.out, config, val_data=args.val, resume=args.resume, device=args.device
    )
    print(
        f"epoch {metrics['epoch']}: validation IoU {metrics['val_iou']:.3f} (data set {metrics['val_iou_dataset']:.3f}), "
        f"Dice {metrics['val_dice']:.3f} (data set {metrics['val_dice_dataset']:.3f}) → {args.out}"
    )
    return 0


def _cmd_segment(args) -> int:
    import io

    import cv2
    import numpy as np

    from camkit.data.images import read_image
    from camkit.io.files import atomic_write_bytes
    from camkit.models.segmenter import load_segmenter
    from camkit.pipeline.masks import predict_masks
    from camkit.viz.overlay import draw_contours, hstack, save_image

    if not 0.0 < args.threshold < 1.0:
        raise CLIError(f"--threshold must be in (0, 1), got {args.threshold}")
    model, info = load_segmenter(args.weights)
    model.to(_device(args.device))
    paths = [Path(p) for p in args.images]
    failures = 0
    for path, stem in zip(paths, _unique_stems(paths)):
        try:
            image = read_image(path)
        except (OSError, ValueError) as error:
            failures += 1
            print(f"camkit: error: {error}", file=sys.stderr)
            continue
        mask, probabilities = predict_masks(model, info, [image], args.threshold)[0]
        binary = int(info["classes"]) == 1
        # single-channel PNG: 0/255 for binary masks (visible; read back as > 0), else class ids
        ok, encoded = cv2.imencode(".png", (mask * (255 if binary else 1)).astype(np.uint8))
        if not ok:
            raise CLIError(f"cannot encode the mask of {path}")
        atomic_write_bytes(args.out / f"{stem}.mask.png", encoded.tobytes())
        tint = image.copy()
        tint[mask > 0] = (0.5 * tint[mask > 0] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
        save_image(
            args.out / f"{stem}.overlay.png",
            hstack([image, draw_contours(tint, mask > 0, (255, 255, 0))]),
        )
        line = (
            f"{path}: foreground {float((mask > 0).mean()):.1%} → {args.out / (stem + '.mask.png')}"
        )
        if args.probabilities:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, probabilities=probabilities.astype(np.float16))
            atomic_write_bytes(args.out / f"{stem}.prob.npz", buffer.getvalue())
        print(line)
    if failures:
        print(f"camkit: {failures} of {len(paths)} images failed", file=sys.stderr)
    return 1 if failures else 0


def _cmd_compare(args) -> int:
    from camkit.core.layers import default_layer
    from camkit.data.folders import find_images, match_masks
    from camkit.io.tables import write_csv
    from camkit.pipeline.compare import Comparer
    from camkit.viz.overlay import comparison_panel, save_image

    if not args.input.exists():
        raise FileNotFoundError(f"{args.input} does not exist")
    if args.input.is_dir() and args.mask is not None:
        raise CLIError("--mask is for one image; for a folder pass --masks DIR or --segmenter")
    if args.input.is_file() and args.masks is not None:
        raise CLIError("--masks is for a folder; for one image pass --mask FILE or --segmenter")
    model, info = _load(args)
    if args.class_id is not None and not 0 <= args.class_id < info.num_classes:
        raise CLIError(
            f"--class {args.class_id} is out of range: the model has {info.num_classes} classes "
            f"(0–{info.num_classes - 1})"
        )
    segmenter = None
    if args.segmenter is not None:
        from camkit.models.segmenter import load_segmenter

        segmenter = load_segmenter(args.segmenter)
    layer = args.layer or default_layer(model)
    comparer = Comparer(
        model,
        info,
        layer,
        args.method,
        args.output_stride,
        segmenter,
        args.tolerance,
        args.resize_mask,
        args.size,
    )
    if args.input.is_dir():
        images = find_images(args.input)
        if not images:
            raise CLIError(f"no images under {args.input}")
        masks: list = [None] * len(images)
        if args.masks is not None:
            found = match_masks(images, args.input, args.masks)
            if not found:
                raise CLIError(
                    f"no mask in {args.masks} matches an image in {args.input} (same relative path and stem)"
                )
            masks = [found.get(p) for p in images]
            missing = [p for p, m in zip(images, masks) if m is None]
            if missing:
                raise CLIError(
                    f"{len(missing)} images have no mask in {args.masks}: "
                    + ", ".join(str(p) for p in missing[:5])
                )
    else:
        images, masks = [args.input], [args.mask]
    limit = args.panels if args.panels is not None else (16 if args.input.is_dir() else 1)
    records, written = [], 0
    progress = sys.stderr.isatty() and len(images) > 1
    for record, image, heatmap, mask in comparer.compare(
        images, masks, args.class_id, progress=progress
    ):
        records.append(record)
        if "error" in record:
            print(f"camkit: error: {record['error']}", file=sys.stderr)
            continue
        if written < limit:
            written += 1
            stem = Path(record["image"]).stem
            title = f"{args.method} {layer}: {record['class_name']}"
            keys = (
                "pointing_game",
                "energy_in_mask",
                "iou@0.2",
                "iou_otsu",
                "auc",
                "pxap",
                "rank_accuracy",
            )
            panel_image = comparison_panel(
                image, heatmap, mask, {k: record[k] for k in keys}, title
            )
            save_image(args.out / "panels" / f"{stem}.compare.png", panel_image)
    good = [r for r in records if "error" not in r]
    failures = len(records) - len(good)
    summary = Comparer.summary(good)
    write_csv(args.out / "metrics.csv", records)
    if summary:
        write_csv(args.out / "summary.csv", summary)
    if args.json:
        print(json.dumps({"images": records, "summary": summary}, indent=1))
    elif len(images) == 1 and good:
        record = good[0]
        print(
            f"{record['image']}: {record['class_name']} p={record['probability']:.3f} ({layer}, {args.method})"
        )
        for key, value in record.items():
            if key not in ("image", "class_id", "class_name", "probability"):
                print(f"  {key:<16} {'n/a' if value is None else format(value, '.4f')}")
        print(f"panel: {args.out / 'panels' / (Path(record['image']).stem + '.compare.png')}")
    elif summary:
        print(f"{'metric':<16} {'n':>5} {'mean':>8} {'median':>8}  95% bootstrap CI of the mean")
        for row in summary:
            if row["mean"] is not None:
                print(
                    f"{row['metric']:<16} {row['n']:>5} {row['mean']:8.4f} {row['median']:8.4f}  "
                    f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]"
                )
        print(f"per image: {args.out / 'metrics.csv'}; summary: {args.out / 'summary.csv'}")
    if failures:
        print(f"camkit: {failures} of {len(records)} images failed", file=sys.stderr)
    return 1 if failures else 0


def _cmd_evaluate(args) -> int:
    from camkit.core.layers import default_layer
    from camkit.explainer import METHODS
    from camkit.io.tables import write_csv
    from camkit.pipeline.evaluate import evaluate_methods

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS or m in ("cam", "fcn")]
    if unknown or not methods:
        raise CLIError(
            f"--methods: unknown {unknown}; choose from {', '.join(m for m in METHODS if m not in ('cam', 'fcn'))}"
        )
    model, info = _load(args)
    rows = evaluate_methods(
        model,
        info,
        args.data,
        methods,
        args.layer or default_layer(model),
        args.n,
        args.output_stride,
        args.steps,
        args.baseline,
        score_channels=args.score_channels,
    )
    write_csv(args.out / "methods.csv", rows)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        f"{'method':<12} {'ms/img':>8} {'pointing':>9} {'energy':>7} {'deletion':>9} {'insertion':>10} {'avg drop':>9} {'increase':>9}"
    )
    for row in rows:

        def show(value, width, spec=".3f"):
            return f"{'n/a':>{width}}" if value is None else f"{value:{width}{spec}}"

        print(
            f"{row['method']:<12} {row['ms_per_image']:8.1f} {show(row['pointing_game'], 9)} "
            f"{show(row['energy_in_mask'], 7)} {row['deletion_auc']:9.3f} {row['insertion_auc']:10.3f} "
            f"{row['average_drop']:9.1f} {row['increase_in_confidence']:9.1f}"
        )
    print(f"{len(rows)} methods on {rows[0]['images']} images → {args.out / 'methods.csv'}")
    return 0


def _cmd_export(args) -> int:
    import os

    from camkit import export as ex

    if args.merge is not None:
        counts = ex.merge(args.merge)
        print(
            f"merged {counts['images']} images ({counts['failed']} failed) → "
            f"{args.merge / 'index.html'}"
        )
        return 3 if counts["failed"] else 0
    if args.input is None:
        raise CLIError("pass the images (a folder, a glob or a list file), or --merge OUT")
    torchrun = ex.torchrun_shard()
    shard = ex.parse_shard(args.shard) if args.shard else (torchrun or (0, 1))
    if args.device is None and torchrun is not None:
        import torch

        if torch.cuda.is_available():
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    inputs = ex.collect_inputs(args.input)
    model, info = _load(args)
    segmenter = None
    if args.segmenter is not None:
        from camkit.models.segmenter import load_segmenter

        seg_model, seg_info = load_segmenter(args.segmenter)
        seg_info["path"] = ex._describe_model(str(args.segmenter), "resunet")
        segmenter = (seg_model.to(next(model.parameters()).device), seg_info)
    from camkit.core.layers import default_layer

    if args.class_ids is not None:
        targets = list(args.class_ids)
    elif args.all_classes:
        targets = "all"
    elif args.topk:
        targets = f"top-{min(args.topk, info.num_classes)}"
    else:
        targets = None
    config = ex.ExportConfig(
        layer=args.layer or default_layer(model),
        method=args.method,
        targets=targets,
        size=args.size or info.input_size,
        batch_size=args.batch_size,
        workers=min(4, os.cpu_count() or 1) if args.workers is None else args.workers,
        formats=formats,
        output_stride=args.output_stride,
        eigen_smooth=args.eigen_smooth,
        channels_last=args.channels_last,
        autocast=args.autocast,
        alpha=args.alpha,
        colormap=args.colormap,
        max_side=args.max_side,
        masks=args.masks,
        resize_mask=args.resize_mask,
        overwrite=args.overwrite,
        retry_errors=args.retry_errors,
        shard=shard,
    )
    model_id = ex._describe_model(args.weights, args.model)
    try:
        counts = ex.export(model, info, inputs, args.out, config, segmenter, model_id)
    except KeyboardInterrupt:
        print(
            f"camkit: interrupted; finished images are kept in {args.out} — rerun the same "
            "command to resume",
            file=sys.stderr,
        )
        return 130
    print(
        f"shard {shard[0]}/{shard[1]}: {counts['done']} exported, {counts['skipped']} already "
        f"done, {counts['failed']} failed of {counts['total']}"
    )
    if shard[1] == 1:
        merged = ex.merge(args.out)
        print(f"{merged['images']} images, {merged['failed']} failed → {args.out / 'index.html'}")
        return 3 if merged["failed"] else 0
    if torchrun is not None and _torchrun_barrier():
        if shard[0] == 0:
            merged = ex.merge(args.out)
            print(f"merged {merged['images']} images → {args.out / 'index.html'}")
            return 3 if merged["failed"] else 0
    else:
        print(f"when every shard is done: camkit export --merge {args.out}")
    mine = [r for r in ex.current_records(args.out) if r.get("shard") == f"{shard[0]}of{shard[1]}"]
    return 3 if any(r["status"] != "ok" for r in mine) else 0


def _torchrun_barrier() -> bool:
    """Wait for every torchrun rank (gloo, no GPU needed); False where that is not possible."""
    import datetime
    import os

    import torch.distributed as dist

    if not dist.is_available() or "MASTER_ADDR" not in os.environ:
        return False
    dist.init_process_group("gloo", timeout=datetime.timedelta(hours=12))
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s"
    )
    from camkit.models.resnet import WeightsUnavailableError

    handlers = {
        "explain": _cmd_explain,
        "layers": _cmd_layers,
        "demo": _cmd_demo,
        "data": _cmd_data,
        "train": _cmd_train,
        "variant": _cmd_variant,
        "variants": _cmd_variants,
        "train-seg": _cmd_train_seg,
        "segment": _cmd_segment,
        "compare": _cmd_compare,
        "evaluate": _cmd_evaluate,
        "export": _cmd_export,
    }
    try:
        return handlers[args.command](args)
    except (CLIError, OSError, ValueError, TypeError, WeightsUnavailableError) as error:
        if args.debug:
            raise
        print(f"camkit: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("camkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
