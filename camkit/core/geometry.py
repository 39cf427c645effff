"""Where a layer's cells look: the input position of each cell's receptive-field centre.

A stride-``S`` layer's cell ``i`` (per axis) is centred on input pixel ``offset + S·i``, pixel
centres at integers. :func:`layer_geometry` derives ``S``, ``offset`` and the receptive-field
size from the operations on the path to the layer — convolutions and pooling (kernel, stride,
padding, dilation), padding, permutes, slices — traced in one small forward pass; element-wise
ops, normalisation, linear layers over channels and concatenation keep them. Where the path
holds something it cannot follow (an interpolation, an adaptive pool to another grid, branches
that disagree), the centres are measured numerically instead (:func:`measure_geometry`: the
midpoint of the support of a cell's input gradient) and ``source`` says so. The tracing lives
in :mod:`camkit.core.rf_trace`, the measurement in :mod:`camkit.core.rf_measure`.

torchvision's ResNets, EfficientNets and MobileNets pad every strided layer so that
``offset = 0``; VGG's 2×2 pools give ``offset = S/2 − ½`` and DenseNet's ``S/2 − 2``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from camkit.core.layers import mixes_positions, resolve_layer
from camkit.core.probe import LayerProbe, preserved_model_state, probe_input
from camkit.core.rf_measure import measure_axes
from camkit.core.rf_trace import derive_axes

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
            axes = derive_axes(model, module, (side, side))
            break
        except (RuntimeError, AssertionError):  # an input size this model refuses: the next
            if index == len(sizes) - 1:
                raise
    if axes is not None:
        return LayerGeometry(
            stride=tuple(a.stride for a in axes),
            offset=tuple(a.offset for a in axes),
            receptive_field=tuple(a.field for a in axes),
        )
    if any(mixes_positions(m) for m in model.modules()):
        return patch_geometry(model, name, side)
    log.info("layer %s: receptive-field centres not derivable from its path; measuring", name)
    return measure_geometry(model, name)


def patch_geometry(model: nn.Module, layer: str | nn.Module, side: int = 224) -> LayerGeometry:
    """Where attention is on the path, a cell has no receptive-field centre (it sees the whole
    input), but it is its patch's token: cell ``i`` is centred on its patch's centre,
    ``stride·i + (stride − 1)/2`` (the grid convention, exact for ViT and Swin patches),
    ``receptive_field`` the patch, ``source`` ``"patch"``. One forward at ``side``."""
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


def measure_geometry(
    model: nn.Module,
    layer: str | nn.Module,
    length: int | None = None,
    max_length: int = 4096,
    axes: tuple[int, ...] = (0, 1),
) -> LayerGeometry:
    """The geometry of ``layer`` measured numerically (``source="measured"``): for two cells in
    the middle of a long, thin random input, the midpoint of the span of input pixels with a
    non-zero gradient, per axis (:func:`camkit.core.rf_measure.measure_axes`, which says how;
    ``length``, ``max_length`` and ``axes`` as there).

    Raises:
        ValueError: the receptive field does not fit in ``max_length`` pixels, or the layer's
            output is not a spatial map.
    """
    found = measure_axes(model, layer, length, max_length, axes)
    return LayerGeometry(
        stride=tuple(m[0] for m in found),
        offset=tuple(m[1] for m in found),
        receptive_field=tuple(m[2] for m in found),
        source="measured",
    )
