"""camkit against established implementations: pytorch-grad-cam and Captum."""

import numpy as np
import pytest
import torch

from camkit.cam import normalize, upsample
from camkit.explainer import Explainer
from camkit.models.resnet import resnet50_variant
from tests.conftest import perturb


@pytest.mark.parametrize("layer", ["layer4.2", "layer3.5"])
def test_matches_pytorch_grad_cam(model, images, layer):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class_ids = [3, 0, 8]
    with GradCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in class_ids])
    model.zero_grad(set_to_none=True)
    heatmaps = Explainer(model, layer, align="grid")(images, class_ids)  # the peers' convention
    # pytorch-grad-cam: relu, min-max normalise, cv2.resize (bilinear, half-pixel centres =
    # align_corners=False), then min-max normalise again: that is normalize(upsample(maps)).
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    # Normalising only at layer resolution differs by up to ~1 %: the upsampled map's maximum
    # lies between pixel centres. camkit's `normalized()` resamples first, like the peers.
    low_first = upsample(normalize(heatmaps.maps), images.shape[-2:])[:, 0].numpy()
    assert np.abs(low_first - theirs).max() > 1e-4
    # camkit's default puts each cell at its receptive-field centre instead: other pixels
    aligned = Explainer(model, layer)(images, class_ids).normalized()[:, 0].numpy()
    assert np.abs(aligned - theirs).max() > 1e-2


def test_matches_captum_layer_gradcam(model, images):
    pytest.importorskip("captum")
    from captum.attr import LayerGradCam

    targets = torch.tensor([1, 4, 9])
    attribution = LayerGradCam(model, model.layer4[2]).attribute(
        images, target=targets, relu_attributions=True
    )
    model.zero_grad(set_to_none=True)
    heatmaps = Explainer(model, "layer4.2")(images, targets)
    torch.testing.assert_close(
        heatmaps.maps[:, 0], attribution[:, 0].detach(), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("channels", [64, 512, 3072])
def test_channel_variants_paths_agree(channels):
    torch.manual_seed(channels)
    variant = perturb(resnet50_variant(channels, num_classes=6), seed=channels)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    closed = Explainer(variant, "layer4.2")(images, "all")
    reference = Explainer(variant, "layer4.2", path="autograd")(images, "all")
    assert closed.path == "closed-form"
    assert variant.layer4[2].conv3.out_channels == channels
    scale = reference.maps.abs().max()
    assert (closed.maps - reference.maps).abs().max() / scale < 1e-5
    fcn = Explainer(variant, "layer4.2", method="fcn")(images, "all")
    torch.testing.assert_close(fcn.maps.mean(dim=(2, 3)), fcn.logits, rtol=1e-5, atol=1e-5)
