"""FullGrad, guided backpropagation and Guided Grad-CAM as registered methods: through the
Explainer, against pytorch-grad-cam, and from the CLI."""

import copy

import numpy as np
import pytest
import torch

from camkit.explainer import Explainer
from camkit.models.resnet import resnet50_variant
from tests.conftest import perturb


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return perturb(resnet50_variant(64, num_classes=10), seed=0).eval()


@pytest.fixture(scope="module")
def pair():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _targets(class_ids):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [ClassifierOutputTarget(c) for c in class_ids]


def test_fullgrad_through_the_explainer_matches_pytorch_grad_cam(small, pair):
    from pytorch_grad_cam import FullGrad

    with FullGrad(copy.deepcopy(small), []) as cam:
        theirs = cam(pair, targets=_targets([1, 2]))
    heatmaps = Explainer(small, "layer4.2", "fullgrad", align="grid")(pair, [1, 2])
    assert heatmaps.path == "input-gradients" and heatmaps.maps.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    aligned = Explainer(small, "layer4.2", "fullgrad")(pair, [1, 2])  # pixels sit on pixels
    assert aligned.geometry.stride == (1.0, 1.0) and aligned.geometry.offset == (0.0, 0.0)
    torch.testing.assert_close(aligned.normalized(), heatmaps.normalized())


def test_guided_gradcam_through_the_explainer_matches_pytorch_grad_cam(small, pair):
    from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel

    theirs_model = copy.deepcopy(small)  # GuidedBackpropReLUModel swaps the model's ReLUs
    with GradCAM(theirs_model, [theirs_model.layer4[2]]) as cam:
        gradcam = cam(pair, targets=_targets([1, 2]))  # (N, H, W) in [0, 1]
    guided = GuidedBackpropReLUModel(theirs_model, device="cpu")
    backprop = np.stack([guided(pair[i : i + 1], target_category=c) for i, c in enumerate([1, 2])])
    expected = np.abs(gradcam[..., None] * backprop).max(-1)  # their cam_mask * gb, max |·|
    heatmaps = Explainer(small, "layer4.2", "guidedgradcam", align="grid")(pair, [1, 2])
    assert heatmaps.path == "input-gradients" and heatmaps.layer == "layer4.2"
    np.testing.assert_allclose(heatmaps.maps[:, 0].numpy(), expected, atol=1e-4 * expected.max())
    alone = Explainer(small, "layer4.2", "guidedbackprop")(pair, [1, 2]).maps[:, 0].numpy()
    np.testing.assert_allclose(alone, np.abs(backprop).max(-1), atol=1e-4 * alone.max())
    aligned = Explainer(small, "layer4.2", "guidedgradcam")(pair, [1, 2])  # rf: another mask
    assert not torch.allclose(aligned.maps, heatmaps.maps)


def test_input_methods_refuse_what_they_cannot_do(small, pair):
    with pytest.raises(ValueError, match="only has the input-gradients path"):
        Explainer(small, "layer4.2", "fullgrad", path="autograd")
    with pytest.raises(ValueError, match="eigen_smooth does not apply"):
        Explainer(small, "layer4.2", "guidedgradcam", eigen_smooth=True)
    small.train()
    Explainer(small, "layer3.5", "guidedgradcam")(pair)
    assert small.training and all(not m._forward_hooks for m in small.modules())
    assert all(p.grad is None and p.requires_grad for p in small.parameters())
    small.eval()


@pytest.mark.parametrize("method", ["fullgrad", "guidedgradcam"])
def test_input_methods_run_from_the_cli(explain_cli, method):
    record = explain_cli("--method", method)
    assert record["method"] == method and record["path"] == "input-gradients"
    assert record["geometry"]["stride"] == [1.0, 1.0]
