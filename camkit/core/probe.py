"""LayerProbe: capture the outputs of named layers (and gradients of scores with respect to them).

Hooks are owned by a context manager and removed in ``finally``; the model is left exactly as
found. Gradients come from ``torch.autograd.grad`` on the captured outputs, never from backward
hooks (a ResNet Bottleneck ends in an in-place ReLU) and never from ``.backward()`` into the
user's ``.grad``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from camkit.core.layers import resolve_layer

__all__ = ["LayerProbe", "ProbeMode", "preserved_model_state", "probe_input", "set_eval"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


@contextlib.contextmanager
def preserved_model_state(model: nn.Module) -> Iterator[nn.Module]:
    """Restore training flags, ``requires_grad``, ``.grad`` and hooks on exit, even on error.

    Example:
        >>> with preserved_model_state(model):
        ...     model.eval()
        ...     for p in model.parameters():
        ...         p.requires_grad_(False)
        >>> # model is back in its previous mode with its previous flags
    """
    # This runs on every explanation, so it avoids nn.Module.__getattr__/__setattr__ (slow for
    # the ~150 modules of a ResNet-50) and only writes what changed.
    modules = list(model.modules())
    training = [module.__dict__.get("training", True) for module in modules]
    parameters = list(model.parameters())
    requires_grad = [p.requires_grad for p in parameters]
    grads = [p.grad for p in parameters]
    # .grad tensors can be changed in place (backward accumulates into them): keep their values
    grad_values = [(g._version, g.detach().clone()) if g is not None else None for g in grads]
    hook_keys = []
    for module in modules:
        state = module.__dict__
        hook_keys.append({attr: set(state[attr]) for attr in _HOOK_DICTS if state.get(attr)})
    try:
        yield model
    finally:
        for module, flag in zip(modules, training):
            if module.__dict__.get("training", True) != flag:
                module.__dict__["training"] = flag
        for p, flag, grad, saved in zip(parameters, requires_grad, grads, grad_values):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
            if saved is not None and grad._version != saved[0]:
                with torch.no_grad():
                    grad.copy_(saved[1])
            if p.grad is not grad:
                p.grad = grad
        for module, before in zip(modules, hook_keys):
            state = module.__dict__
            for attr in _HOOK_DICTS:
                hooks = state.get(attr)
                if hooks:
                    kept = before.get(attr, ())
                    for key in [k for k in hooks if k not in kept]:
                        del hooks[key]


def set_eval(model: nn.Module) -> None:
    """``model.eval()`` that skips the ~150 ``__setattr__`` calls when already in eval mode."""
    if any(module.__dict__.get("training", False) for module in model.modules()):
        model.eval()


ProbeMode = Literal["capture", "leaf"]


class LayerProbe:
    """Capture the output of one or more layers during a forward pass.

    Args:
        model: the model to probe.
        layers: dotted names (``"layer4.2"``) or modules of ``model``.
        mode: ``"capture"`` keeps each output as it is in the graph (gradients flow to it from
            the whole forward); ``"leaf"`` detaches it and makes it a fresh leaf that requires
            grad, so the graph starts at the layer: nothing before it is recorded and backward
            runs only through the part after it.

    The module's output is replaced downstream by a clone, so in-place operations after the
    layer (``out += identity`` after ``bn3``, the in-place ReLU) can neither change the captured
    values nor invalidate its gradient. If a module runs more than once per forward, the last
    call is kept.

    Example:
        >>> with LayerProbe(model, ["layer4.2"], mode="leaf") as probe:
        ...     logits = model(images)
        ...     (gradients,) = probe.gradients(logits[:, 3].sum(), ["layer4.2"])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str | nn.Module] | str | nn.Module,
        mode: ProbeMode = "capture",
    ) -> None:
        if mode not in ("capture", "leaf"):
            raise ValueError(f"mode must be 'capture' or 'leaf', got {mode!r}")
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        if not layers:
            raise ValueError("LayerProbe needs at least one layer")
        self.model = model
        self.mode = mode
        self.layers: dict[str, nn.Module] = dict(resolve_layer(model, layer) for layer in layers)
        self.activations: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"layer {name!r} returned {type(output).__name__}, not a tensor; "
                    "probe a layer that outputs a feature map (see `camkit layers`)"
                )
            if self.mode == "leaf" and torch.is_grad_enabled():
                captured = output.detach().requires_grad_(True)
            else:
                captured = output
            self.activations[name] = captured
            return captured.clone()

        return hook

    def __enter__(self) -> LayerProbe:
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()  # never swallows the exception: returns None

    def remove(self) -> None:
        """Remove every hook this probe registered; safe to call more than once."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget captured activations (frees their memory and graph)."""
        self.activations.clear()

    def gradients(
        self,
        scores: torch.Tensor,
        layers: Sequence[str] | None = None,
        retain_graph: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Gradients of ``scores.sum()`` with respect to the captured outputs of ``layers``.

        Uses ``torch.autograd.grad``: no parameter ``.grad`` is touched.
        """
        names = list(self.layers) if layers is None else list(layers)
        missing = [n for n in names if n not in self.activations]
        if missing:
            raise RuntimeError(f"no activation captured for {missing}; run a forward pass first")
        inputs = [self.activations[n] for n in names]
        if not all(t.requires_grad for t in inputs):
            raise RuntimeError(
                "captured activations do not require grad: run the forward with gradients "
                "enabled (not under torch.no_grad / inference_mode)"
            )
        return torch.autograd.grad(scores.sum(), inputs, retain_graph=retain_graph)


def probe_input(model: nn.Module, size: tuple[int, int]) -> torch.Tensor:
    """A zero batch of one ``(1, 3, H, W)`` on the model's device, in its parameters' dtype."""
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    return torch.zeros(1, 3, *size, device=device, dtype=dtype or torch.float32)
