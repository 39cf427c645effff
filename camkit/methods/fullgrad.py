"""FullGrad (Srinivas & Fleuret 2019): input-gradients and the bias-gradients of every layer.

For a target score ``y_c``, an input ``x`` and the output ``z`` of every ``Conv2d`` and
``BatchNorm2d`` with a bias ``b`` (for batch norm, its eval-mode effective bias
``bias - running_mean·weight/√(running_var + eps)``)::

    S_c(x) = Σ_colour ψ(|x ⊙ ∂y_c/∂x|) + Σ_layers Σ_channels ψ(|b ⊙ ∂y_c/∂z|)

with ψ as pytorch-grad-cam's ``FullGrad`` applies it: each channel min-max normalised,
``(m - min m) / (1e-7 + max(m - min m))``, and resampled bilinearly to the input size. Its output
is ``normalize(S_c)``; this module returns ``S_c`` itself, the raw map, and leaves the last
min-max normalisation to :class:`~camkit.heatmaps.Heatmaps`.

The gradients come from ``torch.autograd.grad`` with respect to the captured layer outputs and an
input leaf: no ``.backward()``, no parameter gradient, the model left as found. Each layer's output
is captured before the in-place ReLU that follows it (the hook hands a clone downstream), so its
gradient is the one of the layer's own output, as pytorch-grad-cam's tensor hooks see it.

Where this differs from pytorch-grad-cam (equal on torchvision ResNets and the like, to 1e-4):

- the channel maps of a layer (and the layers of one resolution) are summed before resampling,
  once, instead of resampling each channel with ``cv2.resize``: bilinear resampling is linear, and
  ``F.interpolate(mode="bilinear", align_corners=False)`` samples as ``cv2.INTER_LINEAR`` does,
  up or down (no antialiasing), so only float rounding differs;
- each gradient is paired with the bias of the layer that produced it; pytorch-grad-cam pairs its
  list of biases (module registration order) with its list of gradients (backward order), which
  disagree when a model registers modules in another order than it runs them, and a module run
  twice per forward (it contributes twice here) shifts the pairing there;
- subclasses of ``Conv2d`` / ``BatchNorm2d`` count as bias layers (pytorch-grad-cam: exact types).

Example:
    >>> maps = fullgrad_maps(model, images, torch.tensor([[3], [0]]))  # (2, 1, H, W)
    >>> saliency = camkit.cam.normalize(maps)  # = pytorch-grad-cam's FullGrad
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from camkit.methods.base import Method, Passes
from camkit.methods.pixel import Run, check_class_ids, input_graph, target_score
from camkit.methods.registry import register

__all__ = ["FULLGRAD", "biased_layers", "channel_normalize", "effective_bias", "fullgrad_maps"]

Tensor = torch.Tensor

_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: img / (1e-7 + max)


def effective_bias(module: nn.Conv2d | nn.BatchNorm2d) -> Tensor:
    """The bias FullGrad weighs a layer's output gradient with, ``(C,)``: a convolution's
    ``bias``; for batch norm in eval mode, ``bias - running_mean·weight/√(running_var + eps)``
    (the offset of ``y = a·x + b``), as the paper's code and pytorch-grad-cam compute it."""
    with torch.no_grad():
        if isinstance(module, nn.BatchNorm2d):
            if module.running_mean is None or module.running_var is None:
                raise ValueError(
                    f"{module!r} keeps no running statistics (track_running_stats=False), so its "
                    "eval-mode bias is not fixed and FullGrad cannot weigh it; use a model whose "
                    "batch norms track running statistics"
                )
            scale = (
                module.running_mean * module.weight / torch.sqrt(module.running_var + module.eps)
            )
            return (-scale + module.bias).detach()
        return module.bias.detach()


def biased_layers(model: nn.Module) -> list[nn.Module]:
    """Every ``Conv2d`` and ``BatchNorm2d`` of ``model`` (subclasses included) that has a bias, each
    once: FullGrad's bias terms. A ResNet's convolutions have none, so there these are its batch
    norms."""
    return [
        module
        for module in model.modules()
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) and module.bias is not None
    ]


def channel_normalize(maps: Tensor) -> Tensor:
    """pytorch-grad-cam's per-map min-max, ``(m - min m) / (1e-7 + max(m - min m))``, over the
    last two dimensions of ``maps (..., h, w)`` (a flat map gives zeros)."""
    shifted = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return shifted / (_EPS + shifted.amax(dim=(-2, -1), keepdim=True))


@contextlib.contextmanager
def _captured_outputs(
    modules: Sequence[nn.Module], captured: list[tuple[int, Tensor]]
) -> Iterator[None]:
    """Forward hooks that append ``(index in modules, output)`` to ``captured`` for every call of
    every module (a module that runs twice contributes twice); removed on exit, even on error."""
    handles = []

    def hook_for(index: int):
        def hook(_module: nn.Module, _inputs, output):
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return None
            captured.append((index, output))
            # the in-place ReLU after a batch norm then changes the clone, not the captured
            # output, whose gradient stays the one of the layer's own output
            return output.clone()

        return hook

    try:
        for index, module in enumerate(modules):
            handles.append(module.register_forward_hook(hook_for(index)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _fullgrad_map(
    inputs: Tensor,
    gradients: Sequence[Tensor | None],
    captured: Sequence[tuple[int, Tensor]],
    biases: Sequence[Tensor],
) -> Tensor:
    """``S_c`` ``(N, H, W)`` from the gradients of one target score: ``gradients[0]`` with
    respect to ``inputs (N, C, H, W)``, then one per captured layer output."""
    size = tuple(inputs.shape[-2:])
    input_term = (inputs.detach().float() * gradients[0].float()).abs()  # (N, C, H, W)
    total = channel_normalize(input_term).sum(dim=1)  # (N, H, W)
    by_size: dict[tuple[int, int], Tensor] = {}
    for (index, _), gradient in zip(captured, gradients[1:]):
        if gradient is None:  # an output the score does not depend on adds nothing
            continue
        gradient = gradient.float()  # (N, C, h, w)
        terms = (biases[index][None, :, None, None] * gradient).abs()
        layer_map = channel_normalize(terms).sum(dim=1)  # (N, h, w)
        key = tuple(layer_map.shape[-2:])
        by_size[key] = by_size[key] + layer_map if key in by_size else layer_map
    # bilinear resampling is linear: summing channels (and layers of one size) first and
    # resampling once equals pytorch-grad-cam's resampling of every channel map
    for key, layer_sum in by_size.items():
        if key != size:
            # align_corners=False, no antialiasing: cv2.INTER_LINEAR's sampling, up or down
            layer_sum = F.interpolate(
                layer_sum[:, None], size=size, mode="bilinear", align_corners=False
            )[:, 0]
        total = total + layer_sum
    return total


def fullgrad_maps(
    model: nn.Module,
    images: Tensor,
    class_ids: Tensor | Sequence,
    run: Run | None = None,
) -> Tensor:
    """FullGrad saliency maps at input resolution.

    Args:
        model: a classifier returning logits ``(N, classes)``; run in eval mode and left exactly
            as found (training flags, ``requires_grad``, ``.grad``, hooks), also on error.
        images: ``(N, 3, H, W)`` model inputs (not modified).
        class_ids: ``(N, K)`` target classes per image (``(N,)``: one each).
        run: ``run(network, inputs) -> logits``, one forward pass; ``network(inputs)`` if None.

    Returns:
        ``(N, K, H, W)`` float32 raw maps ``S_c`` (non-negative; see the module docstring).
        Min-max normalising each (``camkit.cam.normalize``) gives pytorch-grad-cam's
        ``FullGrad(model, [])(images, targets)``.

    Example:
        >>> maps = fullgrad_maps(model, images, [[3, 7], [0, 3]])  # (2, 2, H, W)
    """
    modules = biased_layers(model)
    biases = [effective_bias(module).float() for module in modules]  # each (C,)
    captured: list[tuple[int, Tensor]] = []
    with input_graph(model, images, run, _captured_outputs(modules, captured)) as graph:
        inputs, logits = graph
        class_ids = check_class_ids(class_ids, logits)  # (N, K)
        targets = class_ids.shape[1]
        outputs = [output for _, output in captured]
        maps = []
        for k in range(targets):
            gradients = torch.autograd.grad(
                target_score(logits, class_ids, k),
                [inputs, *outputs],
                retain_graph=k < targets - 1,
                allow_unused=True,
            )
            maps.append(_fullgrad_map(inputs, gradients, captured, biases))
    return torch.stack(maps, dim=1)  # (N, K, H, W)


def _input_maps(passes: Passes, base: Tensor | None) -> Tensor:
    return fullgrad_maps(passes.model, passes.images, passes.class_ids, passes.run)


FULLGRAD = register(
    Method(
        "fullgrad",
        needs="input-gradients",
        input_maps=_input_maps,
        description="FullGrad: input- and bias-gradients of every layer, at input resolution",
    )
)
