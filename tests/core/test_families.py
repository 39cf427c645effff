"""Every torchvision classification family: a default layer by rule, and Grad-CAM there."""

import re

import pytest
import torch
import torchvision

from camkit.core.introspect import default_layer
from camkit.core.probe import LayerProbe
from camkit.explainer import Explainer

# the smallest model of each torchvision CNN family, and an input size it takes
FAMILIES = {
    "alexnet": ("alexnet", 96, "features.12"),
    "convnext": ("convnext_tiny", 64, "features.7"),
    "densenet": ("densenet121", 64, "features.norm5"),
    "efficientnet": ("efficientnet_b0", 64, "features.8"),
    "efficientnet_v2": ("efficientnet_v2_s", 64, "features.7"),
    "googlenet": ("googlenet", 64, "inception5b"),
    "inception": ("inception_v3", 192, "Mixed_7c"),
    "maxvit": ("maxvit_t", 224, "blocks.3.layers.1.layers.grid_attention"),
    "mnasnet": ("mnasnet0_5", 64, "layers"),
    "mobilenet_v2": ("mobilenet_v2", 64, "features.18"),
    "mobilenet_v3": ("mobilenet_v3_small", 64, "features.12"),
    "regnet_x": ("regnet_x_400mf", 64, "trunk_output.block4.block4-11"),
    "regnet_y": ("regnet_y_400mf", 64, "trunk_output.block4.block4-5"),
    "resnet": ("resnet18", 64, "layer4.1"),
    "resnext": ("resnext50_32x4d", 64, "layer4.2"),
    "shufflenet": ("shufflenet_v2_x0_5", 64, "conv5"),
    "squeezenet": ("squeezenet1_1", 64, "features.12"),
    "swin": ("swin_t", 64, "features.7.1.norm1"),
    "vgg": ("vgg11", 64, "features.20"),
    "vit": ("vit_b_16", 224, "encoder.layers.encoder_layer_11.ln_1"),
    "wide_resnet": ("wide_resnet50_2", 64, "layer4.2"),
}

TOKEN_GRIDS = {"vit": (14, 14), "swin": (2, 2)}  # 224 px / 16; 64 px / 32


def _model(arch: str) -> torch.nn.Module:
    options = {"init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.get_model(arch, weights=None, **options).eval()
        if arch.startswith("vit"):  # torchvision zero-initialises ViT's head: every map 0
            torch.nn.init.normal_(model.heads.head.weight, std=0.05)
        return model


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_gradcam_at_the_default_layer_of_every_family(family):
    arch, size, expected = FAMILIES[family]
    model = _model(arch)
    layer = default_layer(model)
    assert layer == expected
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with LayerProbe(model, [layer]) as probe, torch.no_grad():
        model(images)
        grid = tuple(probe.activations[layer].shape[-2:])
    grid = TOKEN_GRIDS.get(family, grid)  # (N, 1 + h·w, C) and (N, h, w, C): not the last two
    heatmaps = Explainer(model)(images, "top-5")  # random weights: some classes' maps are 0
    assert heatmaps.layer == layer and tuple(heatmaps.maps.shape) == (2, 5, *grid)
    maps = heatmaps.maps
    assert torch.isfinite(maps).all() and (maps.flatten(2).std(dim=2) > 0).any()
    assert torch.isfinite(heatmaps.normalized()).all()


def test_every_family_is_listed():
    def family(name: str) -> str:
        return re.match(r"[a-z]+", name).group()

    names = torchvision.models.list_models(module=torchvision.models)
    covered = {family(arch) for arch, *_ in FAMILIES.values()}
    assert {family(name) for name in names} <= covered


def test_a_model_without_a_spatial_map_is_refused_clearly():
    model = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 10)
    )
    with pytest.raises(ValueError, match=r"no default layer for Sequential.*--layer"):
        default_layer(model)
