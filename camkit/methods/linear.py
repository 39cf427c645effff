"""Linear class maps from a GAP + linear head: CAM (``W[c]·A``) and FCN (``W[c]·A + b[c]``).

A fully connected layer on globally pooled features is a 1×1 convolution applied at every
position and then averaged (Long et al. 2015), so ``mean_hw(FCN map) == logits`` exactly, and
Grad-CAM at that layer is ``relu(CAM) / (h·w)``. Closed form only: the Explainer applies the
head with :func:`camkit.core.heads.class_maps`.
"""

from __future__ import annotations

from camkit.methods.base import Method
from camkit.methods.registry import register

__all__ = ["CAM", "FCN"]

CAM = register(Method("cam", needs="linear", description="CAM: W[c]·A (Zhou et al. 2016)"))
FCN = register(Method("fcn", needs="linear", bias=True, description="FCN score map: W[c]·A + b[c]"))
