"""Measuring a layer's receptive-field centres numerically, where they cannot be derived.

For two cells in the middle of a long, thin random input, the midpoint of the span of input
pixels with a non-zero gradient is the receptive field's centre, per axis
(:func:`measure_axes`; public as :func:`camkit.core.geometry.measure_geometry`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from camkit.core.layers import resolve_layer
from camkit.core.probe import LayerProbe, probe_input
from camkit.core.rf_trace import pair

__all__ = ["measure_axes"]


def _support(gradient: torch.Tensor, axis: int) -> tuple[int, int] | None:
    """First and last input index (along ``axis`` of ``(H, W)``) with a non-zero gradient."""
    profile = gradient.abs().sum(dim=1 - axis)
    nonzero = torch.nonzero(profile > 0).flatten()
    if nonzero.numel() == 0:
        return None
    return int(nonzero[0]), int(nonzero[-1])


class _LocalOnly(TorchFunctionMode):
    """Global pooling (to one cell, or a mean over the spatial axes) passes no gradient, so a
    squeeze-and-excitation gate does not spread a cell's support over the whole input."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            size = pair(args[1] if len(args) > 1 else kwargs["output_size"])
            return out.detach() if all(s == 1 for s in size) else out
        if func in (torch.mean, torch.Tensor.mean, torch.amax, torch.Tensor.amax):
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            source = args[0]
            if dims is not None and {d % source.ndim for d in pair(dims, 1)} >= {2, 3}:
                return out.detach()
        return out


def _measure_axis(
    model: nn.Module, module: nn.Module, axis: int, length: int, short: int
) -> tuple[float, float, float] | None:
    """``(stride, offset, field)`` along ``axis`` from the gradient supports of two middle
    cells (one per image of a batch of two) on a ``length × short`` random input, or ``None``
    when a support reaches the border."""
    size = [short, short]
    size[axis] = length
    inputs = probe_input(model, tuple(size)).expand(2, -1, -1, -1).clone()
    inputs.normal_(generator=torch.Generator(inputs.device).manual_seed(0))
    inputs.requires_grad_(True)
    with LayerProbe(model, [module]) as probe, _LocalOnly():
        model(inputs)
        activations = next(iter(probe.activations.values()))  # (2, C, h, w)
    cells = activations.shape[2 + axis]
    if cells < 3:
        return None
    picks = (cells // 2 - 1, cells // 2)
    chosen = sum(activations[j].narrow(1 + axis, index, 1).sum() for j, index in enumerate(picks))
    (gradient,) = torch.autograd.grad(chosen, inputs)
    supports = [_support(gradient[j].abs().sum(dim=0), axis) for j in range(2)]
    if any(s is None or s[0] == 0 or s[1] == length - 1 for s in supports):
        return None
    if supports[0] == supports[1]:  # both cells see the same span: no local receptive field
        raise ValueError(f"two cells of the layer see the same {supports[0]} input span")
    centres = [(first + last) / 2 for first, last in supports]
    stride = centres[1] - centres[0]
    return stride, centres[0] - stride * picks[0], max(last - first + 1 for first, last in supports)


def measure_axes(
    model: nn.Module,
    layer: str | nn.Module,
    length: int | None = None,
    max_length: int = 4096,
    axes: tuple[int, ...] = (0, 1),
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(stride, offset, field)`` per axis ``(y, x)`` of ``layer``, measured numerically: for
    two cells in the middle of a long, thin random input, the midpoint of the span of input pixels with a non-zero gradient (the
    receptive field's centre), per axis; the input grows until the spans fit inside it. It runs
    on a float64 copy of the model (no gradient underflows to zero at the field's edges), with
    global pooling passing no gradient (a squeeze-excitation gate sees the whole input).
    ``length``: the long side to try first (it doubles while a span reaches the border);
    ``axes``: the axes to measure (``(1,)``: x only, its values stand for both axes).

    Raises:
        ValueError: the receptive field does not fit in ``max_length`` pixels, or the layer's
            output is not a spatial map.
    """
    from camkit.core.introspect import layer_stride

    name, _ = resolve_layer(model, layer)
    stride = layer_stride(model, name)
    short = max(2 * stride, 32)
    found = []
    model = copy.deepcopy(model).double().eval()
    module = model.get_submodule(name)
    with torch.enable_grad():
        for axis in axes:
            side, measured = length or max(8 * stride, 256), None
            while measured is None and side <= max_length:
                try:
                    measured = _measure_axis(model, module, axis, side, short)
                except RuntimeError:  # the model takes inputs of one size only
                    break
                except ValueError as error:
                    message = f"layer {name!r}: cell centres not measurable: {error}"
                    raise ValueError(message) from None
                side *= 2
            if measured is None or abs(measured[0] - stride) > 0.5:
                raise ValueError(
                    f"layer {name!r}: its cells' receptive-field centres could not be measured "
                    f"(no local receptive field within {max_length} px); use align='grid' "
                    "(--align grid)"
                )
            found.append(measured)
    found = found * (3 - len(found))  # one axis measured: it stands for both
    return tuple(tuple(float(v) for v in axis) for axis in found)
