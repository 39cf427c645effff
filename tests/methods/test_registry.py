"""The method registry, and a method registered from outside camkit running through Explainer."""

import pytest
import torch

from camkit.core.probe import LayerProbe
from camkit.explainer import METHODS, Explainer
from camkit.methods import Method, get, names, register, unregister


def _gradcam_abs_weights(activations, gradients):
    return gradients.mean(dim=(-2, -1)).abs()  # (N, [K,] C)


@pytest.fixture
def gradcam_abs():
    """A toy method, ``w_k = |mean_ij g_k|``: its closed form is ``|W[c] / (h·w)|``."""
    method = register(
        Method(
            "gradcam-abs",
            weights=_gradcam_abs_weights,
            closed_form=lambda activations, gradient, scores: gradient.abs(),
            description="Grad-CAM with |mean gradient| weights",
        )
    )
    yield method
    unregister("gradcam-abs")


def relative_close(a, b, tol=1e-5):
    scale = b.abs().max().clamp_min(1e-12)
    assert (a - b).abs().max() / scale <= tol, float((a - b).abs().max() / scale)


def test_registered_method_runs_on_the_closed_form_and_activation_grad_paths(
    model, images, gradcam_abs
):
    assert "gradcam-abs" in names() and "gradcam-abs" not in METHODS  # METHODS: at import
    closed = Explainer(model, "layer4.2", "gradcam-abs")(images, "top-2")
    activation = Explainer(model, "layer4.2", "gradcam-abs", path="activation-grad")(
        images, closed.class_ids
    )
    assert (closed.path, activation.path) == ("closed-form", "activation-grad")
    assert closed.method == activation.method == "gradcam-abs"
    relative_close(closed.maps, activation.maps)
    every = Explainer(model, "layer4.2", "gradcam-abs")(images, "all")  # shared weights
    torch.testing.assert_close(
        every.maps.gather(1, closed.class_ids[..., None, None].expand(-1, -1, 3, 3)), closed.maps
    )
    # the formula itself, where the head check fails and gradients come from autograd
    auto = Explainer(model, "layer3.5", "gradcam-abs")(images, 4)
    assert auto.path == "activation-grad"
    with LayerProbe(model, "layer3.5") as probe:
        logits = model(images)
        (gradients,) = probe.gradients(logits[:, 4])
    activations = probe.activations["layer3.5"].detach()
    expected = torch.einsum("nc,nchw->nhw", gradients.mean(dim=(2, 3)).abs(), activations)
    torch.testing.assert_close(auto.maps[:, 0], expected.relu())
    smoothed = Explainer(model, "layer4.2", "gradcam-abs", eigen_smooth=True)(images)
    assert smoothed.path == "closed-form" and smoothed.extra["smoothing"] == "eigen"


def test_a_method_object_needs_no_registration_and_no_closed_form(model, images):
    from camkit.cam import gradcam_weights

    plain = Method("plain-gradcam", weights=gradcam_weights)  # no closed form declared
    ours = Explainer(model, "layer4.2", plain)(images, "top-2")
    reference = Explainer(model, "layer4.2", "gradcam", path="autograd")(images, "top-2")
    assert ours.path == "activation-grad" and ours.method == "plain-gradcam"
    relative_close(ours.maps, reference.maps)
    with pytest.raises(ValueError, match="'plain-gradcam' has no closed form"):
        Explainer(model, "layer4.2", plain, path="closed-form")


def test_unknown_name_names_the_value_close_matches_and_choices(model):
    with pytest.raises(ValueError, match=r"unknown method 'gradcamm' \(did you mean 'gradcam'"):
        get("gradcamm")
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of") as error:
        Explainer(model, "layer4.2", method="nope")
    assert all(name in str(error.value) for name in METHODS)


def test_registry_order_and_refusals(gradcam_abs):
    assert names()[: len(METHODS)] == METHODS and names()[-1] == "gradcam-abs"
    assert METHODS[:5] == ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam")
    assert get("gradcam-abs") is gradcam_abs and get(gradcam_abs) is gradcam_abs
    with pytest.raises(ValueError, match="'gradcam-abs' is already registered"):
        register(Method("gradcam-abs", weights=_gradcam_abs_weights))
    replaced = register(Method("gradcam-abs", weights=_gradcam_abs_weights), replace=True)
    assert get("gradcam-abs") is replaced
    with pytest.raises(TypeError, match=r"takes a camkit\.methods\.Method"):
        register("gradcam")
