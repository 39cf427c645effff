"""FCN-style per-class score maps from a global-average-pooling + linear head.

A fully connected layer on globally pooled features is a 1×1 convolution applied at every
position and then averaged ("convolutionalization", Long et al. 2015). For a ResNet's
``layer4`` output ``A`` (N, C, h, w) and head ``fc`` (W: classes×C, b):

    score_map[c] = W[c] · A + b[c]          (N, classes, h, w), any input size
    mean_hw(score_map[c]) = logits[c]        (exact)
    CAM[c] = W[c] · A = score_map[c] − b[c]  (Zhou et al. 2016)
    Grad-CAM at layer4.2 = relu(CAM[c]) / (h·w)
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from camkit.core.surgery import dilated_last_stage

__all__ = ["class_maps", "find_linear_head", "head_matches", "probability_maps", "score_maps"]


def find_linear_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's classifier: its last ``nn.Linear`` (``fc`` for ResNets)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head")
    return found


def head_matches(
    activations: torch.Tensor, head: nn.Linear, logits: torch.Tensor, rtol: float = 1e-4
) -> bool:
    """True when ``head(mean_hw(activations)) == logits`` numerically (the closed-form test)."""
    if activations.ndim != 4 or activations.shape[1] != head.in_features:
        return False
    if logits.ndim != 2 or logits.shape[1] != head.out_features:
        return False
    pooled = activations.to(head.weight.dtype).mean(dim=(2, 3))  # (N, C)
    predicted = head(pooled)
    logits = logits.to(predicted.dtype)
    # one device-side comparison and a single host sync (no float() round trips)
    tolerance = rtol * (1.0 + logits.abs().amax()) + rtol * logits.abs()
    return bool(((predicted - logits).abs() <= tolerance).all())


def class_maps(
    activations: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    class_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply a linear head as a 1×1 convolution at every position.

    Args:
        activations: ``(N, C, h, w)``.
        weight: ``(classes, C)``; ``bias``: ``(classes,)`` or ``None`` (no bias: CAM).
        class_ids: ``(N, K)`` to keep only those classes, ``None`` for all.

    Returns:
        ``(N, K, h, w)`` score maps.
    """
    if weight.shape[1] != activations.shape[1]:
        raise ValueError(
            f"head expects {weight.shape[1]} channels but the layer has "
            f"{activations.shape[1]} (activations {tuple(activations.shape)}, "
            f"head weight {tuple(weight.shape)})"
        )
    if class_ids is None:
        maps = torch.einsum("kc,nchw->nkhw", weight, activations)
        if bias is not None:
            maps = maps + bias.view(1, -1, 1, 1)
        return maps
    maps = torch.einsum("nkc,nchw->nkhw", weight[class_ids], activations)
    if bias is not None:
        maps = maps + bias[class_ids][..., None, None]
    return maps


def probability_maps(score_maps: torch.Tensor) -> torch.Tensor:
    """Softmax over classes at each position of ``(N, classes, h, w)`` score maps."""
    return score_maps.softmax(dim=1)


def score_maps(
    model: nn.Module,
    images: torch.Tensor,
    layer: str = "layer4",
    output_stride: int = 32,
    probabilities: bool = False,
    include_bias: bool = True,
) -> torch.Tensor:
    """Per-class score maps ``(N, classes, h, w)`` for a batch of preprocessed images.

    Works for any input size (224, 448, 300×500 …). ``output_stride=16`` dilates ``layer4``
    for maps twice as dense. ``probabilities=True`` returns the softmax over classes at each
    position (bias included). The model is left as found.
    """
    from camkit.core.probe import LayerProbe, preserved_model_state

    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
    _, head = find_linear_head(model)
    dilation = dilated_last_stage(model) if output_stride == 16 else contextlib.nullcontext()
    with preserved_model_state(model), dilation, LayerProbe(model, [layer]) as probe:
        model.eval()
        with torch.inference_mode():
            logits = model(images)
            activations = probe.activations[layer]
            if not head_matches(activations, head, logits):
                raise ValueError(
                    f"layer {layer!r} does not feed global average pooling + the linear head "
                    f"(head(mean(A)) != logits); class maps need the last stage, e.g. 'layer4'"
                )
            bias = head.bias if (include_bias or probabilities) else None
            maps = class_maps(activations.float(), head.weight.float(), bias)
            if probabilities:
                maps = probability_maps(maps)
    return maps.clone()
