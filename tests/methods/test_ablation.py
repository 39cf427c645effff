"""Ablation-CAM's closed form: the score drop of zeroing each channel at a GAP + linear head."""

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
