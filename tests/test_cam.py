import torch

from camkit.cam import gradcam, gradcam_closed_form, normalize, upsample, weighted_channel_sum


def test_gradcam_matches_the_formula():
    generator = torch.Generator().manual_seed(0)
    activations = torch.rand(2, 5, 3, 4, generator=generator)
    gradients = torch.randn(2, 5, 3, 4, generator=generator)
    expected = torch.zeros(2, 3, 4)
    for n in range(2):
        for k in range(5):
            expected[n] += gradients[n, k].mean() * activations[n, k]
    torch.testing.assert_close(gradcam(activations, gradients), expected.clamp_min(0))
    stacked = gradients.unsqueeze(1).repeat(1, 3, 1, 1, 1)  # (N, K, C, h, w)
    torch.testing.assert_close(gradcam(activations, stacked)[:, 1], expected.clamp_min(0))


def test_closed_form_is_gradcam_with_constant_gradients():
    generator = torch.Generator().manual_seed(1)
    activations = torch.rand(2, 6, 3, 3, generator=generator)
    weight = torch.randn(4, 6, generator=generator)
    class_ids = torch.tensor([[2, 0], [3, 3]])
    maps = gradcam_closed_form(activations, weight, class_ids)
    for n in range(2):
        for k in range(2):
            gradients = (weight[class_ids[n, k]] / 9).view(1, 6, 1, 1).expand(1, 6, 3, 3)
            torch.testing.assert_close(maps[n, k], gradcam(activations[n : n + 1], gradients)[0])
    every = gradcam_closed_form(activations, weight)
    assert every.shape == (2, 4, 3, 3)
    torch.testing.assert_close(every[1, 3], maps[1, 0])
    as_many = gradcam_closed_form(activations, weight[:2])  # 2 classes for 2 images
    assert as_many.shape == (2, 2, 3, 3)
    torch.testing.assert_close(as_many, every[:, :2])


def test_weighted_channel_sum_shapes_and_mismatch():
    activations = torch.rand(2, 6, 3, 3)
    assert weighted_channel_sum(activations, torch.rand(6)).shape == (2, 3, 3)
    assert weighted_channel_sum(activations, torch.rand(4, 6)).shape == (2, 4, 3, 3)
    assert weighted_channel_sum(activations, torch.rand(2, 4, 6)).shape == (2, 4, 3, 3)
    try:
        weighted_channel_sum(activations, torch.rand(4, 7))
    except ValueError as error:
        assert "7 channels" in str(error) and "(2, 6, 3, 3)" in str(error)
    else:
        raise AssertionError("mismatch accepted")


def test_normalize_flat_maps_become_zeros_never_nan():
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4)])
    out = normalize(maps)
    assert not torch.isnan(out).any()
    assert torch.equal(out[0], torch.zeros(4, 4)) and torch.equal(out[1], torch.zeros(4, 4))
    assert out[2].min() == 0 and out[2].max() == 1
    torch.testing.assert_close(out[2], torch.arange(16.0).view(4, 4) / 15)


def test_upsample_convention():
    maps = torch.arange(4.0).view(1, 1, 2, 2)
    out = upsample(maps, (4, 4))
    expected = torch.nn.functional.interpolate(
        maps, size=(4, 4), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(out, expected)
    assert upsample(maps[0, 0], (3, 5)).shape == (3, 5)
    assert upsample(maps, (2, 2)) is maps
