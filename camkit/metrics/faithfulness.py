"""Faithfulness of a heatmap to the model: deletion / insertion (RISE) and Average Drop /
Increase in Confidence (Grad-CAM++), batched.

All scores use the softmax probability of the explained class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camkit.core.probe import preserved_model_state, set_eval
from camkit.core.targets import check_targets

__all__ = ["average_drop", "blur", "deletion_insertion", "one_class_id_per_image", "trapezoid_auc"]


def one_class_id_per_image(class_ids, images: torch.Tensor) -> torch.Tensor:
    """One class id per image, as a long ``(N,)`` tensor on the images' device."""
    ids = torch.as_tensor(class_ids, device=images.device)
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"class_ids must be integer class ids, got dtype {ids.dtype}")
    ids = ids.long().reshape(-1)
    if len(ids) != len(images):
        raise ValueError(
            f"{len(ids)} class ids for {len(images)} images; give one class id per image"
        )
    return ids


def trapezoid_auc(values: torch.Tensor) -> torch.Tensor:
    """Area under a curve sampled at equal steps over [0, 1]: ``(N, S+1) -> (N,)``."""
    steps = values.shape[-1] - 1
    return (values[..., 1:] + values[..., :-1]).sum(dim=-1) / (2 * steps)


def blur(images: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur per channel (RISE's insertion baseline), reflect-padded, same size."""
    radius = kernel // 2
    grid = torch.arange(kernel, dtype=images.dtype, device=images.device) - radius
    weights = torch.exp(-(grid**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    horizontal = F.conv2d(
        padded, weights.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels
    )
    return F.conv2d(
        horizontal, weights.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels
    )


@torch.inference_mode()
def _probabilities(
    model: nn.Module, batch: torch.Tensor, class_id: int, batch_size: int
) -> torch.Tensor:
    out = []
    for i in range(0, len(batch), batch_size):
        probabilities = model(batch[i : i + batch_size]).float().softmax(dim=1)
        out.append(probabilities[:, _in_range(class_id, probabilities.shape[1])])
    return torch.cat(out)


def _in_range(class_id, classes: int):
    """``class_id`` (an int or a tensor of them), checked against the model's ``classes``."""
    check_targets(torch.as_tensor(class_id), classes)
    return class_id


@torch.inference_mode()
def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    saliency: torch.Tensor,
    class_ids: torch.Tensor | list[int],
    steps: int = 32,
    baseline: str = "blur",
    batch_size: int = 33,
) -> dict[str, torch.Tensor]:
    """Deletion and insertion AUC (Petsiuk et al. 2018) per image.

    Pixels are ordered by saliency (highest first; ties by position) and, over ``steps`` equal
    steps, deleted from the image (replaced by the baseline) or inserted into the baseline.
    The curve is the class's softmax probability after each step (``steps + 1`` points, the
    unchanged input first); its trapezoid area over [0, 1] is the score. Low deletion and high
    insertion AUC mean a faithful heatmap.

    Args:
        images: preprocessed ``(N, C, H, W)``; saliency: ``(N, H, W)`` at the same size.
        baseline: ``"blur"`` (Gaussian blur of the image, RISE's insertion choice) or
            ``"zero"`` (zeros of the model's input, i.e. the normalisation mean).

    Returns:
        ``{"deletion": (N,), "insertion": (N,), "deletion_curve": (N, S+1), "insertion_curve": ...}``
    """
    if saliency.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(
            f"saliency must be (N, H, W) = {(images.shape[0], *images.shape[-2:])}, got {tuple(saliency.shape)}"
        )
    if baseline not in ("blur", "zero"):
        raise ValueError(f"baseline must be 'blur' or 'zero', got {baseline!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps > images.shape[-2] * images.shape[-1]:
        raise ValueError(
            f"steps ({steps}) is more than the {images.shape[-2]}×{images.shape[-1]} input's "
            "pixels; each step must delete at least one (the default is 32)"
        )
    class_ids = one_class_id_per_image(class_ids, images)
    with preserved_model_state(model):  # every module's own training flag comes back
        set_eval(model)
        height, width = images.shape[-2:]
        pixels = height * width
        counts = np.linspace(0, pixels, steps + 1).round().astype(int)
        base = blur(images) if baseline == "blur" else torch.zeros_like(images)
        curves = {"deletion": [], "insertion": []}
        for index in range(images.shape[0]):
            order = torch.argsort(-saliency[index].flatten(), stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(pixels, device=order.device)
            image, reference = images[index : index + 1], base[index : index + 1]
            class_id = int(class_ids[index])
            deletion, insertion = [], []
            for start in range(0, steps + 1, batch_size):  # memory: one batch of steps at a time
                chunk = torch.as_tensor(counts[start : start + batch_size], device=rank.device)
                # first[s, p] is True when pixel p is among the first counts[s] in saliency order
                first = rank.unsqueeze(0) < chunk.unsqueeze(1)
                first = first.view(len(chunk), 1, height, width).to(images.dtype)
                deleted = image * (1 - first) + reference * first
                inserted = reference * (1 - first) + image * first
                deletion.append(_probabilities(model, deleted, class_id, batch_size))
                insertion.append(_probabilities(model, inserted, class_id, batch_size))
            curves["deletion"].append(torch.cat(deletion))
            curves["insertion"].append(torch.cat(insertion))
    out = {}
    for name, values in curves.items():
        stacked = torch.stack(values)
        out[name] = trapezoid_auc(stacked)
        out[f"{name}_curve"] = stacked
    return out


@torch.inference_mode()
def average_drop(
    model: nn.Module,
    images: torch.Tensor,
    saliency: torch.Tensor,
    class_ids: torch.Tensor | list[int],
) -> dict[str, float]:
    """Average Drop and Increase in Confidence (Chattopadhay et al. 2018), on probabilities.

    ``O`` = probability on ``image ⊙ normalize(saliency)``, ``Y`` = on the image:
    ``Average Drop = 100 · mean(max(0, Y − O) / Y)``; ``Increase in Confidence = 100 ·
    mean(O > Y)``. Saliency is min-max normalised per image (a flat map masks everything).
    """
    from camkit.cam import normalize

    index = one_class_id_per_image(class_ids, images).view(-1, 1)
    with preserved_model_state(model):  # every module's own training flag comes back
        set_eval(model)
        probabilities = model(images).float().softmax(1)
        original = probabilities.gather(1, _in_range(index, probabilities.shape[1]))[:, 0]
        masks = normalize(saliency.float()).unsqueeze(1).to(images.dtype)
        masked = model(images * masks).float().softmax(1).gather(1, index)[:, 0]
    drop = ((original - masked).clamp_min(0) / original.clamp_min(1e-12)).mean()
    return {
        "average_drop": float(100 * drop),
        "increase_in_confidence": float(100 * (masked > original).float().mean()),
    }
