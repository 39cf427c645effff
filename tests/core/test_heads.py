import pytest
import torch

from camkit.core.heads import class_maps


def test_class_maps_subset_and_channel_mismatch():
    activations = torch.rand(2, 6, 3, 3)
    weight, bias = torch.randn(4, 6), torch.randn(4)
    full = class_maps(activations, weight, bias)
    subset = class_maps(activations, weight, bias, torch.tensor([[3], [1]]))
    torch.testing.assert_close(subset[:, 0], torch.stack([full[0, 3], full[1, 1]]))
    with pytest.raises(ValueError, match="head expects 5 channels but the layer has 6"):
        class_maps(activations, torch.randn(4, 5))
