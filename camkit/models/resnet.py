"""Load ResNet-50 classifiers: torchvision ImageNet weights, random weights, or checkpoints.

Also builds channel variants whose last bottleneck (``layer4.2``) outputs C channels instead of
2048: ``conv3`` 512→C, ``bn3`` C, a projection shortcut (1×1 conv 2048→C + BN) because the
identity path still carries 2048 channels, and ``fc = Linear(C, classes)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from camkit.checkpoint import load_checkpoint

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelInfo",
    "WeightsUnavailableError",
    "load_classifier",
    "resnet50_variant",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached locally nor downloadable."""


@dataclass(frozen=True)
class ModelInfo:
    """What camkit knows about a loaded classifier."""

    arch: str
    channels: int
    num_classes: int
    class_names: tuple[str, ...]
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: str = "none"
    random: bool = True
    metrics: dict = field(default_factory=dict, compare=False)

    def class_name(self, class_id: int) -> str:
        if 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return f"class {class_id}"


def _kaiming(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet50_variant(
    channels: int = 2048, num_classes: int = 1000, zero_init_residual: bool = False
) -> torchvision.models.ResNet:
    """A ResNet-50 whose last bottleneck outputs ``channels`` maps (random weights).

    ``channels=2048`` is torchvision's ``resnet50``. Otherwise ``layer4.2`` gets ``conv3``
    (512→C), ``bn3`` (C), a projection shortcut (2048→C + BN) and ``fc`` is ``Linear(C, classes)``.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = torchvision.models.resnet50(
        weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual
    )
    if channels == 2048:
        return model
    block = model.layer4[2]
    width = block.conv3.in_channels  # 512
    inplanes = block.conv1.in_channels  # 2048
    block.conv3 = nn.Conv2d(width, channels, kernel_size=1, bias=False)
    block.bn3 = nn.BatchNorm2d(channels)
    block.downsample = nn.Sequential(
        nn.Conv2d(inplanes, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels)
    )
    _kaiming(block)
    if zero_init_residual:
        nn.init.zeros_(block.bn3.weight)
    model.fc = nn.Linear(channels, num_classes)
    return model


def _imagenet(arch: str) -> tuple[nn.Module, ModelInfo]:
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        raise ValueError(f"no ImageNet weights known for model {arch!r}") from None
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except (URLError, OSError, ConnectionError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsUnavailableError(
            f"ImageNet weights for {arch} are not cached at {cache} and could not be "
            f"downloaded ({reason[:120]}). Copy {os.path.basename(weights.url)} there, pass "
            "--weights PATH to a checkpoint, or --weights none for random weights"
        ) from None
    categories = tuple(weights.meta.get("categories", ()))
    classes = model.fc.out_features if hasattr(model, "fc") else len(categories)
    channels = model.fc.in_features if hasattr(model, "fc") else 0
    info = ModelInfo(
        arch=arch,
        channels=channels,
        num_classes=classes,
        class_names=categories,
        weights=f"imagenet ({weights})",
        random=False,
    )
    return model, info


def _random(
    arch: str, num_classes: int, channels: int, seed: int | None = None
) -> tuple[nn.Module, ModelInfo]:
    if seed is not None:
        with torch.random.fork_rng(devices=[]):  # reproducible, without touching the global RNG
            torch.manual_seed(seed)
            return _random(arch, num_classes, channels)
    if arch == "resnet50":
        model = resnet50_variant(channels, num_classes)
    else:
        if channels != 2048:
            raise ValueError("channel variants exist only for resnet50")
        try:
            model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        except ValueError:
            raise ValueError(
                f"unknown model {arch!r}; use a torchvision classification model name such as "
                "resnet50"
            ) from None
        channels = getattr(getattr(model, "fc", None), "in_features", 0)
    info = ModelInfo(
        arch=arch,
        channels=channels,
        num_classes=num_classes,
        class_names=tuple(f"class {i}" for i in range(num_classes)),
        weights="none (random)",
        random=True,
    )
    return model, info


def _from_checkpoint(path: Path, arch: str) -> tuple[nn.Module, ModelInfo]:
    checkpoint = load_checkpoint(path)
    state = checkpoint["state_dict"]
    arch = str(checkpoint.get("arch", arch))
    fc_weight = state.get("fc.weight")
    if arch == "resnet50" and fc_weight is None:
        raise ValueError(
            f"checkpoint {path} has no fc.weight, so it is not a ResNet-50 classifier "
            f"(first keys: {', '.join(list(state)[:5])})"
        )
    num_classes = int(
        checkpoint.get("num_classes", fc_weight.shape[0] if fc_weight is not None else 1000)
    )
    channels = int(
        checkpoint.get("channels", fc_weight.shape[1] if fc_weight is not None else 2048)
    )
    model, _ = _random(arch, num_classes, channels)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit {arch} with {channels} channels and {num_classes} "
            f"classes: missing keys {list(missing)[:5]}, unexpected keys {list(unexpected)[:5]}"
        )
    names = checkpoint.get("class_names") or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"checkpoint {path} lists {len(names)} class names for {num_classes} classes"
        )
    info = ModelInfo(
        arch=arch,
        channels=channels,
        num_classes=num_classes,
        class_names=tuple(str(n) for n in names),
        input_size=int(checkpoint.get("input_size", 224)),
        mean=tuple(checkpoint.get("mean", IMAGENET_MEAN)),
        std=tuple(checkpoint.get("std", IMAGENET_STD)),
        weights=str(path),
        random=False,
        metrics=dict(checkpoint.get("metrics", {}) or {}),
    )
    return model, info


def load_classifier(
    weights: str | os.PathLike | None = "imagenet",
    arch: str = "resnet50",
    num_classes: int = 1000,
    channels: int = 2048,
) -> tuple[nn.Module, ModelInfo]:
    """Load a classifier in eval mode with what camkit needs to know about it.

    Args:
        weights: ``"imagenet"`` (torchvision ``DEFAULT`` weights; class names from their
            metadata), ``"none"``/``None`` (random), or a path to a camkit checkpoint or a plain
            state_dict (always read with ``weights_only=True``).
        arch: torchvision model name; ``resnet50`` unless a checkpoint says otherwise.
        num_classes, channels: for random weights only.

    Raises:
        WeightsUnavailableError: ImageNet weights are not cached and the network is unreachable.
        FileNotFoundError / ValueError: a bad checkpoint path or file.
    """
    if weights is None or (isinstance(weights, str) and weights.lower() in ("none", "random")):
        model, info = _random(arch, num_classes, channels, seed=0)
    elif isinstance(weights, str) and weights.lower() in ("imagenet", "default"):
        model, info = _imagenet(arch)
    else:
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(
                f"weights {str(weights)!r}: no such checkpoint file; use 'imagenet', 'none' or "
                "the path to a checkpoint"
            )
        model, info = _from_checkpoint(path, arch)
    return model.eval(), info
