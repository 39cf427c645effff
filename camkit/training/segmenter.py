"""Train, evaluate and apply ResUNet segmenters on folder data sets (``images/`` + ``masks/``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from camkit.data.folders import SegmentationFolder, spread
from camkit.metrics.segmentation import _summarise, segmentation_scores
from camkit.models.losses import CombinedLoss, DeepSupervisionLoss, as_target
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from camkit.models.resunet import ResUNet
from camkit.training.loop import (
    adamw,
    memory_format,
    native_bf16,
    report_epoch,
    seeded_split,
    train_epoch,
)
from camkit.training.resume import (
    discard_resume,
    restore,
    save_epoch,
    starting_state,
)
from camkit.training.schedule import OneCycle

__all__ = ["WARMUP", "SegConfig", "evaluate_segmenter", "train_segmenter"]

WARMUP = 0.2  # the share of the one-cycle schedule spent warming up


@dataclass
class SegConfig:
    """Settings of ``train_segmenter`` (recorded in the checkpoint)."""

    arch: str = "unet"
    classes: int = 1
    epochs: int = 1
    size: int = 128
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "bce+dice"
    deep_supervision: bool = True
    encoder: str | None = None  # None, "imagenet", or a classifier checkpoint
    val_fraction: float = 0.15
    limit: int | None = None  # use only this many training images (evenly spread)
    seed: int = 0
    workers: int = 1
    bf16: bool | None = None  # bfloat16 autocast (losses in float32); None: where native
    channels_last: bool = True


def _foreground(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary foreground ``(N, H, W)`` from logits: sigmoid > threshold, or argmax ≠ background."""
    if logits.shape[1] == 1:
        return logits[:, 0].sigmoid() > threshold
    return logits.argmax(dim=1) > 0


@torch.inference_mode()
def evaluate_segmenter(model: ResUNet, batches, device: torch.device | str = "cpu") -> dict:
    """Foreground IoU and Dice over an iterable of ``(images, index masks)`` batches."""
    was_training = model.training
    model.eval()
    parts = []
    for images, masks, *_ in batches:
        logits = model(images.to(device))
        parts.append(segmentation_scores(_foreground(logits).cpu(), masks > 0))
    model.train(was_training)
    return _summarise(parts)


def _subset(dataset, limit: int | None):
    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, spread(range(len(dataset)), limit))


def _loaders(data, val_data, config: SegConfig) -> tuple[DataLoader, DataLoader]:
    """The training loader (augmented, ``config.limit`` images at most) and the validation
    loader: ``val_data``, or a seeded ``val_fraction`` split of ``data``."""
    classes = None if config.classes == 1 else config.classes - 1
    train_set = SegmentationFolder(data, config.size, classes=classes, augment=True)
    if val_data is not None:
        val_set = SegmentationFolder(val_data, config.size, classes=classes)
        train_view = _subset(train_set, config.limit)
    else:
        val_index, train_index = seeded_split(len(train_set), config.val_fraction, config.seed)
        val_set = Subset(SegmentationFolder(data, config.size, classes=classes), val_index)
        train_view = _subset(Subset(train_set, train_index), config.limit)
    loader = DataLoader(
        train_view,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_view) > config.batch_size,
        num_workers=config.workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    return loader, DataLoader(val_set, batch_size=32, num_workers=config.workers)


def _save(
    out: Path,
    model: ResUNet,
    config: SegConfig,
    history: list[dict],
    loss: str,
    optimizer,
    schedule,
) -> None:
    """The checkpoint after an epoch (weights and metadata), then its resume file."""
    saved = {
        "kind": "segmenter",
        "arch": config.arch,
        "classes": config.classes,
        "encoder_channels": model.encoder_channels,
        "input_size": config.size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "metrics": history[-1],
        "history": history,
        "epoch": history[-1]["epoch"],
        "config": dict(vars(config)),
        "loss": loss,
    }
    save_epoch(out, model, saved, optimizer, schedule)


def train_segmenter(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: SegConfig | None = None,
    val_data: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    keep_resume: bool = False,
) -> dict:
    """Train a ResUNet on ``images/`` + ``masks/`` and write a checkpoint after every epoch.

    Loss: ``config.loss`` (e.g. ``"bce+dice"``, ``"focal+dice"``, ``"lovasz"``) with deep
    supervision on the auxiliary decoder heads. Validation foreground IoU and Dice (per image
    and data-set-wide) each epoch, with a line on the ``camkit.progress`` logger. The
    checkpoint holds weights and metadata; its resume file ``out.resume`` (also optimizer and
    schedule, see :mod:`camkit.training.resume`) lets ``resume=True`` continue an interrupted
    run, and is removed at the end unless ``keep_resume``. On a finished run ``resume=True``
    trains nothing and returns its last metrics.
    """
    out = Path(out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = config or SegConfig()
    if config.bf16 is None:  # bfloat16 where the device runs it natively (float32 on AVX2)
        config = replace(config, bf16=native_bf16(device))
    torch.manual_seed(config.seed)
    state, finished = starting_state(out, resume)
    if finished is not None:
        return finished
    if config.size % 32:
        raise ValueError(f"size must be a multiple of 32 for the ResUNet, got {config.size}")
    loader, val_loader = _loaders(data, val_data, config)
    layout = memory_format(config.channels_last)
    model = ResUNet(config.arch, config.classes, encoder_weights=config.encoder)
    model = model.to(device, memory_format=layout)
    criterion = CombinedLoss(config.loss)
    loss_fn = DeepSupervisionLoss(criterion) if config.deep_supervision else criterion
    optimizer = adamw(model.parameters(), config.lr, config.weight_decay)
    steps = config.epochs * len(loader)
    if steps == 0:
        raise ValueError(
            f"no training batches: {len(loader.dataset)} images for batch size {config.batch_size}"
        )
    schedule = OneCycle(optimizer, config.lr, steps, WARMUP)
    start_epoch, history = 0, []
    if state:
        start_epoch, history = restore(state, out, config.epochs, model, optimizer, schedule)
    metrics: dict = history[-1] if history else {}

    def loss_of(batch):
        images = batch[0].to(device, memory_format=layout)
        target = as_target(batch[1].to(device), config.classes)
        with torch.autocast(device.type, torch.bfloat16, enabled=config.bf16):
            main, aux = model.forward_with_aux(images)
        main = main.float()
        outputs = (main, [a.float() for a in aux]) if config.deep_supervision else main
        return loss_fn(outputs, target), images.shape[0]

    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        model.train()
        desc = f"{config.arch} epoch {epoch + 1}/{config.epochs}"
        loss_ema, images_per_s = train_epoch(loader, loss_of, optimizer, schedule, desc, progress)
        validation = evaluate_segmenter(model, val_loader, device)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_ema,
            "images_per_s": images_per_s,
            **{f"val_{k}": v for k, v in validation.items()},
        }
        history.append(metrics)
        report_epoch(
            desc,
            [
                f"train loss {loss_ema:.3f}",
                f"val IoU {validation['iou']:.3f}",
                f"val Dice {validation['dice']:.3f}",
                f"{images_per_s:.1f} img/s",
            ],
            started,
            epoch + 1 - start_epoch,
            config.epochs - epoch - 1,
            progress,
        )
        _save(out, model, config, history, repr(criterion), optimizer, schedule)
        if on_epoch is not None:
            on_epoch(metrics)
    if not keep_resume:
        discard_resume(out)
    return metrics
