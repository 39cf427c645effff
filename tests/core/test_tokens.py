"""Token layouts recognised from shapes: maps, channels-last cells, ViT tokens — and every
method on them."""

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from camkit.combine import MultiLayerExplainer, augmentation_smoothed
from camkit.core.geometry import layer_geometry
from camkit.core.introspect import default_layer, layer_stride
from camkit.core.tokens import TokenLayout, token_layout
from camkit.explainer import METHODS, Explainer
from camkit.methods import get

LAST = "encoder.layers.encoder_layer_1.ln_1"


def _vit(side: int = 64) -> nn.Module:
    """A two-block ViT/16 of width 32 (a class token, (side/16)² patches)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VisionTransformer(side, 16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
        nn.init.normal_(model.heads.head.weight, std=0.1)  # torchvision zero-initialises it
    return model.eval()


@pytest.mark.parametrize(
    ("shape", "size", "expected"),
    [
        ((2, 2048, 7, 7), (224, 224), TokenLayout("map", (7, 7))),
        ((2, 768, 7, 10), (224, 320), TokenLayout("map", (7, 10))),
        ((2, 7, 7, 768), (224, 224), TokenLayout("channels-last", (7, 7))),
        ((2, 3, 5, 768), (96, 160), TokenLayout("channels-last", (3, 5))),
        ((2, 197, 768), (224, 224), TokenLayout("tokens", (14, 14), prefix=1)),
        ((2, 196, 384), (224, 224), TokenLayout("tokens", (14, 14), prefix=0)),
        ((2, 50, 768), (224, 224), TokenLayout("tokens", (7, 7), prefix=1)),  # ViT-B/32
        ((2, 2 + 6 * 10, 64), (96, 160), TokenLayout("tokens", (6, 10), prefix=2)),
        ((1, 5 + 16 * 16, 64), (224, 224), TokenLayout("tokens", (16, 16), prefix=5)),
    ],
)
def test_layouts_from_shapes(shape, size, expected):
    assert token_layout(shape, size) == expected


def test_a_square_ambiguity_goes_to_the_layer_norm_over_the_last_dimension():
    shape = (1, 7, 7, 7)  # (N, C, h, w) and (N, h, w, C) both fit a 224 px input
    assert token_layout(shape, (224, 224)).kind == "map"
    assert token_layout(shape, (224, 224), module=nn.LayerNorm(7)).kind == "channels-last"


def test_the_models_patch_size_decides_the_grid():
    model = _vit(96)
    assert token_layout((1, 37, 32), (96, 96), model) == TokenLayout("tokens", (6, 6), 1)


@pytest.mark.parametrize("shape", [(2, 1000), (2, 47, 768), (2, 3, 5000, 7)])
def test_shapes_without_a_grid_are_refused_by_name(shape):
    with pytest.raises(ValueError, match=r"layer 'head' outputs shape .*not a spatial map"):
        token_layout(shape, (224, 224), name="head")


def test_to_map_is_a_permutation_of_the_patch_tokens():
    tokens = torch.randn(2, 1 + 3 * 4, 8)
    maps = TokenLayout("tokens", (3, 4), 1).to_map(tokens)
    assert maps.shape == (2, 8, 3, 4)
    torch.testing.assert_close(maps[1, :, 2, 3], tokens[1, 1 + 2 * 4 + 3])
    cells = torch.randn(2, 3, 4, 8)
    torch.testing.assert_close(
        TokenLayout("channels-last", (3, 4)).to_map(cells)[0, :, 1, 2], cells[0, 1, 2]
    )


def test_vit_default_layer_stride_and_patch_geometry():
    model = _vit()
    assert default_layer(model) == LAST
    # torchvision's ViT takes its own size only: the probes fall back to it
    assert layer_stride(model, LAST, probe_size=64) == 16
    geometry = layer_geometry(model, LAST, sizes=(64,))
    assert geometry.source == "patch" and geometry.stride == (16, 16)
    assert geometry.offset == (7.5, 7.5)  # a patch's centre: the grid convention


@pytest.mark.parametrize("path", ["activation-grad", "autograd"])
def test_token_gradients_equal_the_input_recorded_reference(path):
    model = _vit()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = Explainer(model, LAST, "gradcam", path=path)(images, "top-3")
    assert ours.path == path and ours.maps.shape == (2, 3, 4, 4)
    reference = Explainer(model, LAST, "gradcam", path="autograd")(images, ours.class_ids)
    torch.testing.assert_close(ours.maps, reference.maps)
    assert ours.maps.flatten(2).std(dim=2).gt(0).all()


def test_every_method_smoothing_fusion_and_tta_on_tokens():
    model = _vit()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for method in METHODS:
        if method in ("cam", "fcn"):  # need a GAP + linear head: ViT's reads the class token
            with pytest.raises(ValueError, match="does not feed global average pooling"):
                Explainer(model, LAST, method)(images)
            continue
        heatmaps = Explainer(model, LAST, method, batch_size=16)(images, "top-2")
        pixels = get(method).needs == "input-gradients"  # maps at the input's resolution
        assert heatmaps.maps.shape == ((2, 2, 64, 64) if pixels else (2, 2, 4, 4)), method
        assert torch.isfinite(heatmaps.normalized()).all(), method
    smoothed = Explainer(model, LAST, "gradcam", eigen_smooth=True)(images, "top-2")
    assert smoothed.maps.shape == (2, 2, 4, 4)
    fused = MultiLayerExplainer(model, [LAST, "encoder.layers.encoder_layer_0.ln_1"])(images)
    assert fused.maps.shape == (2, 1, 64, 64) and torch.isfinite(fused.maps).all()
    tta = augmentation_smoothed(Explainer(model, LAST), images)
    assert tta.maps.shape == (2, 1, 64, 64) and torch.isfinite(tta.maps).all()


def test_a_model_of_one_input_size_refuses_others_in_one_line():
    model = _vit()  # 64 px only
    with pytest.raises(ValueError, match=r"VisionTransformer refused a 96×96 px input .*--size 64"):
        Explainer(model, LAST)(torch.randn(1, 3, 96, 96))
