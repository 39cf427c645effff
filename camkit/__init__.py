"""camkit: exact, fast Grad-CAM and FCN class maps for ResNet-50, checked against object masks.

Importing camkit is light: torch, cv2 and matplotlib load only when a name that needs them is
used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Explainer": "camkit.explain",
    "Heatmaps": "camkit.explain",
    "LayerProbe": "camkit.hooks",
    "preserved_model_state": "camkit.hooks",
    "list_layers": "camkit.layers",
    "resolve_layer": "camkit.layers",
    "gradcam": "camkit.cam",
    "normalize": "camkit.cam",
    "upsample": "camkit.cam",
    "score_maps": "camkit.fcn",
    "class_maps": "camkit.fcn",
    "load_classifier": "camkit.models.resnet",
    "resnet50_variant": "camkit.models.resnet",
    "load_checkpoint": "camkit.checkpoint",
    "save_checkpoint": "camkit.checkpoint",
    "read_image": "camkit.data.images",
    "preprocess": "camkit.data.images",
    "overlay": "camkit.overlay",
    "panel": "camkit.overlay",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:  # pragma: no cover
    from camkit.cam import gradcam, normalize, upsample
    from camkit.checkpoint import load_checkpoint, save_checkpoint
    from camkit.data.images import preprocess, read_image
    from camkit.explain import Explainer, Heatmaps
    from camkit.fcn import class_maps, score_maps
    from camkit.hooks import LayerProbe, preserved_model_state
    from camkit.layers import list_layers, resolve_layer
    from camkit.models.resnet import load_classifier, resnet50_variant
    from camkit.overlay import overlay, panel


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'camkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
