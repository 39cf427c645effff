"""Shared fixtures: small, seeded, offline models and images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from camkit.models.resnet import resnet50_variant

torch.set_num_threads(2)


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a random model non-trivial BN statistics and a head whose classes clearly differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.05)
        fc = model.fc
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=generator) * 0.05)
        fc.bias.copy_(torch.randn(fc.bias.shape, generator=generator) * 0.5)
    return model.eval()


@pytest.fixture(scope="session")
def _base_model() -> nn.Module:
    torch.manual_seed(0)
    return perturb(resnet50_variant(2048, num_classes=10))


@pytest.fixture
def model(_base_model) -> nn.Module:
    """A fresh copy of a seeded, perturbed ResNet-50 with 10 classes (eval mode)."""
    return copy.deepcopy(_base_model)


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 96, 96, generator=generator)


@pytest.fixture
def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)
    image[20:50, 30:70] = (220, 30, 30)
    return image


@pytest.fixture
def checkpoint(tmp_path, model):
    """A camkit checkpoint of ``model`` (10 named classes, 64 px input)."""
    from camkit.io.checkpoint import save_checkpoint

    names = ["circle", "square", "triangle", "star", "e", "f", "g", "h", "i", "j"]
    return save_checkpoint(
        tmp_path / "model.ckpt",
        model.state_dict(),
        arch="resnet50",
        channels=2048,
        num_classes=10,
        class_names=names,
        input_size=64,
    )


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """Where the demo's models are trained once per test session (shared by the demo test and
    the notebooks); ``$CAMKIT_DEMO_DIR`` reuses an existing one."""
    import os
    from pathlib import Path

    existing = os.environ.get("CAMKIT_DEMO_DIR")
    return Path(existing) if existing else tmp_path_factory.mktemp("camkit-demo")
