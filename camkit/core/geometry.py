"""Where a layer's cells look: the input position of each cell's receptive-field centre.

A stride-``S`` layer's cell ``i`` (per axis) is centred on input pixel ``offset + S·i``, pixel
centres at integers. :func:`layer_geometry` derives ``S``, ``offset`` and the receptive-field
size from the operations on the path to the layer — convolutions and pooling (kernel, stride,
padding, dilation), padding, permutes, slices — traced in one small forward pass; element-wise
ops, normalisation, linear layers over channels and concatenation keep them. Where the path
holds something it cannot follow (an interpolation, an adaptive pool to another grid, branches
that disagree), the centres are measured numerically instead (:func:`measure_geometry`: the
midpoint of the support of a cell's input gradient) and ``source`` says so.

torchvision's ResNets, EfficientNets and MobileNets pad every strided layer so that
``offset = 0``; VGG's 2×2 pools give ``offset = S/2 − ½`` and DenseNet's ``S/2 − 2``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from camkit.core.layers import mixes_positions, resolve_layer
from camkit.core.probe import probe_input

__all__ = ["IDENTITY", "LayerGeometry", "layer_geometry", "measure_geometry", "patch_geometry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerGeometry:
    """Per axis ``(y, x)``: cell ``i`` is centred on input pixel ``offset + stride·i``.

    ``receptive_field``: the cell's receptive-field size in input pixels; ``source``:
    ``"derived"`` (from the layer's path), ``"measured"`` (numerically) or ``"patch"``
    (attention on the path: the cell's patch, :func:`patch_geometry`).
    """

    stride: tuple[float, float]
    offset: tuple[float, float]
    receptive_field: tuple[float, float]
    source: str = "derived"

    def centres(self, cells: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input-pixel centres of the cells of an ``(h, w)`` map, per axis (float64)."""
        return tuple(
            offset + stride * torch.arange(count, dtype=torch.float64)
            for offset, stride, count in zip(self.offset, self.stride, cells)
        )

    def describe(self) -> dict:
        """As plain JSON values (records, export settings)."""
        return {
            "stride": list(self.stride),
            "offset": list(self.offset),
            "receptive_field": list(self.receptive_field),
            "source": self.source,
        }


IDENTITY = LayerGeometry((1.0, 1.0), (0.0, 0.0), (1.0, 1.0))


@dataclass(frozen=True)
class _Axis:
    stride: float
    offset: float
    field: float

    def then(self, kernel: int, stride: int, padding: float, dilation: int = 1) -> _Axis:
        """This axis after a window op (convolution or pooling)."""
        reach = (kernel - 1) * dilation
        return _Axis(
            self.stride * stride,
            self.offset + self.stride * (reach / 2 - padding),
            self.field + reach * self.stride,
        )


_LOST = object()  # geometry that cannot be followed (the layer is then measured)


def _pair(value, dims: int = 2) -> tuple:
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
    return _Axis(first.stride, first.offset, max(first.field, second.field)) if same else _LOST


def _window(known: dict, out: torch.Tensor, kernel, stride, padding, dilation=1) -> dict:
    spatial = range(out.ndim - 2, out.ndim)
    kernel, stride, dilation = _pair(kernel), _pair(stride or kernel), _pair(dilation)
    padding = _pair(padding)
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
    dilation = _pair(bound.get("dilation", 1))
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
        if isinstance(axis, _Axis):
            axes[dim] = _Axis(axis.stride, axis.offset - axis.stride * pad[2 * j], axis.field)
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


def _derive(model: nn.Module, module: nn.Module, size: tuple[int, int]) -> LayerGeometry | None:
    """The geometry followed through one forward pass at ``size``, or ``None``."""
    from camkit.core.probe import preserved_model_state

    tracer = _Tracer()
    found: list[dict] = []

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            found.append(tracer.of(output) if output.ndim == 4 else {})
        raise _Reached

    inputs = probe_input(model, size)
    tracer.mark(inputs, {2: _Axis(1.0, 0.0, 1.0), 3: _Axis(1.0, 0.0, 1.0)})
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
    axes = [found[0].get(dim) if found else None for dim in (2, 3)]
    if not all(isinstance(axis, _Axis) for axis in axes):
        return None
    return LayerGeometry(
        stride=tuple(a.stride for a in axes),
        offset=tuple(a.offset for a in axes),
        receptive_field=tuple(a.field for a in axes),
    )


def layer_geometry(
    model: nn.Module, layer: str | nn.Module, sizes: tuple[int, ...] = (64, 224, 256, 512)
) -> LayerGeometry:
    """The stride, cell-centre offset and receptive field of ``layer`` per axis, derived from the
    operations on its path (one forward at the first of ``sizes`` the model accepts: they do not
    depend on it), else measured (:func:`measure_geometry`).

    Run it under the same surgery as the explanation (e.g. ``dilated_last_stage`` for output
    stride 16). The model is left as found.
    """
    name, module = resolve_layer(model, layer)
    for index, side in enumerate(sizes):
        try:
            geometry = _derive(model, module, (side, side))
            break
        except (RuntimeError, AssertionError):  # an input size this model refuses: the next
            if index == len(sizes) - 1:
                raise
    if geometry is None:
        if any(mixes_positions(m) for m in model.modules()):
            return patch_geometry(model, name, side)
        log.info("layer %s: receptive-field centres not derivable from its path; measuring", name)
        geometry = measure_geometry(model, name)
    return geometry


def patch_geometry(model: nn.Module, layer: str | nn.Module, side: int = 224) -> LayerGeometry:
    """Where attention is on the path, a cell has no receptive-field centre (it sees the whole
    input), but it is its patch's token: cell ``i`` is centred on its patch's centre,
    ``stride·i + (stride − 1)/2`` (the grid convention, exact for ViT and Swin patches),
    ``receptive_field`` the patch, ``source`` ``"patch"``. One forward at ``side``."""
    from camkit.core.probe import LayerProbe, preserved_model_state
    from camkit.core.tokens import token_layout

    name, module = resolve_layer(model, layer)
    with preserved_model_state(model), LayerProbe(model, [name]) as probe:
        model.eval()
        with torch.inference_mode():
            model(probe_input(model, (side, side)))
        shape = tuple(probe.activations[name].shape)
    cells = token_layout(shape, (side, side), model, module, name).grid
    stride = tuple(side / count for count in cells)
    return LayerGeometry(
        stride=stride,
        offset=tuple((s - 1) / 2 for s in stride),
        receptive_field=stride,
        source="patch",
    )


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
            size = _pair(args[1] if len(args) > 1 else kwargs["output_size"])
            return out.detach() if all(s == 1 for s in size) else out
        if func in (torch.mean, torch.Tensor.mean, torch.amax, torch.Tensor.amax):
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            source = args[0]
            if dims is not None and {d % source.ndim for d in _pair(dims, 1)} >= {2, 3}:
                return out.detach()
        return out


def _measure_axis(
    model: nn.Module, module: nn.Module, axis: int, length: int, short: int
) -> tuple[float, float, float] | None:
    """``(stride, offset, field)`` along ``axis`` from the gradient supports of two middle
    cells (one per image of a batch of two) on a ``length × short`` random input, or ``None``
    when a support reaches the border."""
    from camkit.core.probe import LayerProbe

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


def measure_geometry(
    model: nn.Module,
    layer: str | nn.Module,
    length: int | None = None,
    max_length: int = 4096,
    axes: tuple[int, ...] = (0, 1),
) -> LayerGeometry:
    """The geometry of ``layer`` measured numerically: for two cells in the middle of a long,
    thin random input, the midpoint of the span of input pixels with a non-zero gradient (the
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
    return LayerGeometry(
        stride=tuple(float(m[0]) for m in found),
        offset=tuple(float(m[1]) for m in found),
        receptive_field=tuple(float(m[2]) for m in found),
        source="measured",
    )
