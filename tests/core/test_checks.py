"""The Explainer's checks of a batch and of its logits: one clear error, never a NaN map."""

import numpy as np
import pytest
import torch

from camkit import Explainer
from camkit.data.images import preprocess


@pytest.mark.parametrize("channels", (1, 4))
def test_a_batch_of_other_channels_is_named(model, channels):
    with pytest.raises(ValueError, match=f"images have {channels} channels, not 3"):
        Explainer(model, "layer4.2")(torch.zeros(1, channels, 64, 64))


def test_non_finite_images_are_refused(model, images):
    broken = images.clone()
    broken[0, 1, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values; check their normalisation"):
        Explainer(model, "layer4.2")(broken)


@pytest.mark.parametrize("path", ("auto", "autograd"))
def test_broken_weights_are_named_on_every_path(model, images, path):
    with torch.no_grad():
        model.layer4[2].conv3.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"logits are NaN or infinite .*layer4\.2\.conv3\.weight"):
        Explainer(model, "layer4.2", path=path)(images)  # was: NaN maps, or a silent path switch


def test_an_overflowing_forward_is_said_without_blaming_the_weights(model, images):
    with pytest.raises(ValueError, match="the forward pass overflows"):
        Explainer(model, "layer4.2")(images * 1e36)  # finite, but not after 50 layers


def test_a_small_input_asks_for_a_larger_size_not_a_fixed_one(model):
    with pytest.raises(ValueError, match="needs at least 32×32: resize the images to a larger"):
        Explainer(model, "layer4.2")(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("std", ((0.0, 1.0, 1.0), (float("nan"),) * 3, (float("inf"),) * 3))
def test_preprocess_refuses_a_std_that_makes_nan(std):
    with pytest.raises(ValueError, match="each must be finite and std > 0"):
        preprocess(np.zeros((8, 8, 3), np.uint8), 8, std=std)


def test_preprocess_refuses_an_image_without_pixels():
    for shape in ((0, 0, 3), (0, 5, 3)):
        with pytest.raises(ValueError, match="it has no pixels"):
            preprocess(np.zeros(shape, np.uint8), 8)


@pytest.mark.parametrize("dtype", (torch.float64, torch.bfloat16), ids=str)
def test_a_model_in_another_dtype_is_explained(dtype):
    """The stride probe and the masked passes made float32 inputs: every call failed."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).to(dtype).eval()
    images = torch.randn(2, 3, 64, 64).to(dtype)
    for method in ("gradcam", "scorecam", "sscam", "smoothgradcampp", "eigencam"):
        heatmaps = Explainer(model, "layer4", method, score_channels=4)(images, 1)
        assert heatmaps.maps.shape == (2, 1, 2, 2) and heatmaps.maps.isfinite().all(), method
