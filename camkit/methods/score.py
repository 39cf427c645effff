"""Score-CAM (Wang et al. 2020): channels weighed by the score of the input masked by each.

``w_k = softmax_k(y_c(x ⊙ mask_k))`` with ``mask_k`` the layer's map ``A_k`` upsampled to the
input and min-max normalised, ``map = relu(Σ_k w_k A_k)``. One masked forward pass per distinct
mask, in chunks, on a batch-norm-folded copy of the model.
"""

from __future__ import annotations

import torch
from torch import nn

from camkit.methods.base import Method, Passes, Tensor
from camkit.methods.registry import register

__all__ = ["SCORECAM", "score_masks", "scorecam_weights"]


def score_masks(maps: Tensor, size: tuple[int, int], align_corners: bool = False) -> Tensor:
    """Score-CAM's masks: each map of ``maps (..., C, h, w)`` upsampled to ``size`` (bilinear)
    and min-max normalised to [0, 1] (a flat map gives zeros)."""
    upsampled = torch.nn.functional.interpolate(
        maps.reshape(-1, *maps.shape[-3:]), size=size, mode="bilinear", align_corners=align_corners
    ).reshape(*maps.shape[:-2], *size)
    low = upsampled.flatten(-2).amin(-1)[..., None, None]
    high = upsampled.flatten(-2).amax(-1)[..., None, None]
    return (upsampled - low) / (high - low + 1e-8)


def _distinct_masks(maps: Tensor) -> tuple[Tensor, Tensor]:
    """Score-CAM masks are min-max normalised, so maps equal up to ``a·x + b`` (``a > 0``) give
    the same mask. ``maps (C, h, w)`` → indices of one channel per distinct mask, and for each
    channel the position of its mask among those (normalised maps equal to 1e-6)."""
    flat = maps.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    normalised = torch.where(high > low, (flat - low) / (high - low).clamp_min(1e-30), 0)
    keys = torch.round(normalised * 1e6)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(maps), device=maps.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(maps), device=maps.device), "amin")
    return first, inverse


def _inference_copy(model: nn.Module) -> nn.Module:
    """For forward passes that only need logits (Score-CAM's masked inputs): a copy with batch
    norm folded into the convolutions (``torch.fx``), run on channels-last inputs — the same
    function to float rounding, ~1.35× faster on a CPU. The model itself where it cannot be
    traced; the user's model is never changed."""
    import copy
    import warnings

    try:
        from torch.fx.experimental.optimization import fuse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fuse(copy.deepcopy(model)).eval()
    except Exception:  # any model fx cannot trace runs as it is
        return model


def _selected_channels(activations: Tensor, score_channels: int | None) -> Tensor:
    """All channels of ``activations (C, h, w)``, or the top ``score_channels`` by variance
    (Faster Score-CAM)."""
    channels = activations.shape[0]
    if score_channels is not None and score_channels < channels:
        return activations.flatten(1).var(dim=1).topk(score_channels).indices
    return torch.arange(channels, device=activations.device)


def scorecam_weights(passes: Passes) -> list[tuple[Tensor, Tensor]]:
    """For each image: softmax over channels of the masked inputs' target scores ``(K, C')``,
    and the channels ``(C',)`` they weigh."""
    from tqdm import tqdm

    images, activations, class_ids = passes.images, passes.activations, passes.class_ids
    channels = activations.shape[1]
    total = len(images) * min(channels, passes.score_channels or channels)
    bar = tqdm(
        total=total,
        desc="Score-CAM",
        unit="pass",
        leave=False,
        disable=True if total <= 4 * passes.batch_size else None,  # None: terminal only
    )
    network = _inference_copy(passes.model)
    out = []
    with torch.inference_mode():
        for index, image in enumerate(images):
            selected = _selected_channels(activations[index], passes.score_channels)
            # channels whose maps are equal up to a positive affine map (dead channels, one-hot
            # maps at the same cell) make the same mask: one pass for each
            distinct, inverse = _distinct_masks(activations[index, selected])
            counts = torch.bincount(inverse)  # channels per distinct mask
            masks = score_masks(
                activations[index, selected[distinct]],
                tuple(images.shape[-2:]),
                passes.align_corners,
            )  # (C'', H, W)
            scores = []
            for start in range(0, len(masks), passes.batch_size):
                chunk = masks[start : start + passes.batch_size]
                masked = image.unsqueeze(0) * chunk.unsqueeze(1)  # (B, 3, H, W)
                masked = masked.contiguous(memory_format=torch.channels_last)
                scores.append(passes.run(network, masked).float())
                bar.update(int(counts[start : start + len(chunk)].sum()))
            picked = class_ids[index].unsqueeze(0).expand(len(selected), -1)
            scores = torch.cat(scores)[inverse].gather(1, picked)  # (C', K)
            out.append((scores.softmax(dim=0).T, selected))  # (K, C'): softmax over channels
    bar.close()
    return out


SCORECAM = register(
    Method(
        "scorecam",
        needs="masked-forward",
        pass_weights=scorecam_weights,
        description="Score-CAM: channels weighed by the scores of masked inputs",
    )
)
