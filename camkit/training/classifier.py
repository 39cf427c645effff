"""Training loops: a ResNet-50 classifier on a folder data set (from ImageNet weights when they
are cached locally, else from scratch), with progress, validation, atomic checkpoints, resume.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from camkit.data.folders import ClassificationFolder
from camkit.io.checkpoint import load_checkpoint, save_checkpoint
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD, resnet50_variant
from camkit.models.weights import imagenet_weights_cached
from camkit.training.loop import evaluate_classifier, restore, seeded_split, train_epoch

__all__ = ["TrainConfig", "train_classifier"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Settings of ``train_classifier`` (recorded in the checkpoint)."""

    epochs: int = 1
    size: int = 128
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.15
    seed: int = 0
    workers: int = 1
    pretrained: str = "auto"  # "auto": ImageNet weights if cached locally; "imagenet"; "none"
    extra: dict = field(default_factory=dict)


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


def _loaders(data: Path, val_data: Path | None, config: TrainConfig, class_names=None):
    train_set = ClassificationFolder(data, config.size, augment=True, class_names=class_names)
    if val_data is not None:
        val_set = ClassificationFolder(val_data, config.size, class_names=train_set.class_names)
        train_view: torch.utils.data.Dataset = train_set
    else:
        val_index, train_index = seeded_split(len(train_set), config.val_fraction, config.seed)
        val_plain = ClassificationFolder(data, config.size, class_names=train_set.class_names)
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


def train_classifier(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
    val_data: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    model: nn.Module | None = None,
    train_only: Sequence[str] | None = None,
    metadata: dict | None = None,
) -> dict:
    """Train a ResNet-50 classifier on ``data`` (``images/<class>/*``) and save a checkpoint.

    AdamW with a one-cycle schedule; validation each epoch (on ``val_data`` or a seeded
    ``val_fraction`` split); the checkpoint (weights, class names, input size, normalisation,
    metrics, optimizer and schedule state) is written atomically after every epoch, so
    ``resume=True`` continues an interrupted run from its last finished epoch (same schedule;
    the epoch count must match). ``on_epoch`` is called with each epoch's metrics after its
    checkpoint is written. ``model`` starts from a given network (e.g. a channel variant) instead
    of a new ResNet-50; ``train_only`` lists module-name prefixes to train (others are frozen,
    their BatchNorm statistics too); ``metadata`` is added to the checkpoint. Returns the final
    metrics.
    """
    config = config or TrainConfig()
    out = Path(out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    start_epoch, history = 0, []
    checkpoint = load_checkpoint(out) if resume and out.exists() else None
    class_names = checkpoint.get("class_names") if checkpoint else None
    class_names, train_loader, val_loader = _loaders(
        Path(data), Path(val_data) if val_data else None, config, class_names
    )
    if model is None:
        model, origin = _initial_model(len(class_names), config.pretrained)
    else:
        origin = (metadata or {}).get("origin", "given model")
        if model.fc.out_features != len(class_names):
            raise ValueError(
                f"the model has {model.fc.out_features} classes but {data} has {len(class_names)}"
            )
    model.to(device)
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
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * len(train_loader)
    if steps == 0:
        raise ValueError(
            f"no training batches: {len(train_loader.dataset)} training images for batch size "
            f"{config.batch_size}; add images or lower --batch-size"
        )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.25
    )
    if checkpoint:
        start_epoch, history = restore(checkpoint, out, config.epochs, model, optimizer, schedule)
        origin = checkpoint.get("origin", origin)
    metrics: dict = history[-1] if history else {}

    def loss_of(batch):
        images, labels = batch[0].to(device), batch[1].to(device)
        return nn.functional.cross_entropy(model(images), labels), labels.numel()

    for epoch in range(start_epoch, config.epochs):
        model.train()
        for norm in frozen_norms:  # frozen layers keep their running statistics
            norm.eval()
        loss_ema, images_per_s = train_epoch(
            train_loader,
            loss_of,
            optimizer,
            schedule,
            f"epoch {epoch + 1}/{config.epochs}",
            progress,
        )
        validation = evaluate_classifier(model, val_loader, device)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_ema,
            "val_accuracy": validation["accuracy"],
            "val_loss": validation["loss"],
            "images_per_s": images_per_s,
        }
        history.append(metrics)
        log.info("epoch %d: %s", epoch + 1, metrics)
        save_checkpoint(
            out,
            {k: v.detach().cpu() for k, v in model.state_dict().items()},
            arch="resnet50",
            channels=model.fc.in_features,
            num_classes=len(class_names),
            class_names=list(class_names),
            input_size=config.size,
            mean=list(IMAGENET_MEAN),
            std=list(IMAGENET_STD),
            metrics=metrics,
            history=history,
            epoch=epoch + 1,
            origin=origin,
            config={k: v for k, v in vars(config).items() if k != "extra"},
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            **{k: v for k, v in (metadata or {}).items() if k != "origin"},
        )
        if on_epoch is not None:
            on_epoch(metrics)
    return metrics
