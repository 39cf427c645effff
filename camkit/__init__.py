"""camkit: exact, fast Grad-CAM and FCN class maps for ResNet-50, checked against object masks.

Importing camkit is light: torch, cv2 and matplotlib load only when a name that needs them is
used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Explainer": "camkit.explainer",
    "MultiLayerExplainer": "camkit.combine",
    "augmentation_smoothed": "camkit.combine",
    "Settings": "camkit.pipeline.settings",
    "explain_images": "camkit.pipeline.run",
    "MaskSource": "camkit.pipeline.masks",
    "record": "camkit.pipeline.records",
    "to_image": "camkit.heatmaps",
    "Heatmaps": "camkit.heatmaps",
    "LayerProbe": "camkit.core.probe",
    "preserved_model_state": "camkit.core.probe",
    "list_layers": "camkit.core.introspect",
    "resolve_layer": "camkit.core.layers",
    "gradcam": "camkit.cam",
    "normalize": "camkit.cam",
    "upsample": "camkit.cam",
    "score_maps": "camkit.explainer",
    "class_maps": "camkit.core.heads",
    "load_classifier": "camkit.models.resnet",
    "resnet50_variant": "camkit.models.resnet",
    "load_checkpoint": "camkit.io.checkpoint",
    "save_checkpoint": "camkit.io.checkpoint",
    "read_image": "camkit.data.images",
    "preprocess": "camkit.data.images",
    "overlay": "camkit.viz.overlay",
    "panel": "camkit.viz.overlay",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # pragma: no cover
    from camkit.cam import gradcam, normalize, upsample
    from camkit.combine import MultiLayerExplainer, augmentation_smoothed
    from camkit.core.heads import class_maps
    from camkit.core.introspect import list_layers
    from camkit.core.layers import resolve_layer
    from camkit.core.probe import LayerProbe, preserved_model_state
    from camkit.data.images import preprocess, read_image
    from camkit.explainer import Explainer, score_maps
    from camkit.heatmaps import Heatmaps, to_image
    from camkit.io.checkpoint import load_checkpoint, save_checkpoint
    from camkit.models.resnet import load_classifier, resnet50_variant
    from camkit.pipeline.masks import MaskSource
    from camkit.pipeline.records import record
    from camkit.pipeline.run import explain_images
    from camkit.pipeline.settings import Settings
    from camkit.viz.overlay import overlay, panel


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'camkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
