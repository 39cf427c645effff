"""timm classifiers by name (``timm:NAME``) and random weights that give a map to look at."""

import pytest
import torch

from camkit.core.introspect import default_layer
from camkit.explainer import Explainer
from camkit.models.resnet import WeightsUnavailableError, load_classifier
from camkit.models.zoo import nonzero_heads

pytest.importorskip("timm")

# one small model per family, its default layer by camkit's rule, its input side and grid
TIMM_FAMILIES = {
    "resnet": ("resnet18", "layer4.1", 64, (2, 2)),
    "convnext": ("convnext_atto", "stages.3.blocks.1", 64, (2, 2)),
    "efficientnet": ("efficientnet_b0", "bn2", 64, (2, 2)),
    "vit": ("vit_tiny_patch16_224", "blocks.11.norm1", 224, (14, 14)),
    "deit": ("deit_tiny_distilled_patch16_224", "blocks.11.norm1", 224, (14, 14)),  # 2 prefix
    "swin": ("swin_tiny_patch4_window7_224", "layers.3.blocks.1.norm1", 224, (7, 7)),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(TIMM_FAMILIES))
def test_gradcam_at_the_default_layer_of_timm_families(family):
    name, layer, side, grid = TIMM_FAMILIES[family]
    model, info = load_classifier("none", arch=f"timm:{name}", num_classes=7)
    assert info.random and info.num_classes == 7 and info.arch == f"timm:{name}"
    assert default_layer(model) == layer
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    heatmaps = Explainer(model)(images, "top-3")
    assert heatmaps.layer == layer and tuple(heatmaps.maps.shape) == (2, 3, *grid)
    assert torch.isfinite(heatmaps.maps).all() and (heatmaps.maps.flatten(2).std(dim=2) > 0).any()
    reference = Explainer(model, path="autograd")(images, heatmaps.class_ids)
    scale = reference.maps.abs().max()
    assert (heatmaps.maps - reference.maps).abs().max() <= 1e-4 * scale


def test_timm_config_sets_the_input_size_and_normalisation():
    _, info = load_classifier("none", arch="timm:vit_tiny_patch16_224", num_classes=3)
    assert info.input_size == 224 and len(info.mean) == 3 and len(info.std) == 3


def test_unknown_timm_model_names_close_ones():
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet5O'.*timm.list_models"):
        load_classifier("none", arch="timm:resnet5O")


def test_uncached_timm_weights_offline_end_in_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never reach for the network in a test
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    # huggingface_hub reads both when it is imported, which an earlier test may have done
    # (then this one waited ~45 s for the network to time out)
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError, match=r"timm model resnet18 .*--weights none"):
        load_classifier("imagenet", arch="timm:resnet18")


def test_nonzero_heads_fills_only_zero_linear_layers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    kept = model[0].weight.detach().clone()
    torch.nn.init.zeros_(model[1].weight)
    nonzero_heads(model)
    assert torch.equal(model[0].weight, kept) and model[1].weight.abs().gt(0).all()
