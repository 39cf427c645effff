"""Vision transformers against pytorch-grad-cam with its reshape transforms: ViT-B/16 tokens
``(N, 1 + 14·14, C)`` and Swin-T cells ``(N, h, w, C)``, recognised without user code."""

import functools

import numpy as np
import pytest
import torch
import torchvision

from camkit.core.introspect import default_layer
from camkit.explainer import Explainer

VIT_LAYER = "encoder.layers.encoder_layer_11.ln_1"
SWIN_LAYER = "features.7.1.norm1"
SWIN_SIDE = 128  # any size Swin takes: a 4×4 grid of cells


def _seeded(arch: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.get_model(arch, weights=None).eval()
        head = model.heads.head if arch.startswith("vit") else model.head
        torch.nn.init.normal_(head.weight, std=0.05)  # torchvision zero-initialises ViT's head
    return model


@pytest.fixture(scope="module")
def vit():
    return _seeded("vit_b_16")


@pytest.fixture(scope="module")
def swin():
    return _seeded("swin_t")


def _theirs(name, model, layer, images, class_ids, reshape):
    module = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(c) for c in class_ids]
    layers = [model.get_submodule(layer)]
    with getattr(module, name)(model=model, target_layers=layers, reshape_transform=reshape) as cam:
        out = cam(input_tensor=images, targets=targets)
    model.zero_grad(set_to_none=True)
    return out


def _reshapes():
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.reshape_transforms import (
        swinT_reshape_transform,
        vit_reshape_transform,
    )

    side = SWIN_SIDE // 32
    # their Swin transform takes (N, h·w, C); torchvision's Swin blocks output (N, h, w, C)
    swin = functools.partial(swinT_reshape_transform, height=side, width=side)
    return vit_reshape_transform, lambda tensor: swin(tensor.flatten(1, 2))


METHODS = [
    ("gradcam", "GradCAM"),
    ("gradcampp", "GradCAMPlusPlus"),
    ("layercam", "LayerCAM"),
    ("eigencam", "EigenCAM"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "name"), METHODS)
def test_vit_matches_pytorch_grad_cam(vit, method, name):
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    class_ids = [3, 7]
    theirs = _theirs(name, vit, VIT_LAYER, images, class_ids, _reshapes()[0])
    heatmaps = Explainer(vit, VIT_LAYER, method, align="grid")(images, class_ids)
    assert heatmaps.maps.shape[-2:] == (14, 14) and heatmaps.path != "closed-form"
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "name"), METHODS)
def test_swin_matches_pytorch_grad_cam(swin, method, name):
    images = torch.randn(2, 3, SWIN_SIDE, SWIN_SIDE, generator=torch.Generator().manual_seed(2))
    class_ids = [5, 1]
    theirs = _theirs(name, swin, SWIN_LAYER, images, class_ids, _reshapes()[1])
    heatmaps = Explainer(swin, SWIN_LAYER, method, align="grid")(images, class_ids)
    assert heatmaps.maps.shape[-2:] == (4, 4)
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)


@pytest.fixture(scope="module")
def vit_tiny():
    """ViT-B/16's layout (a class token and 14×14 patches at 224 px) at DeiT-Tiny's width:
    Score-CAM runs one forward per channel, 192 here instead of 768 (six minutes on 2 cores)."""
    from torchvision.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VisionTransformer(224, 16, num_layers=4, num_heads=3, hidden_dim=192, mlp_dim=768)
        torch.nn.init.normal_(model.heads.head.weight, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def swin_tiny():
    """Swin-T's layout (four stages, windows of 7, ``features.7.1.norm1`` on a 4×4 grid at
    128 px) at a quarter of its width: 192 channels in the last stage instead of 768."""
    from torchvision.models.swin_transformer import SwinTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SwinTransformer([4, 4], 24, [2, 2, 2, 2], [1, 2, 4, 8], [7, 7])
        torch.nn.init.normal_(model.head.weight, std=0.05)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vit_tiny", "swin_tiny"])
def test_scorecam_matches_pytorch_grad_cam(arch, request):
    model = request.getfixturevalue(arch)
    if arch == "vit_tiny":
        side, layer = 224, "encoder.layers.encoder_layer_3.ln_1"
    else:
        side, layer = SWIN_SIDE, SWIN_LAYER
    reshape = _reshapes()[arch == "swin_tiny"]
    images = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(3))
    theirs = _theirs("ScoreCAM", model, layer, images, [2], reshape)
    explainer = Explainer(model, layer, "scorecam", batch_size=64, align="grid")
    explainer._score_align_corners = True  # pytorch-grad-cam's UpsamplingBilinear2d
    ours = explainer(images, [2]).normalized()[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.slow
def test_ablationcam_zeroes_a_channel_of_every_token(vit_tiny):
    """Ablation-CAM on tokens: channel k zeroed in every token (class token included), the
    relative score drop as its weight — by hand here. (pytorch-grad-cam's AblationLayerVit sets
    it to ``min − 1e7`` instead when the layer is not non-negative, as a LayerNorm is not.)"""
    layer = "encoder.layers.encoder_layer_3.ln_1"
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    heatmaps = Explainer(vit_tiny, layer, "ablationcam", batch_size=64, align="grid")(images, [4])
    assert heatmaps.path == "ablation-forward"
    module, captured = vit_tiny.get_submodule(layer), {}
    channel = {"k": None}

    def hook(_module, _inputs, output):
        captured.setdefault("tokens", output.detach().clone())
        if channel["k"] is not None:
            output = output.clone()
            output[..., channel["k"]] = 0
        return output

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            score = vit_tiny(images)[0, 4]
            drops = []
            for k in range(192):
                channel["k"] = k
                drops.append((score - vit_tiny(images)[0, 4]) / score)
    finally:
        handle.remove()
    cells = captured["tokens"][0, 1:].T.reshape(192, 14, 14)  # patch tokens as a map
    expected = torch.relu(torch.einsum("k,khw->hw", torch.stack(drops), cells))
    scale = expected.abs().max()
    torch.testing.assert_close(heatmaps.maps[0, 0] / scale, expected / scale, rtol=0, atol=1e-4)


def test_default_layers_are_the_last_blocks_normalised_tokens(vit, swin):
    assert default_layer(vit) == VIT_LAYER
    assert default_layer(swin) == SWIN_LAYER


@pytest.mark.slow
def test_swin_default_layer_at_another_size_and_shape(swin):
    images = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(4))
    heatmaps = Explainer(swin)(images, "top-2")
    assert heatmaps.layer == SWIN_LAYER and heatmaps.maps.shape == (1, 2, 3, 5)
    assert heatmaps.geometry.source == "patch" and heatmaps.geometry.offset == (15.5, 15.5)
    assert torch.isfinite(heatmaps.normalized()).all()
