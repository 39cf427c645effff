"""What a run explains and how: the settings every command shares, validated once.

A flag means the same in every command because every command builds one :class:`Settings`:
``size`` ``None`` is the model's input size and ``0`` each image's native size; several layers
(``"layer4.2,layer3.5"``) are fused by ``fusion``; class ids are checked against the model once,
before any image is read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from torch import nn

from camkit.heatmaps import Targets, check_targets

__all__ = ["Settings", "settings_tag"]


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a map holds, plus batching.

    Attributes:
        layer: dotted name, several joined by commas (fused), or ``None`` for the model's
            default layer.
        method, path, output_stride, eigen_smooth, score_channels, channels_last, autocast,
            seed: as in :class:`camkit.explainer.Explainer`; ``chunk_size`` is its ``batch_size``
            (masked or ablated passes per chunk).
        targets: ``None`` (top class), class ids (for every image), ``"top-k"`` or ``"all"``.
        size: model input side or ``(H, W)``; ``None``: the model's own; ``0``: native size.
        aug_smooth: test-time augmentation smoothing (flips × intensities).
        fusion: ``"mean"`` or ``"max"``, only with several layers.
        align: how maps are put on images: ``"rf"`` (each cell at its receptive-field centre)
            or ``"grid"`` (the peers' ``align_corners=False`` convention).
        batch_size: images per forward pass.
    """

    layer: str | None = None
    method: str = "gradcam"
    targets: Targets = None
    size: int | tuple[int, int] | None = None
    path: str = "auto"
    output_stride: int = 32
    eigen_smooth: bool = False
    aug_smooth: bool = False
    fusion: str | None = None
    chunk_size: int = 32
    score_channels: int | None = None
    channels_last: bool = False
    autocast: str | None = None
    align: str = "rf"
    seed: int = 0
    batch_size: int = 16

    @property
    def layers(self) -> list[str]:
        return [part.strip() for part in (self.layer or "").split(",") if part.strip()]

    def resolved(self, model: nn.Module, info) -> Settings:
        """These settings with the defaults filled in for ``model`` and checked: the default
        layer, the model's input size, class ids in range, fusion only with several layers."""
        from camkit.core.introspect import default_layer

        settings = self if self.layer else replace(self, layer=default_layer(model))
        if settings.size is None:
            settings = replace(settings, size=info.input_size)
        if settings.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {settings.batch_size}")
        if len(settings.layers) > 1 and settings.fusion is None:
            settings = replace(settings, fusion="mean")
        if settings.fusion is not None and len(settings.layers) < 2:
            raise ValueError(
                f"fusion {settings.fusion!r} needs several layers, e.g. layer='layer4.2,layer3.5' "
                "(--layer layer4.2,layer3.5)"
            )
        check_targets(settings.targets, info.num_classes)
        return settings

    def explainer(self, model: nn.Module):
        """The Explainer (or the fusing MultiLayerExplainer) these settings describe."""
        from camkit.combine import MultiLayerExplainer
        from camkit.explainer import Explainer

        options = {
            "path": self.path,
            "output_stride": self.output_stride,
            "batch_size": self.chunk_size,
            "score_channels": self.score_channels,
            "eigen_smooth": self.eigen_smooth,
            "channels_last": self.channels_last,
            "autocast": self.autocast,
            "align": self.align,
            "seed": self.seed,
        }
        if len(self.layers) > 1:
            return MultiLayerExplainer(
                model, self.layers, self.method, fusion=self.fusion or "mean", **options
            )
        return Explainer(model, layer=self.layers[0], method=self.method, **options)

    def describe(self) -> dict:
        """The settings as plain JSON values (recorded in records and export settings)."""
        values = asdict(self)
        values["size"] = list(self.size) if isinstance(self.size, tuple) else self.size
        targets = self.targets
        if targets is not None and not isinstance(targets, (str, int)):
            values["targets"] = [int(t) for t in targets]
        return values


def settings_tag(
    settings: Settings, default_layer: str | None = None, default_size: object = None
) -> str:
    """A file-name part naming the method and every setting that changes a map and differs
    from the defaults, so outputs of different settings never overwrite each other:
    ``gradcam``, ``gradcam-eigen-os16``, ``scorecam@layer3.5-top3``."""
    parts = [settings.method]
    if settings.layer and settings.layer != default_layer:
        parts[0] += "@" + "+".join(settings.layers)
    if settings.fusion and settings.fusion != "mean":
        parts.append(f"fuse{settings.fusion}")
    if settings.output_stride != 32:
        parts.append(f"os{settings.output_stride}")
    if settings.eigen_smooth:
        parts.append("eigen")
    if settings.aug_smooth:
        parts.append("aug")
    if settings.autocast:
        parts.append(str(settings.autocast))
    if settings.align != "rf":
        parts.append(settings.align)
    if settings.seed != 0:
        parts.append(f"seed{settings.seed}")
    targets = settings.targets
    if isinstance(targets, str):
        parts.append(targets.replace("-", ""))
    elif isinstance(targets, int):
        parts.append(f"c{targets}")
    elif targets is not None:
        parts.append("c" + "_".join(str(int(t)) for t in targets))
    if settings.size == 0:
        parts.append("native")
    elif settings.size is not None and settings.size != default_size:
        size = settings.size
        parts.append("s" + ("x".join(map(str, size)) if isinstance(size, tuple) else str(size)))
    return "-".join(parts)
