"""ROAD: RemOve And Debias (Rong et al., ICML 2022), a faithfulness score without the
out-of-distribution artefacts of deleting pixels.

The pixels a heatmap ranks most (MoRF) or least (LeRF) relevant are removed at a percentile and
filled by **noisy linear imputation**: each removed pixel is the weighted mean of its eight
neighbours (1/6 side, 1/12 diagonal), solved for all removed pixels at once (a sparse linear
system), plus Gaussian noise of 0.01 — so the filled area carries no information about the
removed values, not even its shape. The score is the change of the class score after
imputation, averaged over the percentiles; ``combined = (LeRF − MoRF) / 2`` (higher is better).
The same definition, thresholds and noise order as pytorch-grad-cam's ``ROADCombined``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from camkit.core.targets import check_targets
from camkit.metrics.faithfulness import one_class_id_per_image

__all__ = ["PERCENTILES", "ROADResult", "impute", "road"]

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)

# (dy, dx, weight): the neighbours of a removed pixel and how much each counts
_NEIGHBOURS = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)


def impute(
    image: torch.Tensor,
    keep: torch.Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noisy linear imputation of ``image`` ``(C, H, W)`` where ``keep`` ``(H, W)`` is False.

    Each removed pixel ``i`` satisfies ``Σ_n w_n (x_n − x_i) = 0`` over its neighbours inside
    the image (known or removed); the system is solved with SciPy's sparse solver, and
    ``noise · N(0, 1)`` is added to the solution (drawn from ``generator``, else torch's global
    generator, in the order pytorch-grad-cam draws it).
    """
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    channels, height, width = image.shape
    missing = ~keep.reshape(-1).cpu().numpy().astype(bool)
    removed = np.flatnonzero(missing)
    if len(removed) == 0:
        return image.clone()
    variable = np.full(height * width, -1)
    variable[removed] = np.arange(len(removed))
    values = image.detach().reshape(channels, -1).cpu().numpy()
    y, x = np.divmod(removed, width)
    rows, cols, weights = [], [], []
    diagonal = np.zeros(len(removed))
    rhs = np.zeros((len(removed), channels))
    for dy, dx, weight in _NEIGHBOURS:
        ny, nx = y + dy, x + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        equation, neighbour = np.flatnonzero(inside), (ny * width + nx)[inside]
        diagonal[equation] -= weight
        known = ~missing[neighbour]
        rhs[equation[known]] -= weight * values[:, neighbour[known]].T
        rows.append(equation[~known])
        cols.append(variable[neighbour[~known]])
        weights.append(np.full(int((~known).sum()), weight))
    index = np.arange(len(removed))
    matrix = csc_matrix(
        (
            np.concatenate([*weights, diagonal]),
            (np.concatenate([*rows, index]), np.concatenate([*cols, index])),
        ),
        shape=(len(removed), len(removed)),
    )
    solution = torch.as_tensor(spsolve(matrix, rhs), dtype=torch.float32).reshape(-1, channels)
    # drawn as pytorch-grad-cam draws it, randn_like of the transposed solution (its strides
    # decide the order of the draws)
    jitter = torch.empty_like(solution.T).normal_(generator=generator) if noise else 0.0
    filled = image.detach().reshape(channels, -1).cpu().clone()
    filled[:, removed] = solution.T + noise * jitter
    return filled.reshape(channels, height, width).to(image.device, image.dtype)


@dataclass(frozen=True)
class ROADResult:
    """Score changes (after imputation − before) ``(N, P)`` per percentile, and their means.

    ``morf``: most relevant removed first (lower is better: the evidence mattered); ``lerf``:
    least relevant first (higher, near 0, is better); ``combined = (LeRF − MoRF) / 2`` per image.
    """

    percentiles: tuple[int, ...]
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        return (self.lerf.mean(axis=1) - self.morf.mean(axis=1)) / 2


def _scores(model: nn.Module, images: torch.Tensor, class_ids: torch.Tensor, kind: str):
    with torch.inference_mode():
        logits = model(images).float()
    if kind == "probability":
        logits = logits.softmax(dim=1)
    check_targets(class_ids, logits.shape[1])
    return logits.gather(1, class_ids.view(-1, 1).to(logits.device))[:, 0].cpu().numpy()


def road(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    class_ids: torch.Tensor | Sequence[int],
    percentiles: Sequence[int] = PERCENTILES,
    noise: float = 0.01,
    score: str = "logit",
    batch_size: int = 16,
) -> ROADResult:
    """ROAD of ``maps`` ``(N, H, W)`` (at the input size, in [0, 1]) for preprocessed
    ``images`` ``(N, 3, H, W)`` and one class per image.

    ``score``: ``"logit"`` (pytorch-grad-cam's ``ClassifierOutputTarget``) or
    ``"probability"`` (``ClassifierOutputSoftmaxTarget``). The model is run in eval mode and
    left as found; imputations draw torch's global generator in pytorch-grad-cam's order (LeRF,
    then MoRF; percentiles, then images).
    """
    from camkit.core.probe import preserved_model_state, set_eval

    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    maps = torch.as_tensor(maps, dtype=torch.float32).cpu()
    if maps.ndim != 3 or maps.shape[0] != len(images) or maps.shape[1:] != images.shape[-2:]:
        raise ValueError(
            f"ROAD needs one map per image at the input size: maps {tuple(maps.shape)}, images "
            f"{tuple(images.shape)}; use Heatmaps.normalized()[:, k]"
        )
    class_ids = one_class_id_per_image(class_ids, images).cpu()
    percentiles = tuple(int(p) for p in percentiles)
    if not percentiles or not all(0 < p < 100 for p in percentiles):
        raise ValueError(f"percentiles must lie in (0, 100), got {percentiles}")
    perturbed = {"lerf": [], "morf": []}
    for order, ranking in (("lerf", 1 - maps), ("morf", maps)):  # LeRF removes low heat first
        for percentile in percentiles:
            for image, rank in zip(images, ranking):
                threshold = float(np.percentile(rank.numpy(), percentile))
                perturbed[order].append(impute(image, rank < threshold, noise))
    with preserved_model_state(model):
        set_eval(model)
        before = _scores(model, images, class_ids, score)
        result = {}
        for order, batch in perturbed.items():
            stacked = torch.stack(batch)  # (P·N, 3, H, W): percentile-major
            repeated = class_ids.repeat(len(percentiles))
            after = np.concatenate(
                [
                    _scores(model, stacked[i : i + batch_size], repeated[i : i + batch_size], score)
                    for i in range(0, len(stacked), batch_size)
                ]
            )
            changes = after.reshape(len(percentiles), len(images)) - before[None]
            result[order] = changes.T.astype(np.float32)  # (N, P)
    return ROADResult(percentiles, result["morf"], result["lerf"])
