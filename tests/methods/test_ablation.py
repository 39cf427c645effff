"""Ablation-CAM's closed form: the score drop of zeroing each channel at a GAP + linear head."""

import pytest
import torch

from camkit.methods.ablation import ablation_closed_form


def test_closed_form_is_the_drop_of_zeroing_each_channel():
    generator = torch.Generator().manual_seed(0)
    activations = torch.rand(2, 5, 3, 3, generator=generator)  # (N, C, h, w)
    weight, bias = torch.randn(4, 5, generator=generator), torch.randn(4, generator=generator)
    logits = activations.mean(dim=(2, 3)) @ weight.T + bias  # (N, classes)
    expected = torch.zeros(2, 4, 5)
    for k in range(5):
        ablated = activations.clone()
        ablated[:, k] = 0
        drop = logits - (ablated.mean(dim=(2, 3)) @ weight.T + bias)
        expected[:, :, k] = drop / logits
    weights = ablation_closed_form(activations, weight / 9, logits)  # every class, shared
    torch.testing.assert_close(weights, expected)
    class_ids = torch.tensor([[3, 0], [1, 1]])
    chosen = ablation_closed_form(activations, weight[class_ids] / 9, logits.gather(1, class_ids))
    torch.testing.assert_close(chosen, expected[torch.arange(2)[:, None], class_ids])


@pytest.mark.parametrize("layer", ("layer4", "layer3"))  # the closed form, and forward passes
def test_a_class_score_of_zero_is_an_error_not_nan_maps(layer):
    import torchvision

    from camkit import Explainer

    model = torchvision.models.resnet18(num_classes=5).eval()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()  # every score 0, as in an untrained ViT's zero-initialised head
    with pytest.raises(ValueError, match="class score, which is exactly 0"):
        Explainer(model, layer, "ablationcam")(torch.randn(1, 3, 64, 64), 0)
