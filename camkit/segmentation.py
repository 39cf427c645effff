"""Train, evaluate and apply ResUNet segmenters on folder data sets (``images/`` + ``masks/``)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from camkit.checkpoint import load_checkpoint, save_checkpoint
from camkit.data.folders import SegmentationFolder, spread
from camkit.models.losses import CombinedLoss, DeepSupervisionLoss, as_target
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from camkit.models.resunet import ResUNet
from camkit.train import restore, seeded_split, train_epoch

__all__ = [
    "SegConfig",
    "evaluate_segmenter",
    "load_segmenter",
    "predict_masks",
    "segmentation_scores",
    "train_segmenter",
]


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


def segmentation_scores(predicted: torch.Tensor, truth: torch.Tensor) -> dict:
    """IoU and Dice of binary masks ``(N, H, W)``: per-image means and data-set-wide.

    An image where both masks are empty scores 1 (a correct "nothing here").
    """
    predicted, truth = predicted.bool().flatten(1), truth.bool().flatten(1)
    intersection = (predicted & truth).sum(1).double()
    union = (predicted | truth).sum(1).double()
    sizes = predicted.sum(1).double() + truth.sum(1).double()
    empty = union == 0
    iou = torch.where(empty, torch.ones_like(union), intersection / union.clamp_min(1))
    dice = torch.where(empty, torch.ones_like(union), 2 * intersection / sizes.clamp_min(1))
    return {
        "intersection": float(intersection.sum()),
        "union": float(union.sum()),
        "sizes": float(sizes.sum()),
        "iou_per_image": iou.tolist(),
        "dice_per_image": dice.tolist(),
    }


def _summarise(parts: list[dict]) -> dict:
    intersection = sum(p["intersection"] for p in parts)
    union = sum(p["union"] for p in parts)
    sizes = sum(p["sizes"] for p in parts)
    ious = [v for p in parts for v in p["iou_per_image"]]
    dices = [v for p in parts for v in p["dice_per_image"]]
    return {
        "iou": float(np.mean(ious)) if ious else math.nan,
        "dice": float(np.mean(dices)) if dices else math.nan,
        "iou_dataset": intersection / union if union else 1.0,
        "dice_dataset": 2 * intersection / sizes if sizes else 1.0,
        "images": len(ious),
    }


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


def train_segmenter(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: SegConfig | None = None,
    val_data: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train a ResUNet on ``images/`` + ``masks/`` and write a checkpoint after every epoch.

    Loss: ``config.loss`` (e.g. ``"bce+dice"``, ``"focal+dice"``, ``"lovasz"``) with deep
    supervision on the auxiliary decoder heads. Validation foreground IoU and Dice (per image
    and data-set-wide) each epoch. ``resume=True`` continues an interrupted run.
    """
    config = config or SegConfig()
    out = Path(out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    progress = sys.stderr.isatty() if progress is None else progress
    torch.manual_seed(config.seed)
    if config.size % 32:
        raise ValueError(f"size must be a multiple of 32 for the ResUNet, got {config.size}")
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
    val_loader = DataLoader(val_set, batch_size=32, num_workers=config.workers)
    model = ResUNet(config.arch, config.classes, encoder_weights=config.encoder).to(device)
    criterion = CombinedLoss(config.loss)
    loss_fn = DeepSupervisionLoss(criterion) if config.deep_supervision else criterion
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps = config.epochs * len(loader)
    if steps == 0:
        raise ValueError(
            f"no training batches: {len(train_view)} images for batch size {config.batch_size}"
        )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.2
    )
    start_epoch, history = 0, []
    if resume and out.exists():
        start_epoch, history = restore(
            load_checkpoint(out), out, config.epochs, model, optimizer, schedule
        )
    metrics: dict = history[-1] if history else {}

    def loss_of(batch):
        images, masks = batch[0].to(device), batch[1].to(device)
        target = as_target(masks, config.classes)
        outputs = model.forward_with_aux(images) if config.deep_supervision else model(images)
        return loss_fn(outputs, target), images.shape[0]

    for epoch in range(start_epoch, config.epochs):
        model.train()
        loss_ema, images_per_s = train_epoch(
            loader,
            loss_of,
            optimizer,
            schedule,
            f"{config.arch} epoch {epoch + 1}/{config.epochs}",
            progress,
        )
        validation = evaluate_segmenter(model, val_loader, device)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_ema,
            "images_per_s": images_per_s,
            **{f"val_{k}": v for k, v in validation.items()},
        }
        history.append(metrics)
        save_checkpoint(
            out,
            {k: v.detach().cpu() for k, v in model.state_dict().items()},
            kind="segmenter",
            arch=config.arch,
            classes=config.classes,
            encoder_channels=model.encoder_channels,
            input_size=config.size,
            mean=list(IMAGENET_MEAN),
            std=list(IMAGENET_STD),
            metrics=metrics,
            history=history,
            epoch=epoch + 1,
            config={k: v for k, v in vars(config).items()},
            loss=repr(criterion),
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
        )
        if on_epoch is not None:
            on_epoch(metrics)
    return metrics


def load_segmenter(path: str | os.PathLike) -> tuple[ResUNet, dict]:
    """A ResUNet from a ``train_segmenter`` checkpoint (eval mode) and its metadata."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != "segmenter":
        raise ValueError(
            f"{path} is not a camkit segmenter checkpoint (no kind='segmenter'); train one with "
            "`camkit train-seg`, or pass a classifier with --weights"
        )
    model = ResUNet(
        checkpoint["arch"],
        int(checkpoint["classes"]),
        encoder_channels=int(checkpoint["encoder_channels"]),
    )
    model.load_state_dict(checkpoint["state_dict"])
    info = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer", "schedule")}
    return model.eval(), info


@torch.inference_mode()
def predict_masks(
    model: ResUNet,
    info: dict,
    images: Sequence[np.ndarray],
    threshold: float = 0.5,
    batch_size: int = 8,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Masks for RGB uint8 images of any size: resized to the model's input, predicted, and the
    probabilities resampled back (bilinear) to each image's own size.

    Returns ``(mask, probabilities)`` per image: a uint8 ``H×W`` mask ({0, 1} for binary, class
    indices otherwise) and float32 probabilities ``(C, H, W)``.
    """
    from camkit.cam import upsample
    from camkit.data.images import preprocess

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    device = next(model.parameters()).device
    size = int(info.get("input_size", 128))
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = preprocess(
            list(chunk), size, info.get("mean", IMAGENET_MEAN), info.get("std", IMAGENET_STD)
        )
        logits = model(batch.to(device)).float().cpu()
        for image, image_logits in zip(chunk, logits):
            resized = upsample(image_logits, image.shape[:2])  # (C, H, W)
            if resized.shape[0] == 1:
                probabilities = resized.sigmoid()
                mask = (probabilities[0] > threshold).to(torch.uint8)
            else:
                probabilities = resized.softmax(dim=0)
                mask = probabilities.argmax(dim=0).to(torch.uint8)
            results.append((mask.numpy(), probabilities.numpy().astype(np.float32)))
    return results
