"""Training a ResNet-50 classifier on a folder data set or a generated stream (from ImageNet
weights when they are cached locally, else from scratch), with progress, validation, atomic
checkpoints, resume, and a warning when it learned nothing.

Two recipes (:data:`RECIPES`), picked by where the weights start (``TrainConfig.recipe``):

* ``scratch`` learns shape, not colour, on 2 CPU cores: 96 px, batch 32, a short warm-up
  (5 %) then cosine decay, random resized crop + flips + quarter turns + colour shuffle
  (:class:`camkit.training.augment.Augmentation`), softmax cross-entropy (``loss="ce"``;
  ``"bce"``: a sigmoid per class, :mod:`camkit.training.losses`) with label smoothing 0.1,
  zero-init residual blocks, bfloat16 autocast where the CPU has bfloat16 units (2.2× the
  images/s of float32 on an AVX-512 BF16 / AMX CPU; float32 on an AVX2 one, which emulates
  bfloat16 26× slower: :func:`camkit.training.loop.native_bf16`) and channels-last. It
  reaches ≥ 0.95 on the hard shapes (random colours) in under 10 minutes on a bfloat16 CPU,
  in ~26 on an AVX2 one (``benchmarks/results/training-cpu.json``).
* ``finetune`` (ImageNet weights, or a given model): 128 px, batch 16, the one-cycle
  schedule's 25 % warm-up that protects pretrained weights, flips only, bfloat16 (as above)
  and channels-last.

Every field of a recipe can be overridden in :class:`TrainConfig`; the resolved settings are
recorded in the checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from camkit.data.folders import ClassificationFolder
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD, resnet50_variant
from camkit.models.weights import imagenet_weights_cached
from camkit.training.augment import Augmentation
from camkit.training.chance import learned_nothing
from camkit.training.loop import (
    adamw,
    evaluate_classifier,
    memory_format,
    native_bf16,
    report_epoch,
    seeded_split,
    train_epoch,
)
from camkit.training.losses import LOSSES, classification_loss
from camkit.training.resume import (
    discard_resume,
    restore,
    save_epoch,
    starting_state,
)
from camkit.training.schedule import OneCycle

__all__ = ["RECIPES", "WARMUP", "Recipe", "TrainConfig", "resolve_config", "train_classifier"]

log = logging.getLogger(__name__)

WARMUP = 0.25  # the share of the one-cycle schedule spent warming up when fine-tuning


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: the defaults of a :class:`TrainConfig` left at ``None``."""

    name: str
    size: int
    batch_size: int
    warmup: float  # share of the one-cycle schedule spent warming up
    label_smoothing: float
    loss: str  # camkit.training.losses: "ce" (softmax) or "bce" (a sigmoid per class)
    augmentation: Augmentation  # what ``augment=True`` applies to each training image
    bf16: bool | None  # bfloat16 autocast; None: where the device has bfloat16 units
    channels_last: bool


RECIPES = {
    "scratch": Recipe("scratch", 96, 32, 0.05, 0.1, "ce", Augmentation(), None, True),
    "finetune": Recipe(
        "finetune",
        128,
        16,
        WARMUP,
        0.0,
        "ce",
        Augmentation(scale=(1.0, 1.0), rotate=False, colour=False),  # flips
        None,
        True,
    ),
}


@dataclass
class TrainConfig:
    """Settings of ``train_classifier`` (recorded in the checkpoint, resolved).

    ``recipe``: ``"auto"`` (``scratch`` when the weights start random, else ``finetune``) or
    a name in :data:`RECIPES`; the fields left at ``None`` take the recipe's values.
    """

    epochs: int = 1
    size: int | None = None
    batch_size: int | None = None
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.15
    seed: int = 0
    workers: int = 1
    pretrained: str = "auto"  # "auto": ImageNet weights if cached locally; "imagenet"; "none"
    recipe: str = "auto"
    warmup: float | None = None
    label_smoothing: float | None = None
    loss: str | None = None
    augment: bool | None = None
    bf16: bool | None = None
    channels_last: bool | None = None
    extra: dict = field(default_factory=dict)


def resolve_config(
    config: TrainConfig, model_given: bool = False, device: torch.device | str = "cpu"
) -> TrainConfig:
    """``config`` with its recipe named and every ``None`` field set from that recipe (bfloat16
    autocast where the recipe leaves it to the hardware: where ``device`` runs it natively)."""
    name = config.recipe
    if name == "auto":
        from_imagenet = config.pretrained == "imagenet" or (
            config.pretrained == "auto" and imagenet_weights_cached() is not None
        )
        name = "finetune" if model_given or from_imagenet else "scratch"
    if name not in RECIPES:
        raise ValueError(f"recipe must be 'auto' or one of {sorted(RECIPES)}, got {name!r}")
    if config.loss not in (None, *LOSSES):
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    if config.label_smoothing is not None and not 0.0 <= config.label_smoothing < 1.0:
        raise ValueError(
            f"label smoothing must be in [0, 1), got {config.label_smoothing!r}; the recipe "
            "uses 0.1 (--label-smoothing 0.1), 0 turns it off"
        )
    if not config.lr > 0:
        raise ValueError(f"the learning rate must be positive, got {config.lr!r} (--lr 2e-3)")
    recipe = RECIPES[name]
    defaults = {
        "size": recipe.size,
        "batch_size": recipe.batch_size,
        "warmup": recipe.warmup,
        "label_smoothing": recipe.label_smoothing,
        "loss": recipe.loss,
        "augment": True,
        "bf16": native_bf16(device) if recipe.bf16 is None else recipe.bf16,
        "channels_last": recipe.channels_last,
    }
    chosen = {k: v for k, v in defaults.items() if getattr(config, k) is None}
    return replace(config, recipe=name, **chosen)


def _augmentation(config: TrainConfig) -> Augmentation | None:
    return RECIPES[config.recipe].augmentation if config.augment else None


def _initial_model(num_classes: int, pretrained: str) -> tuple[nn.Module, str]:
    cached = imagenet_weights_cached() if pretrained in ("auto", "imagenet") else None
    if pretrained == "imagenet" and cached is None:
        raise FileNotFoundError(
            "pretrained='imagenet' but the ResNet-50 ImageNet weights are not in the torch cache; "
            "use pretrained='none' (from scratch) or copy the file into the cache"
        )
    if cached is not None:
        model = resnet50_variant(2048, 1000)
        model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
        model.fc = nn.Linear(2048, num_classes)
        return model, f"imagenet ({cached.name})"
    # From scratch: zero-init the last BN of each block so every residual block starts as the
    # identity; this is what makes one epoch enough on the easy shapes.
    return resnet50_variant(2048, num_classes, zero_init_residual=True), "scratch"


def _source(data, config: TrainConfig, augment, class_names=None):
    """A data set of ``data``: a folder path (``images/<class>/*``) or a data set with
    ``class_names`` and, like :class:`camkit.data.shapes.ShapeStream`, ``with_input(size,
    augment)`` (resized to ``config.size`` and augmented here; otherwise used as it is)."""
    if isinstance(data, (str, os.PathLike)):
        return ClassificationFolder(
            data, config.size, augment=augment or False, class_names=class_names
        )
    if not hasattr(data, "class_names"):
        raise TypeError(
            f"data must be a folder path or a data set with class_names, got {type(data).__name__}"
        )
    if class_names is not None and list(data.class_names) != list(class_names):
        raise ValueError(f"data has classes {list(data.class_names)}, expected {list(class_names)}")
    return data.with_input(config.size, augment) if hasattr(data, "with_input") else data


def _loaders(data, val_data, config: TrainConfig, class_names=None):
    train_set = _source(data, config, _augmentation(config), class_names)
    if len(train_set.class_names) < 2:  # right every time, and nothing learned
        raise ValueError(
            f"{data} has one class ({', '.join(train_set.class_names)}): a classifier needs at "
            "least two; add a folder of images per class (images/<class>/*)"
        )
    if val_data is not None:
        val_set = _source(val_data, config, None, train_set.class_names)
        train_view: torch.utils.data.Dataset = train_set
    else:
        val_index, train_index = seeded_split(len(train_set), config.val_fraction, config.seed)
        val_plain = _source(data, config, None, train_set.class_names)
        val_set, train_view = Subset(val_plain, val_index), Subset(train_set, train_index)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_view,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.workers,
        generator=generator,
        persistent_workers=False,
    )
    val_loader = DataLoader(val_set, batch_size=64, num_workers=config.workers)
    return train_set.class_names, train_loader, val_loader


def _network(
    model: nn.Module | None, classes: int, config: TrainConfig, metadata: dict | None, data
) -> tuple[nn.Module, str]:
    """The network to train and where it came from."""
    if model is None:
        return _initial_model(classes, config.pretrained)
    if model.fc.out_features != classes:
        raise ValueError(f"the model has {model.fc.out_features} classes but {data} has {classes}")
    return model, (metadata or {}).get("origin", "given model")


def _trainable(model: nn.Module, train_only: Sequence[str] | None) -> tuple[list, list]:
    """(parameters to train, BatchNorm layers to keep in eval mode): every parameter that
    requires a gradient, or only those under the ``train_only`` prefixes (the other modules
    frozen, their BatchNorm statistics too)."""
    frozen_norms: list[nn.Module] = []
    if train_only:
        prefixes = tuple(train_only)

        def trainable(name: str) -> bool:
            return any(name == p or name.startswith(p + ".") for p in prefixes)

        for name, parameter in model.named_parameters():
            parameter.requires_grad_(trainable(name))
        frozen_norms = [
            m
            for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not trainable(n)
        ]
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"train_only={list(train_only or [])} matches no parameters")
    return parameters, frozen_norms


def _schedule(optimizer, config: TrainConfig, train_loader: DataLoader) -> OneCycle:
    if len(train_loader) == 0:
        raise ValueError(
            f"no training batches: {len(train_loader.dataset)} training images for batch size "
            f"{config.batch_size}; add images or lower --batch-size"
        )
    return OneCycle(optimizer, config.lr, config.epochs * len(train_loader), config.warmup)


def _evaluate(model, val_loader, device, classes: int, config) -> tuple[dict, str | None]:
    """Validation metrics and the warning when they are no better than guessing."""
    validation = evaluate_classifier(
        model, val_loader, device, bf16=config.bf16, channels_last=config.channels_last
    )
    warning = learned_nothing(
        validation["accuracy"], validation["loss"], classes, validation["count"]
    )
    return validation, warning


def _epoch_metrics(
    epoch: int,
    loss_ema: float,
    images_per_s: float,
    train_images: int,
    validation: dict,
    warning: str | None,
) -> dict:
    """One epoch's entry of the checkpoint's history."""
    return {
        "epoch": epoch + 1,
        "train_loss": loss_ema,
        "val_accuracy": validation["accuracy"],
        "val_loss": validation["loss"],
        "val_count": validation["count"],
        "images_per_s": images_per_s,
        "train_images": train_images,
        "learned_nothing": warning is not None,
    }


def _epoch_line(metrics: dict) -> list[str]:
    """The parts of an epoch's progress line."""
    return [
        f"train loss {metrics['train_loss']:.3f}",
        f"val accuracy {metrics['val_accuracy']:.3f}",
        f"val loss {metrics['val_loss']:.3f}",
        f"{metrics['images_per_s']:.1f} img/s",
    ]


def _save(
    out: Path,
    model: nn.Module,
    config: TrainConfig,
    class_names: Sequence[str],
    history: list[dict],
    warning: str | None,
    origin: str,
    metadata: dict | None,
    optimizer,
    schedule,
) -> None:
    """The checkpoint after an epoch (what ``explain`` needs), then its resume file."""
    saved = {
        "arch": "resnet50",
        "channels": model.fc.in_features,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_size": config.size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "metrics": history[-1],
        "warnings": [warning] if warning else [],
        "history": history,
        "epoch": history[-1]["epoch"],
        "origin": origin,
        "config": {k: v for k, v in vars(config).items() if k != "extra"},
        **{k: v for k, v in (metadata or {}).items() if k != "origin"},
    }
    save_epoch(out, model, saved, optimizer, schedule)


def train_classifier(
    data,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
    val_data=None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    model: nn.Module | None = None,
    train_only: Sequence[str] | None = None,
    metadata: dict | None = None,
    keep_resume: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Train a ResNet-50 classifier on ``data`` and save a checkpoint.

    ``data`` / ``val_data``: a folder (``images/<class>/*``), or a data set with
    ``class_names`` such as a :class:`camkit.data.shapes.ShapeStream` of fresh generated shapes
    (one epoch of ``n`` images: a new image at every step). ``config`` picks a recipe
    (:data:`RECIPES`; ``scratch`` for random weights, ``finetune`` otherwise).

    AdamW with a one-cycle schedule; validation each epoch (on ``val_data`` or a seeded
    ``val_fraction`` split) and a line per epoch on the ``camkit.progress`` logger. After every
    epoch the checkpoint ``out`` (weights, class names, input size, normalisation, metrics:
    what ``explain`` needs) and its resume file ``out.resume`` (the same plus optimizer and
    schedule state, see :mod:`camkit.training.resume`) are written atomically, so
    ``resume=True`` continues an interrupted run from its last finished epoch (same schedule;
    the epoch count must match); on a run that has finished it trains nothing and returns its
    last metrics. The resume file is removed at the end unless ``keep_resume``. A run whose
    validation is no better than guessing (:func:`camkit.training.chance.learned_nothing`)
    logs one warning and records it in the checkpoint (``metrics["learned_nothing"]``,
    ``warnings``).

    ``on_epoch`` is called with each epoch's metrics after its checkpoint is written. ``model``
    starts from a given network (e.g. a channel variant) instead of a new ResNet-50;
    ``train_only`` lists module-name prefixes to train (others are frozen, their BatchNorm
    statistics too); ``metadata`` is added to the checkpoint. ``class_names``: the order of the
    model's outputs (a given ``model``'s own; a folder's classes are matched to it by name),
    instead of the folder's sorted order. Returns the final metrics.
    """
    out = Path(out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = resolve_config(config or TrainConfig(), model is not None, device)
    torch.manual_seed(config.seed)
    state, finished = starting_state(out, resume)
    if finished is not None:
        return finished
    class_names, train_loader, val_loader = _loaders(
        data,
        val_data,
        config,
        (state.get("class_names") if state else None) or class_names,
    )
    model, origin = _network(model, len(class_names), config, metadata, data)
    layout = memory_format(config.channels_last)
    model.to(device, memory_format=layout)
    parameters, frozen_norms = _trainable(model, train_only)
    optimizer = adamw(parameters, config.lr, config.weight_decay)
    schedule = _schedule(optimizer, config, train_loader)
    start_epoch, history = 0, []
    if state:
        start_epoch, history = restore(state, out, config.epochs, model, optimizer, schedule)
        origin = state.get("origin", origin)
    metrics: dict = history[-1] if history else {}
    warning = None

    def loss_of(batch):
        images = batch[0].to(device, memory_format=layout)
        labels = batch[1].to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=config.bf16):
            logits = model(images)
        loss = classification_loss(logits, labels, config.loss, config.label_smoothing)
        return loss, labels.shape[0]  # class indices, or probability rows (ShapeStream pairs)

    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        model.train()
        for norm in frozen_norms:  # frozen layers keep their running statistics
            norm.eval()
        desc = f"epoch {epoch + 1}/{config.epochs}"
        loss_ema, images_per_s = train_epoch(
            train_loader, loss_of, optimizer, schedule, desc, progress
        )
        validation, warning = _evaluate(model, val_loader, device, len(class_names), config)
        seen = len(train_loader) * config.batch_size
        metrics = _epoch_metrics(epoch, loss_ema, images_per_s, seen, validation, warning)
        history.append(metrics)
        report_epoch(
            desc,
            _epoch_line(metrics),
            started,
            epoch + 1 - start_epoch,
            config.epochs - epoch - 1,
            progress,
        )
        _save(
            out, model, config, class_names, history, warning, origin, metadata, optimizer, schedule
        )
        if on_epoch is not None:
            on_epoch(metrics)
    model.to(memory_format=torch.contiguous_format)
    if not keep_resume:
        discard_resume(out)
    if warning:
        log.warning("%s: %s", out, warning)
    return metrics
