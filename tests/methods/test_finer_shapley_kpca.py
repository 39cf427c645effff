"""Finer-CAM, Shapley-CAM and KPCA-CAM against pytorch-grad-cam and torch-cam, and their closed
forms against autograd."""

import numpy as np
import pytest
import torch
from torch import nn

from camkit.cam import gradcam_weights
from camkit.explainer import Explainer
from camkit.methods import Method
from camkit.methods.eigen import kernel_pca
from camkit.methods.gradient import finer_objective

LAYERS = ["layer4.2", "layer3.5"]


@pytest.mark.parametrize("layer", LAYERS)
def test_finercam_matches_pytorch_grad_cam(model, images, layer):
    from pytorch_grad_cam import FinerCAM

    with FinerCAM(model, [model.get_submodule(layer)]) as cam:
        theirs = cam(images)  # the top class against its 3 nearest rivals, alpha 1
    model.zero_grad(set_to_none=True)
    heatmaps = Explainer(model, layer, "finercam", align="grid")(images)
    assert heatmaps.path == ("closed-form" if layer == "layer4.2" else "activation-grad")
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    plain = Explainer(model, layer, "gradcam", align="grid")(images).normalized()
    assert (plain - heatmaps.normalized()).abs().max() > 1e-2  # the contrast changes the map


@pytest.mark.parametrize("layer", LAYERS)
def test_finer_objective_in_mean_form_matches_torch_cam(model, images, layer):
    torchcam = pytest.importorskip("torchcam.methods")
    class_ids = [1, 7, 4]
    with torchcam.FinerCAM(model, layer, input_shape=tuple(images.shape[1:])) as extractor:
        theirs = extractor(class_ids, model(images), normalized=False)[0]  # gamma 0.6, 3 refs
    model.zero_grad(set_to_none=True)
    spec = Method("finer-mean", weights=gradcam_weights, objective=finer_objective(0.6, 3, "mean"))
    ours = Explainer(model, layer, spec)(images, class_ids).maps[:, 0]
    torch.testing.assert_close(ours, theirs, atol=1e-4 * theirs.abs().max().item(), rtol=0)


def test_finercam_closed_form_equals_autograd(model, images):
    closed = Explainer(model, "layer4.2", "finercam")(images, "top-2")
    reference = Explainer(model, "layer4.2", "finercam", path="autograd")(images, "top-2")
    assert closed.path == "closed-form" and reference.path == "autograd"
    scale = reference.maps.abs().max()
    assert (closed.maps - reference.maps).abs().max() / scale <= 1e-5
    every = Explainer(model, "layer4.2", "finercam")(images, "all")  # per image, not shared
    picked = every.maps.gather(1, closed.class_ids[..., None, None].expand(-1, -1, 3, 3))
    torch.testing.assert_close(picked, closed.maps)
    torch.testing.assert_close(closed.scores, reference.scores)  # the logits, as for any method


def test_finer_objective_by_hand():
    logits = torch.tensor([[3.0, 2.5, -1.0, 2.9, 0.0]])
    objective = finer_objective(alpha=0.5, references=2, weighting="mean")
    # class 0's nearest rivals: 3 (|0.1|) and 1 (|0.5|): 3 − 0.5·2.7
    torch.testing.assert_close(objective(logits, torch.tensor([[0]])), torch.tensor([[1.65]]))
    weighted = finer_objective(alpha=1.0, references=1)(logits, torch.tensor([[2]]))
    torch.testing.assert_close(weighted, torch.tensor([[-1.0]]))  # y_2 − y_4, one rival
    single = finer_objective()(torch.tensor([[1.5]]), torch.tensor([[0]]))
    torch.testing.assert_close(single, torch.tensor([[1.5]]))  # no rival: the logit
    with pytest.raises(ValueError, match="weighting"):
        finer_objective(weighting="softmax")
    with pytest.raises(ValueError, match="references"):
        finer_objective(references=0)


def _smooth_network() -> nn.Module:
    """A network whose tail is not piecewise linear, so its Hessian is not zero."""
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.Tanh(), nn.Conv2d(8, 16, 3, 2, 1), nn.GELU(),
        nn.Conv2d(16, 16, 3, 1, 1), nn.Softplus(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()  # fmt: skip


def test_shapleycam_matches_pytorch_grad_cam_where_the_hessian_is_not_zero(images):
    from pytorch_grad_cam import GradCAM, ShapleyCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    network = _smooth_network()
    targets = [ClassifierOutputTarget(c) for c in (1, 2, 4)]
    with ShapleyCAM(network, [network[3]]) as cam:
        theirs = cam(images, targets=targets)
    with GradCAM(network, [network[3]]) as cam:
        gradcam = cam(images, targets=targets)
    network.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    heatmaps = Explainer(network, "3", "shapleycam", align="grid")(images, [1, 2, 4])
    assert heatmaps.path == "activation-grad"
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    assert np.abs(theirs - gradcam).max() > 5e-3  # the Hessian term is there
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in network.parameters())


def test_shapleycam_is_gradcam_at_a_gap_head_and_runs_through_attention(model, images):
    closed = Explainer(model, "layer4.2", "shapleycam")(images, "top-2")
    assert closed.path == "closed-form"
    torch.testing.assert_close(closed.maps, Explainer(model, "layer4.2")(images, "top-2").maps)
    relu = Explainer(model, "layer3.5", "shapleycam")(images).maps  # ReLU tail: H = 0
    torch.testing.assert_close(relu, Explainer(model, "layer3.5")(images).maps)
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(64, 16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=4).eval()  # fmt: skip
    nn.init.normal_(vit.heads.head.weight, std=0.5)
    layer = "encoder.layers.encoder_layer_0"
    shapley = Explainer(vit, layer, "shapleycam")(images[:, :, :64, :64], [1, 2, 3])
    gradcam = Explainer(vit, layer, "gradcam")(images[:, :, :64, :64], [1, 2, 3])
    assert shapley.maps.shape == (3, 1, 4, 4) and torch.isfinite(shapley.maps).all()
    assert not torch.allclose(shapley.maps, gradcam.maps)  # softmax and GELU: H ≠ 0


@pytest.mark.parametrize("layer", LAYERS)
def test_kpcacam_matches_pytorch_grad_cam(model, images, layer):
    from pytorch_grad_cam import KPCA_CAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(0)] * 3
    with KPCA_CAM(model, [model.get_submodule(layer)]) as cam:
        theirs = cam(images, targets=targets)
    heatmaps = Explainer(model, layer, "kpcacam", align="grid")(images, "top-2")
    assert heatmaps.path == "forward" and torch.equal(heatmaps.maps[:, 0], heatmaps.maps[:, 1])
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    from camkit.core.probe import LayerProbe

    with LayerProbe(model, [layer]) as probe, torch.no_grad():
        model(images)
    points = probe.activations[layer][0].flatten(1).T
    gamma = 1 / torch.cdist(points, points).square().mean().item()  # a kernel far from I
    with KPCA_CAM(model, [model.get_submodule(layer)], kernel="rbf", gamma=gamma) as cam:
        theirs = cam(images, targets=targets)
    spec = Method("kpca-rbf", needs="forward", activation_map=kernel_pca("rbf", gamma))
    ours = Explainer(model, layer, spec, align="grid")(images).normalized()[:, 0]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)
    with pytest.raises(ValueError, match="unknown kernel 'laplace'"):
        kernel_pca("laplace")


@pytest.mark.parametrize("method", ["finercam", "shapleycam", "kpcacam"])
def test_the_new_methods_run_from_the_cli(explain_cli, method):
    assert explain_cli("--method", method)["method"] == method
