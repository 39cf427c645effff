"""Score-CAM (Wang et al. 2020): channels weighed by the score of the input masked by each;
and its smoothed (SS-CAM) and integrated (IS-CAM) forms.

``w_k = softmax_k(y_c(x ⊙ mask_k))`` with ``mask_k`` the layer's map ``A_k`` upsampled to the
input and min-max normalised, ``map = relu(Σ_k w_k A_k)``. One masked forward pass per distinct
mask, in chunks, on a batch-norm-folded copy of the model. SS-CAM averages the scores over
masks with Gaussian noise added, IS-CAM over the masks scaled by ``i/n``; their masks are
torch-cam's (normalised on the layer's grid, then upsampled).
"""

from __future__ import annotations

import torch
from torch import nn

from camkit.methods.base import Method, Passes, Tensor, image_seed
from camkit.methods.registry import register

__all__ = [
    "ISCAM",
    "SCORECAM",
    "SSCAM",
    "integrated_weights",
    "score_masks",
    "scorecam_weights",
    "smoothed_weights",
]


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
        # the population variance: the same order as the sample one, and 0 (not NaN, with a
        # torch warning) on a 1×1 map
        return activations.flatten(1).var(dim=1, correction=0).topk(score_channels).indices
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
                masked = (image.unsqueeze(0) * chunk.unsqueeze(1)).to(image.dtype)  # (B, 3, H, W)
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


def _grid_masks(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """torch-cam's Score-CAM masks: each map of ``maps (C, h, w)`` min-max normalised on the
    layer's grid (``(A − min) / (max − min + 1e-8)``), then upsampled to ``size`` (bilinear)."""
    low = maps.flatten(1).amin(1)[:, None, None]
    shifted = maps - low
    normalised = shifted / (shifted.flatten(1).amax(1)[:, None, None] + 1e-8)
    return torch.nn.functional.interpolate(normalised[None], size=size, mode="bilinear")[0]


def _averaged_weights(passes: Passes, desc: str, samples: int, sample_masks) -> list:
    """For each image, ``softmax_k`` of the target scores averaged over ``samples`` sets of
    masked inputs; ``sample_masks(masks, start, stop, generator, s)`` gives sample ``s``'s
    masks of channels ``start:stop`` from the clean ones ``(C', H, W)``."""
    from tqdm import tqdm

    images, activations, class_ids = passes.images, passes.activations, passes.class_ids
    channels = min(activations.shape[1], passes.score_channels or activations.shape[1])
    total = len(images) * channels * samples
    bar = tqdm(total=total, desc=desc, unit="pass", leave=False,
               disable=True if total <= 4 * passes.batch_size else None)  # fmt: skip
    generator = torch.Generator(images.device)
    network = _inference_copy(passes.model)
    out = []
    with torch.inference_mode():
        for index, image in enumerate(images):
            generator.manual_seed(image_seed(passes.seed, image))  # whatever its batch
            selected = _selected_channels(activations[index], passes.score_channels)
            masks = _grid_masks(activations[index, selected], tuple(images.shape[-2:]))
            picked = class_ids[index].unsqueeze(0)
            total_scores = torch.zeros(len(selected), class_ids.shape[1], device=images.device)
            for sample in range(samples):
                for start in range(0, len(masks), passes.batch_size):
                    stop = min(start + passes.batch_size, len(masks))
                    chunk = sample_masks(masks, start, stop, generator, sample)
                    masked = (image.unsqueeze(0) * chunk.unsqueeze(1)).to(image.dtype)
                    masked = masked.contiguous(memory_format=torch.channels_last)
                    scores = passes.run(network, masked).float()
                    total_scores[start:stop] += scores.gather(1, picked.expand(len(chunk), -1))
                    bar.update(len(chunk))
            out.append(((total_scores / samples).softmax(dim=0).T, selected))
    bar.close()
    return out


def smoothed_weights(samples: int = 35, std: float = 2.0):
    """SS-CAM's (Wang et al. 2020) ``pass_weights``: the scores averaged over ``samples`` sets
    of masks with noise ``N(0, std²)`` added at the input's resolution (torch-cam's defaults;
    the noise comes from ``Passes.seed`` and each image (:func:`~camkit.methods.base.image_seed`),
    drawn per chunk of channels)."""
    if samples < 1 or not std >= 0:
        raise ValueError(f"samples must be ≥ 1 and std ≥ 0, got {samples!r}, {std!r}")

    def sample_masks(masks, start, stop, generator, sample):
        noise = torch.randn(masks[start:stop].shape, generator=generator, device=masks.device)
        return masks[start:stop] + std * noise

    def pass_weights(passes: Passes) -> list[tuple[Tensor, Tensor]]:
        return _averaged_weights(passes, "SS-CAM", samples, sample_masks)

    return pass_weights


def integrated_weights(samples: int = 10, coefficients: list[float] | None = None):
    """IS-CAM's (Naidu et al. 2020) ``pass_weights``: the scores averaged over the masks scaled
    by ``i / samples``, ``i = 1 … samples`` (the paper's integral), or by ``coefficients``.
    (torch-cam scales by the running sum of ``i / samples``: ``coefficients=[0.1, 0.3, 0.6 …]``.)"""
    scales = coefficients or [(i + 1) / samples for i in range(samples)]
    if not scales or samples < 1:
        raise ValueError(f"samples must be ≥ 1, got {samples!r}")

    def sample_masks(masks, start, stop, generator, sample):
        return scales[sample] * masks[start:stop]

    def pass_weights(passes: Passes) -> list[tuple[Tensor, Tensor]]:
        return _averaged_weights(passes, "IS-CAM", len(scales), sample_masks)

    return pass_weights


SSCAM = register(
    Method(
        "sscam",
        needs="masked-forward",
        pass_weights=smoothed_weights(),
        description="SS-CAM: Score-CAM averaged over 35 noisy copies of each mask",
    )
)
ISCAM = register(
    Method(
        "iscam",
        needs="masked-forward",
        pass_weights=integrated_weights(),
        description="IS-CAM: Score-CAM integrated over each mask scaled by i/10",
    )
)
