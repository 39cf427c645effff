"""What the pixel-level methods (FullGrad, guided backpropagation) share: one forward from a fresh
input leaf with the model left as found, and targets checked against the logits.

These methods take gradients with respect to the input, so the whole forward is recorded; no
parameter requires grad during it (restored after), so no parameter gradient is ever computed and
no ``.grad`` is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from camkit.core.probe import preserved_model_state, set_eval

__all__ = ["Run", "check_class_ids", "check_images", "forward_run", "input_graph", "target_score"]

Tensor = torch.Tensor
Run = Callable[[nn.Module, Tensor], Tensor]
"""``run(network, inputs) -> logits``: one forward pass (the Explainer passes its own, with its
memory format and autocast settings)."""


def forward_run(network: nn.Module, inputs: Tensor) -> Tensor:
    """The plain forward pass, ``network(inputs)``."""
    return network(inputs)


def check_images(images: Tensor) -> Tensor:
    """``images`` must be a floating-point ``(N, C, H, W)`` tensor."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be a floating-point (N, 3, H, W) batch, got {images.dtype} of shape "
            f"{tuple(images.shape)}; add a batch dimension with images.unsqueeze(0)"
        )
    return images


def check_class_ids(class_ids: Tensor | Sequence, logits: Tensor) -> Tensor:
    """Targets ``(N, K)`` (or ``(N,)``: one per image) as a long tensor on the logits' device,
    each in ``[0, classes)``; anything else is a ``ValueError`` naming what was received."""
    if logits.ndim != 2:
        raise ValueError(
            f"the model must return logits (N, classes), got shape {tuple(logits.shape)}"
        )
    count, classes = logits.shape
    try:
        ids = torch.as_tensor(class_ids, device=logits.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"class_ids must be integers (N, K), got {class_ids!r} ({error})"
        ) from None
    if ids.ndim == 1:
        ids = ids[:, None]
    if ids.ndim != 2 or len(ids) != count or ids.shape[1] == 0:
        raise ValueError(
            f"class_ids must be (N, K) = ({count}, K) for {count} image(s), got shape "
            f"{tuple(ids.shape)}; give one row of target classes per image"
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"class_ids must be integers, got {ids.dtype}")
    ids = ids.long()
    if int(ids.min()) < 0 or int(ids.max()) >= classes:
        raise ValueError(
            f"class_ids must lie in [0, {classes}) for a model with {classes} classes, got "
            f"values from {int(ids.min())} to {int(ids.max())}"
        )
    return ids


def target_score(logits: Tensor, class_ids: Tensor, k: int) -> Tensor:
    """``Σ_n logits[n, class_ids[n, k]]``: one backward gives every image its own target's
    gradient (the model runs in eval mode, so the images of a batch do not interact)."""
    return logits.float().gather(1, class_ids[:, k : k + 1]).sum()


@contextlib.contextmanager
def input_graph(
    model: nn.Module,
    images: Tensor,
    run: Run | None = None,
    during_forward: contextlib.AbstractContextManager | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Run ``model`` in eval mode on a copy of ``images`` that is a leaf requiring grad, and
    yield ``(inputs, logits)``; take ``torch.autograd.grad(..., inputs)`` inside the block.

    ``during_forward`` is entered around the forward pass only (hooks, a torch function mode).
    The model's training flags, ``requires_grad``, ``.grad`` and hooks are restored on exit,
    also when an exception is raised; ``images`` is not touched.
    """
    images = check_images(images)
    run = forward_run if run is None else run
    with preserved_model_state(model):
        set_eval(model)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        # inference_mode(False): an explanation asked for under torch.inference_mode still works
        with torch.inference_mode(False), torch.enable_grad():
            inputs = images.detach().clone().requires_grad_(True)  # (N, C, H, W)
            with during_forward or contextlib.nullcontext():
                # the model gets a non-leaf copy, so in-place ops on its input cannot fail
                logits = run(model, inputs.clone())
            yield inputs, logits
