"""Class ids checked against a model's classes: one message wherever they are checked."""

from __future__ import annotations

import torch

__all__ = ["check_targets", "out_of_range"]


def out_of_range(class_id: int, classes: int) -> ValueError:
    """The error for ``class_id`` outside a model's ``classes``."""
    return ValueError(
        f"class {class_id} is out of range: the model has {classes} classes (0–{classes - 1})"
    )


def check_targets(targets: object, num_classes: int) -> None:
    """Refuse class ids (an int, nested sequences or a tensor of them; ``None`` or a string
    pass) outside ``0 … num_classes − 1`` before any work is done (the same message
    :func:`camkit.heatmaps.resolve_targets` gives per batch)."""
    if targets is None or isinstance(targets, str):
        return

    def flat(value) -> list:
        if isinstance(value, torch.Tensor):
            return value.reshape(-1).tolist()
        if isinstance(value, (list, tuple)):
            return [v for item in value for v in flat(item)]
        return [value]

    bad = [v for v in flat(targets) if isinstance(v, int) and not 0 <= v < num_classes]
    if bad:
        raise out_of_range(bad[0], num_classes)
