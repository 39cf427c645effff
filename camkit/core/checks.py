"""What the Explainer checks of a batch before it explains it, and of the logits after the
forward: each problem is one error naming it and the fix, never a NaN map or a torch error."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["check_images", "check_logits"]


def check_images(images: torch.Tensor, model: nn.Module, layer: str, stride: int) -> torch.Tensor:
    """``images`` as a ``(N, C, H, W)`` float batch on the model's device and dtype; a single
    ``(C, H, W)`` image becomes a batch of one."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a float tensor (N, 3, H, W), got {type(images).__name__}; "
            "use camkit.data.images.preprocess"
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N ≥ 1, got {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise TypeError(
            f"images must be normalised float tensors, got dtype {images.dtype}; "
            "use camkit.data.images.preprocess"
        )
    if images.shape[1] != 3:  # camkit explains RGB models (its layer probes are RGB too)
        raise ValueError(
            f"images have {images.shape[1]} channels, not 3 (got {tuple(images.shape)}); "
            "camkit explains RGB models: convert them to RGB first — "
            "camkit.data.images.read_image reads grey and RGBA files as RGB"
        )
    if not torch.isfinite(images).all():
        raise ValueError(
            "images hold NaN or infinite values; check their normalisation (a std of 0 or "
            "NaN) — camkit.data.images.preprocess makes finite inputs"
        )
    height, width = images.shape[-2:]
    if height < stride or width < stride:
        raise ValueError(
            f"input is {width}×{height} px; {layer} has output stride {stride}, so it needs at "
            f"least {stride}×{stride}: resize the images to a larger input (--size; by default "
            "the model's own input size)"
        )
    parameter = next(iter(model.parameters()), None)
    dtype = parameter.dtype if parameter is not None else images.dtype
    device = parameter.device if parameter is not None else torch.device("cpu")
    return images.detach().to(device, dtype)


def check_logits(logits: torch.Tensor, model: nn.Module) -> None:
    """Finite inputs that give NaN or infinite logits: the weights are broken, and every map
    (on any path) would be NaN — one clear error instead."""
    bad = (~torch.isfinite(logits.detach()).all(dim=1)).nonzero().flatten().tolist()
    if not bad:
        return
    broken = [n for n, p in model.named_parameters() if not torch.isfinite(p.detach()).all()]
    cause = (
        f"its weights hold NaN or infinite values ({', '.join(broken[:3])}"
        + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        + ")"
        if broken
        else "the forward pass overflows"
    )
    raise ValueError(
        f"the model's logits are NaN or infinite for image{'s' if len(bad) > 1 else ''} "
        f"{', '.join(map(str, bad[:5]))} of the batch: {cause}; check the checkpoint "
        "(or run in float32 without --autocast)"
    )
