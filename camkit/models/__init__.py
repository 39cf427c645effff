"""Models: ResNet-50 classifiers (and channel variants)."""

from camkit.models.resnet import ModelInfo, load_classifier, resnet50_variant

__all__ = ["ModelInfo", "load_classifier", "resnet50_variant"]
