"""The one training loop: seeded splits, an epoch, its report, evaluation."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

progress_log = logging.getLogger("camkit.progress")

# oneDNN's ISA caps below its bfloat16 kernels (ONEDNN_MAX_CPU_ISA)
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")

__all__ = [
    "adamw",
    "duration",
    "evaluate_classifier",
    "memory_format",
    "native_bf16",
    "report_epoch",
    "seeded_split",
    "train_epoch",
]


def memory_format(channels_last: bool) -> torch.memory_format:
    """The memory format a training run keeps its model and inputs in."""
    return torch.channels_last if channels_last else torch.contiguous_format


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 autocast runs on ``device``'s own bfloat16 units, so that it is faster
    than float32: a CUDA GPU that supports it, a CPU with AVX-512 BF16 or AMX. An AVX2-only
    CPU emulates it: a ResNet-50 training step at 96 px, batch 32, on 2 such cores took 28.7 s
    against 2.0 s in float32 (26×), so the recipes train in float32 there."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return False  # oneDNN told to stay below its bfloat16 kernels: they would be emulated
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def adamw(parameters, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel where the parameters' device has one (CPU, CUDA): on CPU,
    torch's default is a per-tensor loop, 6× slower for ResNet-50's 161 tensors (an optimizer
    step of 193 ms against 31 ms on 2 AVX2 cores; `bench_training.py optimizer`)."""
    parameters = list(parameters)
    fused = all(p.device.type in ("cpu", "cuda") for p in parameters)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=fused or None)


@torch.inference_mode()
def evaluate_classifier(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    bf16: bool = False,
    channels_last: bool = False,
) -> dict:
    """Accuracy and mean cross-entropy of ``model`` (eval mode) over ``loader``, with bfloat16
    autocast and channels-last inputs when asked (as the model was trained). Labels are class
    indices or probability rows (a prediction on any class of highest probability is right)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    layout = memory_format(channels_last)
    for images, labels in loader:
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            logits = model(images.to(device, memory_format=layout)).float()
        labels = labels.to(device)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        predicted = logits.argmax(1)
        if labels.ndim == 2:  # probability rows: right when the prediction is a most likely class
            hits = labels.gather(1, predicted[:, None])[:, 0] == labels.max(1).values
        else:
            hits = predicted == labels
        correct += int(hits.sum())
        total += labels.shape[0]
    model.train(was_training)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "count": total}


def seeded_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split of ``range(count)``: (validation indices, training indices), at
    least one validation index."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, round(count * fraction))
    return order[:cut], order[cut:]


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


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def report_epoch(
    desc: str, figures: Sequence[str], started: float, done: int, left: int, progress: bool | None
) -> None:
    """One line at the end of an epoch on the ``camkit.progress`` logger, which the command
    line shows on a terminal and in a log file alike, flushed as it is written.

    The line holds ``desc``, the ``figures`` (``"val accuracy 0.917"``), the time since
    ``started`` (``time.perf_counter()``) and how long the ``left`` epochs will take at the
    pace of the ``done`` ones: ``epoch 1/3: train loss 0.912, …, 41 s, about 1 min 22 s left``.
    ``progress=False``: nothing.
    """
    if progress is False:
        return
    elapsed = time.perf_counter() - started
    remaining = f"about {duration(elapsed / max(done, 1) * left)} left" if left else "done"
    progress_log.info("%s: %s, %s, %s", desc, ", ".join(figures), duration(elapsed), remaining)
