"""The one training loop: seeded splits, an epoch, resume, evaluation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

__all__ = ["evaluate_classifier", "restore", "seeded_split", "train_epoch"]


@torch.inference_mode()
def evaluate_classifier(model: nn.Module, loader: DataLoader, device: torch.device) -> dict:
    """Accuracy and mean cross-entropy of ``model`` (eval mode) over ``loader``."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for images, labels in loader:
        logits = model(images.to(device))
        labels = labels.to(device)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        total += labels.numel()
    model.train(was_training)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "count": total}


def seeded_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(count)``: (validation indices, training indices), at
    least one validation index."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, round(count * fraction))
    return order[:cut], order[cut:]


def restore(checkpoint: dict, out: Path, epochs: int, model, optimizer, schedule) -> tuple:
    """Continue an interrupted run from its checkpoint: load model, optimizer and schedule;
    returns (first epoch to run, history). Refuses a different epoch count (the one-cycle
    schedule depends on it)."""
    planned = int(checkpoint.get("config", {}).get("epochs", epochs))
    if planned != epochs:
        raise ValueError(
            f"{out} belongs to a run of {planned} epochs (finished {checkpoint.get('epoch')}); "
            f"--resume continues that schedule, so pass --epochs {planned}, or start a new "
            "run to train for a different number of epochs"
        )
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["schedule"])
    log.info("resuming from %s at epoch %d", out, int(checkpoint["epoch"]))
    return int(checkpoint["epoch"]), list(checkpoint.get("history", []))


def train_epoch(
    loader: DataLoader,
    loss_of: Callable[[tuple], tuple[torch.Tensor, int]],
    optimizer,
    schedule,
    desc: str,
    progress: bool | None,
) -> tuple[float, float]:
    """One pass over ``loader``: ``loss_of(batch)`` → (loss, images); a step of the optimizer
    and the schedule per batch, progress with the smoothed loss and images/s
    (:mod:`camkit.progress`: ``None`` a bar on a terminal, a line now and then elsewhere;
    ``False`` quiet). Returns (smoothed loss, images per second)."""
    from camkit.progress import progress as report

    started, seen, loss_ema = time.perf_counter(), 0, math.nan
    bar = report(loader, desc=desc, unit="batch", enabled=progress)
    for batch in bar:
        loss, count = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        seen += count
        value = float(loss.detach())
        loss_ema = value if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * value
        bar.set_postfix(
            loss=f"{loss_ema:.3f}", img_s=f"{seen / (time.perf_counter() - started):.1f}"
        )
    return loss_ema, seen / (time.perf_counter() - started)
