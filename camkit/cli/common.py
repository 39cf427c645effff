"""What several commands do with their parsed options: load the model, resolve targets."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = [
    "CLIError",
    "check_class_ids",
    "check_model",
    "data_folder",
    "device",
    "load_model",
    "load_segmenter",
    "note",
    "pipeline_settings",
    "targets",
    "unique_stems",
]


DEFAULT_MODEL = "resnet50"
BUILT_IN_WEIGHTS = ("imagenet", "default", "none", "random")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def device(name: str | None):
    """``--device``: the named device, else cuda where available, else cpu."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise CLIError(f"--device {name!r} is not a device; use cpu or cuda") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: CUDA is not available here; use --device cpu")
    return chosen


def load_model(args, weights: str | None = None):
    """The classifier of ``--weights`` / ``--model`` on ``--device``, with its ``ModelInfo``."""
    from camkit.models.resnet import load_classifier

    weights = args.weights if weights is None else weights
    model, info = load_classifier(weights, arch=args.model or DEFAULT_MODEL)
    check_model(args.model, weights, info)
    if info.random:
        note(
            f"weights are random (--weights {weights}): the heatmaps show camkit "
            "working, not what a trained model looks at"
        )
    for warning in info.warnings:  # what its training warned about, e.g. it learned nothing
        note(f"--weights {weights}: {warning}")
    return model.to(device(args.device)), info


def check_model(given: str | None, weights, info) -> None:
    """A ``--model`` given with a checkpoint of another architecture is an error, not ignored."""
    if given is not None and info.arch != given and str(weights).lower() not in BUILT_IN_WEIGHTS:
        raise CLIError(
            f"--model {given} does not match --weights {weights}, which holds a {info.arch}; "
            "drop --model (a camkit checkpoint names its own architecture)"
        )


def load_segmenter(path: Path, model):
    """The segmenter of ``--segmenter``, on the classifier's device (as in every command)."""
    from camkit.models.segmenter import load_segmenter as load

    segmenter, info = load(path)
    return segmenter.to(next(model.parameters()).device), info


def check_class_ids(class_ids, info) -> None:
    for class_id in class_ids or ():
        if not 0 <= class_id < info.num_classes:
            raise CLIError(
                f"--class {class_id} is out of range: the model has {info.num_classes} "
                f"classes (0–{info.num_classes - 1})"
            )


def targets(args, info):
    """``--class`` / ``--topk`` / ``--all-classes`` as Explainer targets (``None``: the top class)."""
    if args.class_ids is not None:
        check_class_ids(args.class_ids, info)
        return list(args.class_ids)
    if getattr(args, "all_classes", False):
        return "all"
    if getattr(args, "topk", None):
        return f"top-{min(args.topk, info.num_classes)}"
    return None


def data_folder(args) -> Path:
    """The data folder given as ``DIR`` or ``--data DIR`` (one of them, or both the same)."""
    positional, option = args.data_folder, args.data
    if positional is not None and option is not None and positional != option:
        raise CLIError(
            f"two data folders: {positional} and --data {option}; pass one (DIR or --data DIR)"
        )
    folder = positional if positional is not None else option
    if folder is None:
        raise CLIError(f"pass the data folder: camkit {args.command} DIR (or --data DIR)")
    return folder


def unique_stems(paths: list[Path]) -> list[str]:
    """File stems, numbered where they repeat (``a``, ``a-2``) so outputs never overwrite."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.stem or "image"
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f"{stem}-{count + 1}")
    return stems


def pipeline_settings(args, info):
    """The pipeline's ``Settings`` from the options a command declared (the others keep the
    library's defaults); ``--fusion`` needs several layers."""
    from camkit.pipeline.settings import Settings

    layer = getattr(args, "layer", None)
    fusion = getattr(args, "fusion", None)
    if fusion is not None and "," not in (layer or ""):
        raise CLIError(
            "--fusion needs several layers: --layer layer4.2,layer3.5"
            + (f" (got --layer {layer})" if layer else "")
        )
    defaults = Settings()
    from camkit.cli.options import SPEED_OPTIONS

    names = ("method", "batch_size", *(n for n in SPEED_OPTIONS if n != "fusion"))
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return Settings(
        layer=layer,
        targets=targets(args, info) if hasattr(args, "class_ids") else defaults.targets,
        size=getattr(args, "size", None),
        fusion=fusion,
        **given,
    )
