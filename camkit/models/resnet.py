"""Load ResNet-50 classifiers: torchvision ImageNet weights, random weights, or checkpoints.

Also builds channel variants whose last bottleneck (``layer4.2``) outputs C channels instead of
2048: ``conv3`` 512→C, ``bn3`` C, a projection shortcut (1×1 conv 2048→C + BN) because the
identity path still carries 2048 channels, and ``fc = Linear(C, classes)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from camkit.io.checkpoint import load_checkpoint
from camkit.models.zoo import WeightsUnavailableError, is_timm, nonzero_heads

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelInfo",
    "WeightsUnavailableError",
    "load_classifier",
    "rank_channels",
    "resnet50_variant",
    "variant_from",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What camkit knows about a loaded classifier.

    ``metrics`` and ``warnings`` come from a camkit checkpoint: the last validation figures of
    its training, and what training warned about (e.g. that it learned nothing).
    """

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
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def learned_nothing(self) -> bool:
        """Whether training ended no better than guessing (see
        :func:`camkit.training.chance.learned_nothing`)."""
        return bool(self.metrics.get("learned_nothing", False))

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
    channels: int = 2048,
    num_classes: int = 1000,
    zero_init_residual: bool = False,
    projection: bool | None = None,
) -> torchvision.models.ResNet:
    """A ResNet-50 whose last bottleneck outputs ``channels`` maps (random weights).

    ``channels=2048`` is torchvision's ``resnet50``. Otherwise ``layer4.2`` gets ``conv3``
    (512→C), ``bn3`` (C), a projection shortcut (2048→C + BN) and ``fc`` is ``Linear(C, classes)``.
    ``projection=True`` forces the projection shortcut also for C = 2048 (a surgery variant
    that selects or reorders channels).
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = torchvision.models.resnet50(
        weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual
    )
    if channels == 2048 and not projection:
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


def rank_channels(model: nn.Module) -> torch.Tensor:
    """Output channels of ``layer4.2`` ordered by the L2 norm of their head weights (largest first)."""
    return model.fc.weight.detach().norm(dim=0).argsort(descending=True)


def variant_from(
    parent: nn.Module,
    channels: int,
    keep: Sequence[int] | torch.Tensor | None = None,
) -> tuple[torch.nn.Module, list[int]]:
    """Weight-preserving surgery: a copy of ``parent`` whose ``layer4.2`` outputs ``channels`` maps.

    The kept parent channels (``keep``, default: the ``min(channels, C_parent)`` with the
    largest head weights, see :func:`rank_channels`) take their rows of ``conv3``/``bn3``
    and their columns of ``fc``; the shortcut selects the same channels (a 1×1 conv with
    one-hot rows and a BN that is exactly the identity in eval mode), so each kept channel is
    computed exactly as in the parent. Channels beyond the parent's start with zero head weights.
    Hence: all channels kept → the parent's logits; more channels → the parent's logits; fewer →
    the best-C approximation by head-weight size.

    Returns:
        ``(variant, kept)``: the new model (eval mode) and the parent channel of each of its
        first ``len(kept)`` channels.
    """
    import copy

    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    block = parent.layer4[2]
    parent_channels = block.conv3.out_channels
    if keep is None:
        kept = rank_channels(parent)[: min(channels, parent_channels)].sort().values.tolist()
    else:
        kept = [int(k) for k in (keep.tolist() if isinstance(keep, torch.Tensor) else keep)]
        bad = [k for k in kept if not 0 <= k < parent_channels]
        if bad or len(set(kept)) != len(kept):
            raise ValueError(
                f"keep must list distinct channels in 0–{parent_channels - 1}; got {bad or 'duplicates'}"
            )
        if len(kept) > channels:
            raise ValueError(f"keep lists {len(kept)} channels but the variant has only {channels}")
    if channels == parent_channels and kept == list(range(parent_channels)):
        return copy.deepcopy(parent).eval(), kept  # every channel in place: the parent itself
    variant = resnet50_variant(channels, parent.fc.out_features, projection=True)
    variant.load_state_dict(
        {k: v for k, v in parent.state_dict().items() if not k.startswith(("layer4.2.", "fc."))},
        strict=False,
    )
    # everything outside layer4.2 and fc is the parent's (strict=False above skipped only those)
    new_block, old_block = variant.layer4[2], block
    for name in ("conv1", "bn1", "conv2", "bn2"):
        setattr(new_block, name, copy.deepcopy(getattr(old_block, name)))
    index = torch.tensor(kept, dtype=torch.long)
    count = len(kept)
    with torch.no_grad():
        new_block.conv3.weight[:count] = old_block.conv3.weight[index]
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(new_block.bn3, attr)[:count] = getattr(old_block.bn3, attr)[index]
        projection, projection_bn = new_block.downsample[0], new_block.downsample[1]
        projection.weight.zero_()
        projection_bn.weight.fill_(1.0)
        projection_bn.bias.zero_()
        projection_bn.running_mean.zero_()
        # BN in eval computes (x − mean) / sqrt(var + eps): var = 1 − eps makes it exactly x
        projection_bn.running_var.fill_(1.0 - projection_bn.eps)
        if old_block.downsample is None:  # the parent's shortcut is the identity
            projection.weight[torch.arange(count), index] = 1.0
        else:  # the parent already projects: keep its rows
            old_projection, old_bn = old_block.downsample[0], old_block.downsample[1]
            projection.weight[:count] = old_projection.weight[index]
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(projection_bn, attr)[:count] = getattr(old_bn, attr)[index]
        variant.fc.weight.zero_()
        variant.fc.weight[:, :count] = parent.fc.weight[:, index]
        variant.fc.bias.copy_(parent.fc.bias)
    return variant.eval(), kept


def _timm(arch: str, pretrained: bool, num_classes: int | None) -> tuple[nn.Module, ModelInfo]:
    from camkit.models.zoo import timm_model

    model, config = timm_model(arch, pretrained, num_classes)
    count = config["num_classes"]
    info = ModelInfo(
        arch=arch,
        channels=int(getattr(model, "num_features", 0) or 0),
        num_classes=count,
        class_names=config["class_names"] or tuple(f"class {i}" for i in range(count)),
        input_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        weights=f"timm pretrained ({arch})" if pretrained else "none (random)",
        random=not pretrained,
    )
    return model, info


def _imagenet(arch: str) -> tuple[nn.Module, ModelInfo]:
    if is_timm(arch):
        return _timm(arch, True, None)
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(
                f"unknown model {arch!r}; use a torchvision classification model name such as "
                "resnet50"
            ) from None
        raise ValueError(
            f"no ImageNet weights known for model {arch!r}; pass --weights none or a checkpoint"
        ) from None
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
    arch: str, num_classes: int, channels: int, seed: int | None = None, projection: bool = False
) -> tuple[nn.Module, ModelInfo]:
    if seed is not None:
        with torch.random.fork_rng(devices=[]):  # reproducible, without touching the global RNG
            torch.manual_seed(seed)
            return _random(arch, num_classes, channels, projection=projection)
    if is_timm(arch):
        if channels != 2048:
            raise ValueError("channel variants exist only for resnet50")
        return _timm(arch, False, num_classes)
    if arch == "resnet50":
        model = resnet50_variant(channels, num_classes, projection=projection)
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
        nonzero_heads(model)  # torchvision zero-initialises ViT's head: every map would be 0
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
    if checkpoint.get("kind") == "segmenter":  # its arch ("unet"/"seed") is no classifier name
        raise ValueError(
            f"{path} is a segmenter checkpoint (camkit train-seg); pass it as --segmenter, and a "
            "classifier as --weights"
        )
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
    projection = "layer4.2.downsample.0.weight" in state
    model, _ = _random(arch, num_classes, channels, projection=projection)
    expected = model.state_dict()
    wrong = [
        (key, tuple(value.shape), tuple(expected[key].shape))
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if wrong:
        key, got, want = wrong[0]
        raise ValueError(
            f"checkpoint {path} does not fit {arch} with {channels} channels in layer4.2 and "
            f"{num_classes} classes: {key} has shape {got}, expected {want}"
            + (f" ({len(wrong) - 1} more mismatches)" if len(wrong) > 1 else "")
            + "; fix the checkpoint's 'channels'/'num_classes' metadata or the file"
        )
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
        warnings=tuple(str(w) for w in checkpoint.get("warnings", ()) or ()),
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
