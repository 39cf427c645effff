"""Each gradient method's closed form is its full-gradient formula at a constant gradient."""

import pytest
import torch

from camkit.cam import GRADIENT_METHODS, closed_form_weights, contributions, gradient_method
from camkit.methods import get


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_closed_form_is_the_formula_at_constant_gradients(name):
    generator = torch.Generator().manual_seed(3)
    activations = torch.rand(2, 6, 3, 4, generator=generator)  # (N, C, h, w)
    gradient = torch.randn(2, 5, 6, generator=generator) / 12  # (N, K, C), constant over h×w
    full = gradient[..., None, None].expand(-1, -1, -1, 3, 4)  # (N, K, C, h, w)
    method = get(name)
    expected = method.maps(activations, full)  # (N, K, h, w)
    weights = method.closed_form(activations, gradient, torch.ones(2, 5))
    closed = torch.einsum("nkc,nchw->nkhw", weights, activations).relu()
    torch.testing.assert_close(closed, expected)
    torch.testing.assert_close(closed_form_weights(name, activations, gradient), weights)
    # one (K, C) gradient shared by all images: the same weights as that gradient per image
    per_image = method.closed_form(activations, gradient[0].expand(2, -1, -1), torch.ones(2, 5))
    shared = method.closed_form(activations, gradient[0], torch.ones(2, 5))  # (K, C) or (N, K, C)
    torch.testing.assert_close(torch.broadcast_to(shared, (2, 5, 6)), per_image)
    torch.testing.assert_close(closed_form_weights(name, activations, gradient[0]), per_image)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_contributions_sum_to_the_map(name):
    generator = torch.Generator().manual_seed(4)
    activations = torch.rand(2, 6, 3, 3, generator=generator)
    gradients = torch.randn(2, 4, 6, 3, 3, generator=generator)  # (N, K, C, h, w)
    maps = gradient_method(name)(activations, gradients)
    torch.testing.assert_close(contributions(name, activations, gradients).sum(2).relu(), maps)
    torch.testing.assert_close(get(name).contributions(activations, gradients).sum(2).relu(), maps)
    single = gradient_method(name)(activations, gradients[:, 1])  # (N, C, h, w) gradients
    torch.testing.assert_close(single, maps[:, 1])
