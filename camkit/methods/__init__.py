"""CAM methods as registered objects: one module per family.

``gradient`` (gradcam, gradcampp, xgradcam, hirescam, layercam, gradcam-elementwise,
eigengradcam, finercam, shapleycam), ``score`` (scorecam, sscam, iscam), ``ablation``
(ablationcam), ``eigen`` (eigencam, kpcacam), ``smoothgrad`` (smoothgradcampp), ``fullgrad``
(fullgrad), ``guided`` (guidedbackprop, guidedgradcam), ``linear`` (cam, fcn). Each module registers its methods on
import, in that order; :func:`names` lists them, and those registered later.

Example:
    >>> from camkit import methods
    >>> methods.get("gradcampp").needs
    'gradients'
    >>> methods.names()[:2]
    ('gradcam', 'gradcampp')
"""

from __future__ import annotations

from camkit.methods.base import NEEDS, REGION_NEEDS, Method, Passes
from camkit.methods.registry import get, names, register, unregister

# the built-in families register themselves on import, in this order
from camkit.methods import gradient, score, ablation, eigen, smoothgrad  # isort: skip
from camkit.methods import fullgrad, guided, linear  # isort: skip

__all__ = [
    "NEEDS",
    "REGION_NEEDS",
    "Method",
    "Passes",
    "ablation",
    "eigen",
    "fullgrad",
    "get",
    "gradient",
    "guided",
    "linear",
    "names",
    "register",
    "score",
    "smoothgrad",
    "unregister",
]
