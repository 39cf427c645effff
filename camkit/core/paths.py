"""The Explainer's paths and the options that choose them: which path a method's own
computation takes, the autocast dtypes and the head check's tolerance for each, and the
refusal of a ``path`` or ``eigen_smooth`` that a method cannot honour."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from camkit.methods import Method

__all__ = ["AUTOCAST", "HEAD_RTOL", "OWN_PATHS", "PATHS", "autocast_dtype", "check_method_options"]

PATHS = ("auto", "closed-form", "activation-grad", "autograd")


AUTOCAST = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


# head check tolerance: float32 rounding, or the precision the forward ran in
HEAD_RTOL = {None: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}

# the path of a method's own computation, by what it needs (gradients: "activation-grad" or
# "autograd", chosen by the path option)
OWN_PATHS = {
    "forward": "forward",
    "masked-forward": "masked-forward",
    "ablation": "ablation-forward",
    "noisy-gradients": "noisy-gradients",
    "input-gradients": "input-gradients",
}


def autocast_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """``None``/``"none"``/``"fp32"`` → ``None``; ``"bf16"``, ``"fp16"`` or a dtype → that dtype."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "fp32", "float32")):
        return None
    if isinstance(value, torch.dtype) and value in (torch.bfloat16, torch.float16):
        return value
    if isinstance(value, str) and value.lower() in AUTOCAST:
        return AUTOCAST[value.lower()]
    raise ValueError(f"unknown autocast {value!r}; use 'bf16' or 'fp16' (or None for float32)")


def check_method_options(method: Method, path: str, smooth: bool) -> None:
    """Refuse a ``path`` or ``eigen_smooth`` the method cannot honour, saying why."""
    if path in ("activation-grad", "autograd") and not method.chooses_path:
        only = "closed-form" if method.linear else OWN_PATHS[method.needs]
        raise ValueError(
            f"method {method.name!r} is not gradient-based; it only has the {only} path"
        )
    if path == "closed-form" and method.uses_gradients and not method.has_closed_form:
        raise ValueError(
            f"method {method.name!r} has no closed form; use path='auto' or 'activation-grad'"
        )
    if smooth and method.needs == "input-gradients":
        raise ValueError(
            f"eigen_smooth does not apply to {method.name!r} (maps of input pixels, not of a "
            "layer's channels); use a Grad-CAM-family method such as 'gradcam'"
        )
    if smooth and method.linear:
        raise ValueError(
            f"eigen_smooth does not apply to {method.name!r} (a linear class map); use a "
            "Grad-CAM-family method such as 'gradcam'"
        )
