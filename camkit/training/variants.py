"""Channel variants: weight-preserving surgery on a trained checkpoint, its fidelity, fine-tuning."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from camkit.models.resnet import load_classifier, variant_from
from camkit.training.classifier import TrainConfig, _loaders, resolve_config, train_classifier

__all__ = ["VariantReport", "logit_gap", "make_variant"]


@dataclass(frozen=True)
class VariantReport:
    """What ``make_variant`` did: surgery fidelity before training, and metrics after."""

    channels: int
    kept: int
    before: dict
    after: dict
    checkpoint: str


@torch.inference_mode()
def logit_gap(parent, variant, loader) -> dict:
    """How far a variant is from its parent on a loader: logit differences and both accuracies."""
    parent.eval()
    variant.eval()
    worst = relative = 0.0
    agree = parent_correct = variant_correct = total = 0
    for images, labels in loader:
        a, b = parent(images), variant(images)
        worst = max(worst, float((a - b).abs().max()))
        relative += float(((a - b).norm(dim=1) / a.norm(dim=1).clamp_min(1e-12)).sum())
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        parent_correct += int((a.argmax(1) == labels).sum())
        variant_correct += int((b.argmax(1) == labels).sum())
        total += labels.numel()
    return {
        "max_abs_logit_diff": worst,
        "mean_relative_logit_diff": relative / max(total, 1),
        "prediction_agreement": agree / max(total, 1),
        "parent_accuracy": parent_correct / max(total, 1),
        "variant_accuracy": variant_correct / max(total, 1),
        "count": total,
    }


def make_variant(
    parent: str | os.PathLike,
    channels: int,
    data: str | os.PathLike,
    out: str | os.PathLike,
    epochs: int = 1,
    train_all: bool = False,
    val_data: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    keep: list[int] | None = None,
    progress: bool | None = None,
) -> VariantReport:
    """Surgery on ``parent`` (a checkpoint) to ``channels`` maps, report its fidelity, fine-tune.

    By default only what changed trains — ``layer4.2`` and ``fc`` — with every other layer
    frozen (BatchNorm statistics included); ``train_all`` trains everything. ``epochs=0`` saves
    the variant right after surgery.
    """
    from camkit.io.checkpoint import save_checkpoint
    from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD

    parent_model, info = load_classifier(parent)
    variant, kept = variant_from(parent_model, channels, keep)
    config = config or TrainConfig()
    if config.size is None:  # the parent's input size
        config = replace(config, size=info.input_size)
    config = resolve_config(replace(config, epochs=max(epochs, 1)), model_given=True)
    _, _, val_loader = _loaders(
        Path(data), Path(val_data) if val_data else None, config, list(info.class_names)
    )
    before = logit_gap(parent_model, variant, val_loader)
    metadata = {
        "parent": str(parent),
        "kept_channels": kept,
        "surgery": before,
        "origin": f"surgery from {Path(parent).name} ({info.channels}→{channels} channels)",
    }
    if epochs == 0:
        save_checkpoint(
            out,
            variant.state_dict(),
            arch="resnet50",
            channels=channels,
            num_classes=info.num_classes,
            class_names=list(info.class_names),
            input_size=info.input_size,
            mean=list(IMAGENET_MEAN),
            std=list(IMAGENET_STD),
            metrics={"val_accuracy": before["variant_accuracy"]},
            **metadata,
        )
        after = {"val_accuracy": before["variant_accuracy"], "epoch": 0}
    else:
        after = train_classifier(
            data,
            out,
            config,
            val_data=val_data,
            progress=progress,
            model=variant,
            train_only=None if train_all else ["layer4.2", "fc"],
            metadata=metadata,
            class_names=list(info.class_names),  # the parent's output order, not the folder's
        )
    return VariantReport(channels, len(kept), before, after, str(out))
