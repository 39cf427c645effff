"""Classifiers by name beyond torchvision: timm models (``timm:NAME``, the optional extra
``pip install camkit[timm]``), and random weights that give a map to look at.

timm's pretrained weights come from its Hugging Face cache: used when cached, otherwise one
clear error (offline) — the same contract as torchvision's ImageNet weights.
"""

from __future__ import annotations

from torch import nn

__all__ = ["TIMM_PREFIX", "WeightsUnavailableError", "is_timm", "nonzero_heads", "timm_model"]

TIMM_PREFIX = "timm:"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached locally nor downloadable."""


def is_timm(arch: str) -> bool:
    """Whether ``arch`` names a timm model (``"timm:convnext_tiny"``)."""
    return isinstance(arch, str) and arch.startswith(TIMM_PREFIX)


def nonzero_heads(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialised linear layers (torchvision's and timm's ViT heads) small random
    weights, as a trained head has: with random weights and a zero head every logit is its
    bias and every heatmap is 0. Other layers are left alone. Returns ``model``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.any():
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
    return model


def _timm():
    try:
        import timm
    except ImportError:
        raise ImportError(
            "timm models need timm: pip install 'camkit[timm]' (or pip install timm)"
        ) from None
    return timm


def timm_model(
    arch: str, pretrained: bool, num_classes: int | None = None
) -> tuple[nn.Module, dict]:
    """A timm model ``timm:NAME`` in eval mode and what its config says about its inputs:
    ``input_size`` (side), ``mean``, ``std`` and ``class_names`` (ImageNet's for a pretrained
    1000-class model, else ``()``).

    Raises:
        ImportError: timm is not installed (how to install it).
        ValueError: timm has no model of that name (close names).
        camkit.models.resnet.WeightsUnavailableError: pretrained weights not cached, offline.
    """
    timm = _timm()
    name = arch[len(TIMM_PREFIX) :] if is_timm(arch) else arch
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:8]}*")[:5]
        hint = f"; close: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm model {name!r}{hint} (timm.list_models() lists them)")
    options = {} if num_classes is None else {"num_classes": num_classes}
    try:
        model = timm.create_model(name, pretrained=pretrained, **options)
    except (OSError, RuntimeError, ConnectionError) as error:  # hub offline, not cached
        if not pretrained:
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsUnavailableError(
            f"pretrained weights for timm model {name} are not in the Hugging Face cache and "
            f"could not be downloaded ({reason[:120]}). Download them once with network "
            "(timm.create_model(NAME, pretrained=True)), pass --weights PATH to a checkpoint, "
            "or --weights none for random weights"
        ) from None
    if not pretrained:
        nonzero_heads(model)
    config = dict(getattr(model, "pretrained_cfg", None) or {})
    classes = getattr(model, "num_classes", num_classes)
    names: tuple[str, ...] = ()
    if pretrained and classes == 1000:
        try:
            info = timm.data.ImageNetInfo()
            names = tuple(info.index_to_description(i) for i in range(1000))
        except Exception:  # an older timm: numbered classes
            names = ()
    return model.eval(), {
        "input_size": int(config.get("input_size", (3, 224, 224))[-1]),
        "mean": tuple(float(v) for v in config.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(float(v) for v in config.get("std", (0.229, 0.224, 0.225))),
        "class_names": names,
        "num_classes": int(classes),
    }
