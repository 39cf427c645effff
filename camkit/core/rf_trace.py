"""Following a layer's receptive-field geometry through one forward pass.

A :class:`torch.overrides.TorchFunctionMode` watches every op on the way from the input to the
layer and carries, per spatial axis of each tensor, the input position of cell 0's centre, the
step between cells and the receptive-field size: convolutions and pooling (kernel, stride,
padding, dilation), padding, permutes and transposes change them; element-wise ops,
normalisation, linear layers over channels and concatenation keep them; an interpolation, an
adaptive pool to another grid, a slice or branches that disagree lose them (the layer is then
measured instead: :mod:`camkit.core.rf_measure`). :func:`derive_axes` is the entry point;
:func:`camkit.core.geometry.layer_geometry` the public one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from camkit.core.probe import preserved_model_state, probe_input

__all__ = ["Axis", "derive_axes", "pair"]


@dataclass(frozen=True)
class Axis:
    """One axis: cell ``i`` centred on input pixel ``offset + stride·i``, ``field`` px wide."""

    stride: float
    offset: float
    field: float

    def then(self, kernel: int, stride: int, padding: float, dilation: int = 1) -> Axis:
        """This axis after a window op (convolution or pooling)."""
        reach = (kernel - 1) * dilation
        return Axis(
            self.stride * stride,
            self.offset + self.stride * (reach / 2 - padding),
            self.field + reach * self.stride,
        )


_LOST = object()  # geometry that cannot be followed (the layer is then measured)


def pair(value, dims: int = 2) -> tuple:
    """An op argument as a per-axis tuple (an int stands for all ``dims`` axes)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


class _Tracer(TorchFunctionMode):
    """Follows the geometry of each spatial axis of every tensor through one forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.axes: dict[int, tuple[torch.Tensor, dict]] = {}  # id -> (tensor, {dim: axis})

    def of(self, tensor: torch.Tensor) -> dict:
        entry = self.axes.get(id(tensor))
        return entry[1] if entry is not None and entry[0] is tensor else {}

    def mark(self, tensor: torch.Tensor, axes: dict) -> None:
        self.axes[id(tensor)] = (tensor, axes)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = list(_tensors((*args, *kwargs.values())))
        if not any(self.of(t) for t in tensors):
            return out
        rule = _RULES.get(func)
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        for index, value in enumerate(outputs):
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                continue
            if rule is not None:
                axes = rule(self.of(args[0]), value, args, kwargs) if index == 0 else {}
            else:
                axes = _inherit([(t, self.of(t)) for t in tensors], value)
            self.mark(value, axes)
        return out


def _tensors(values):
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _tensors(value)


def _inherit(sources: list[tuple[torch.Tensor, dict]], out: torch.Tensor) -> dict:
    """Element-wise, normalisation, linear over channels, cat, view: each spatial axis whose
    size is unchanged (counted from the front if the rank is kept, else from the end) keeps
    its geometry; axes of different geometry meeting in one output are lost."""
    axes: dict = {}
    for tensor, known in sources:
        for dim, axis in known.items():
            target = dim if out.ndim == tensor.ndim else out.ndim - (tensor.ndim - dim)
            if not 0 <= target < out.ndim or out.shape[target] != tensor.shape[dim]:
                continue
            if out.shape[target] == 1 and tensor.ndim != out.ndim:
                continue
            axes[target] = _merge(axes.get(target), axis)
    return axes


def _merge(first, second):
    """Two branches meeting: the same centres (the wider field), else lost."""
    if first is None or second is None:
        return second if first is None else first
    if first is _LOST or second is _LOST:
        return _LOST
    same = abs(first.stride - second.stride) < 1e-9 and abs(first.offset - second.offset) < 1e-9
    return Axis(first.stride, first.offset, max(first.field, second.field)) if same else _LOST


def _window(known: dict, out: torch.Tensor, kernel, stride, padding, dilation=1) -> dict:
    spatial = range(out.ndim - 2, out.ndim)
    kernel, stride, dilation = pair(kernel), pair(stride or kernel), pair(dilation)
    padding = pair(padding)
    axes = {}
    for j, dim in enumerate(spatial):
        axis = known.get(dim)
        if axis is None or axis is _LOST:
            axes[dim] = _LOST if axis is _LOST else None
            continue
        axes[dim] = axis.then(kernel[j], stride[j], padding[j], dilation[j])
    return {dim: axis for dim, axis in axes.items() if axis is not None}


def _conv(known, out, args, kwargs):
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    bound = dict(zip(names, args)) | kwargs
    weight = bound["weight"]
    dilation = pair(bound.get("dilation", 1))
    padding = bound.get("padding", 0)
    kernel = tuple(weight.shape[-2:])
    if padding == "valid":
        padding = 0
    elif padding == "same":
        padding = tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))
    return _window(known, out, kernel, bound.get("stride", 1), padding, dilation)


def _pool(names: tuple[str, ...]):
    def rule(known, out, args, kwargs):
        bound = dict(zip(names, args)) | kwargs
        kernel = bound["kernel_size"]
        return _window(
            known,
            out,
            kernel,
            bound.get("stride") or kernel,
            bound.get("padding", 0),
            bound.get("dilation", 1),
        )

    return rule


def _pad(known, out, args, kwargs):
    pad = list(args[1] if len(args) > 1 else kwargs["pad"])
    axes = dict(known)
    for j in range(len(pad) // 2):  # pad lists the last axis first: (left, right, top, bottom)
        dim = out.ndim - 1 - j
        axis = axes.get(dim)
        if isinstance(axis, Axis):
            axes[dim] = Axis(axis.stride, axis.offset - axis.stride * pad[2 * j], axis.field)
    return axes


def _permute(known, out, args, kwargs):
    dims = args[1:] if len(args) > 2 or isinstance(args[1], int) else args[1]
    dims = [d % out.ndim for d in (dims if dims else kwargs["dims"])]
    return {new: known[old] for new, old in enumerate(dims) if old in known}


def _transpose(known, out, args, kwargs):
    first, second = (d % out.ndim for d in args[1:3])
    swap = {first: second, second: first}
    return {swap.get(dim, dim): axis for dim, axis in known.items()}


def _resampled(known, out, args, kwargs):
    """Interpolation and adaptive pooling: kept only where the grid is unchanged, and a 1-cell
    output (global pooling) carries no geometry."""
    source = args[0]
    axes = {}
    for dim, axis in known.items():
        if source.shape[dim] == out.shape[dim]:
            axes[dim] = axis
        elif out.shape[dim] > 1:
            axes[dim] = _LOST
    return axes


def _lost(known, out, args, kwargs):
    return {dim: _LOST for dim in known}


_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
_AVG_POOL = ("input", "kernel_size", "stride", "padding")
_RULES = {
    F.conv2d: _conv,
    torch.conv2d: _conv,
    F.max_pool2d: _pool(_MAX_POOL),
    F.max_pool2d_with_indices: _pool(_MAX_POOL),
    torch.max_pool2d: _pool(_MAX_POOL),
    F.avg_pool2d: _pool(_AVG_POOL),
    torch._C._nn.avg_pool2d: _pool(_AVG_POOL),
    F.pad: _pad,
    torch.permute: _permute,
    torch.Tensor.permute: _permute,
    torch.transpose: _transpose,
    torch.Tensor.transpose: _transpose,
    torch.swapaxes: _transpose,
    torch.Tensor.swapaxes: _transpose,
    F.interpolate: _resampled,
    F.adaptive_avg_pool2d: _resampled,
    F.adaptive_max_pool2d: _resampled,
    torch.Tensor.__getitem__: _lost,
    torch.flip: _lost,
    torch.Tensor.flip: _lost,
    torch.roll: _lost,
    torch.Tensor.roll: _lost,
    F.conv_transpose2d: _lost,
    F.grid_sample: _lost,
    F.pixel_shuffle: _lost,
    F.pixel_unshuffle: _lost,
    F.unfold: _lost,
    F.fold: _lost,
}


class _Reached(Exception):
    """Raised by the layer's hook: the forward pass can stop there."""


def derive_axes(
    model: nn.Module, module: nn.Module, size: tuple[int, int]
) -> tuple[Axis, Axis] | None:
    """The ``(y, x)`` geometry of ``module``'s output followed through one forward pass of
    ``model`` at ``size``, or ``None`` where the path loses it. The model is left as found."""
    tracer = _Tracer()
    found: list[dict] = []

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            found.append(tracer.of(output) if output.ndim == 4 else {})
        raise _Reached

    inputs = probe_input(model, size)
    tracer.mark(inputs, {2: Axis(1.0, 0.0, 1.0), 3: Axis(1.0, 0.0, 1.0)})
    with preserved_model_state(model):
        model.eval()
        handle = module.register_forward_hook(hook)
        try:
            with torch.inference_mode(), tracer:
                model(inputs)
        except _Reached:
            pass
        finally:
            handle.remove()
    axes = tuple(found[0].get(dim) if found else None for dim in (2, 3))
    return axes if all(isinstance(axis, Axis) for axis in axes) else None
