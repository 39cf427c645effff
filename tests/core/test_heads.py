import pytest
import torch

from camkit.core.heads import class_maps, score_maps
from camkit.core.probe import LayerProbe
from camkit.core.surgery import dilated_last_stage


@pytest.mark.parametrize("size", [(96, 96), (64, 160), (100, 75)])
def test_mean_of_score_maps_is_logits_for_any_size(model, size):
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(images)
    maps = score_maps(model, images)
    assert maps.shape[:2] == (2, 10)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), logits, rtol=1e-5, atol=1e-5)
    cams = score_maps(model, images, include_bias=False)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + model.fc.bias, logits, rtol=1e-5, atol=1e-5)


def test_probability_maps(model, images):
    probabilities = score_maps(model, images, probabilities=True)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3, 3, 3))
    assert (probabilities >= 0).all()


def test_output_stride_16_doubles_resolution_and_restores_model(model, images):
    before = [
        (m.stride, m.dilation, m.padding) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    coarse = score_maps(model, images)
    dense = score_maps(model, images, output_stride=16)
    assert dense.shape[-1] == 2 * coarse.shape[-1]
    after = [
        (m.stride, m.dilation, m.padding) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert before == after
    with dilated_last_stage(model), torch.no_grad():
        logits = model(images)  # the dilated network's own logits
    torch.testing.assert_close(dense.mean(dim=(2, 3)), logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="output_stride"):
        score_maps(model, images, output_stride=8)


def test_layer_that_does_not_feed_the_head_is_refused(model, images):
    with pytest.raises(ValueError, match="global average pooling"):
        score_maps(model, images, layer="layer3")


def test_class_maps_subset_and_channel_mismatch():
    activations = torch.rand(2, 6, 3, 3)
    weight, bias = torch.randn(4, 6), torch.randn(4)
    full = class_maps(activations, weight, bias)
    subset = class_maps(activations, weight, bias, torch.tensor([[3], [1]]))
    torch.testing.assert_close(subset[:, 0], torch.stack([full[0, 3], full[1, 1]]))
    with pytest.raises(ValueError, match="head expects 5 channels but the layer has 6"):
        class_maps(activations, torch.randn(4, 5))


def test_probe_sees_the_same_map_as_score_maps(model, images):
    with LayerProbe(model, "layer4") as probe, torch.no_grad():
        model(images)
    expected = torch.einsum("kc,nchw->nkhw", model.fc.weight, probe.activations["layer4"])
    torch.testing.assert_close(score_maps(model, images, include_bias=False), expected)
