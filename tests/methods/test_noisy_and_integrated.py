"""SS-CAM, IS-CAM and Smooth Grad-CAM++ against torch-cam, on the same inputs and noise."""

import itertools

import pytest
import torch

from camkit.core.probe import LayerProbe
from camkit.explainer import Explainer
from camkit.methods import Method
from camkit.methods.base import image_seed
from camkit.methods.score import integrated_weights, smoothed_weights
from camkit.methods.smoothgrad import SMOOTHGRADCAMPP, smoothgrad_weights
from camkit.models.resnet import resnet50_variant
from tests.conftest import perturb

torchcam = pytest.importorskip("torchcam.methods")

LAYERS = ["layer4.2", "layer3.5"]


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(1)
    return perturb(resnet50_variant(64, num_classes=5), seed=1).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))


def _theirs(extractor_class, model, layer, image, class_id, **kwargs):
    with extractor_class(model, layer, input_shape=tuple(image.shape[1:]), **kwargs) as extractor:
        with torch.no_grad():
            model(image)
        return extractor(class_id, normalized=False)[0]


def _masked(image, layer):
    """The image for a masked-forward parity test: one forward per channel and noise sample,
    so layer3.5's 1,024 channels get a 32 px crop (a 2×2 map) and layer4.2's 64 the whole."""
    return image if layer == "layer4.2" else image[..., :32, :32]


def _close(ours, theirs):
    torch.testing.assert_close(ours, theirs, atol=1e-4 * theirs.abs().max().item(), rtol=0)


@pytest.mark.parametrize("layer", LAYERS)
def test_iscam_with_torch_cams_coefficients_matches_it(small, image, layer):
    image = _masked(image, layer)
    theirs = _theirs(torchcam.ISCAM, small, layer, image, 2, batch_size=4096, num_samples=3)
    running = list(itertools.accumulate((i + 1) / 3 for i in range(3)))  # 1/3, 1, 2
    spec = Method("iscam-torchcam", needs="masked-forward",
                  pass_weights=integrated_weights(3, running))  # fmt: skip
    heatmaps = Explainer(small, layer, spec, batch_size=4096)(image, 2)
    assert heatmaps.path == "masked-forward"
    _close(heatmaps.maps[:, 0], theirs)
    paper = Explainer(small, layer, Method("iscam3", needs="masked-forward",
                      pass_weights=integrated_weights(3)))(image, 2)  # fmt: skip
    assert not torch.allclose(paper.maps, heatmaps.maps)  # i/n, not its running sum


@pytest.mark.parametrize("layer", LAYERS)
def test_sscam_matches_torch_cam_with_the_same_noise(small, image, layer):
    image = _masked(image, layer)
    # torch-cam draws from the global generator; camkit from the seed of (11, this image)
    torch.manual_seed(image_seed(11, image))
    theirs = _theirs(torchcam.SSCAM, small, layer, image, 2, batch_size=4096, num_samples=3)
    spec = Method("sscam3", needs="masked-forward", pass_weights=smoothed_weights(3, 2.0))
    # one chunk of channels: the noise is drawn as torch-cam draws it
    ours = Explainer(small, layer, spec, batch_size=4096, seed=11)(image, 2).maps[:, 0]
    _close(ours, theirs)
    if layer != "layer4.2":
        return  # the seed's effect once, on the small layer (3 × 1,024 forwards at layer3.5)
    again = Explainer(small, layer, spec, batch_size=4096, seed=11)(image, 2).maps[:, 0]
    other = Explainer(small, layer, spec, batch_size=4096, seed=12)(image, 2).maps[:, 0]
    assert torch.equal(ours, again) and not torch.allclose(ours, other)


@pytest.mark.parametrize("layer", LAYERS)
def test_smooth_gradcampp_matches_torch_cam(small, image, layer):
    torch.manual_seed(image_seed(13, image))  # the noise camkit's seed 13 gives this image
    with torchcam.SmoothGradCAMpp(small, layer, num_samples=1, std=0.3,
                                  input_shape=tuple(image.shape[1:])) as extractor:  # fmt: skip
        small(image)
        weights = extractor._get_weights(2)[0]  # (N, C), from the one noisy copy
    small.zero_grad(set_to_none=True)
    with LayerProbe(small, [layer]) as probe, torch.no_grad():
        small(image)
    expected = torch.einsum("nc,nchw->nhw", weights, probe.activations[layer]).relu()
    spec = Method("sg1", needs="noisy-gradients", pass_weights=smoothgrad_weights(1, 0.3),
                  closed_form=SMOOTHGRADCAMPP.closed_form)  # fmt: skip
    heatmaps = Explainer(small, layer, spec, seed=13, path="autograd")(image, 2)
    assert heatmaps.path == "noisy-gradients"
    _close(heatmaps.maps[:, 0], expected)


def test_smooth_gradcampp_closed_form_equals_its_noisy_passes(small, image):
    closed = Explainer(small, "layer4.2", "smoothgradcampp")(image, "top-2")
    noisy = Explainer(small, "layer4.2", "smoothgradcampp", path="autograd")(image, "top-2")
    assert closed.path == "closed-form" and noisy.path == "noisy-gradients"
    _close(closed.maps, noisy.maps)  # the gradient of a GAP + linear head ignores the noise
    deeper = Explainer(small, "layer3.5", "smoothgradcampp")(image, "top-2")
    plain = Explainer(small, "layer3.5", "gradcampp")(image, "top-2")
    assert deeper.path == "noisy-gradients" and not torch.allclose(deeper.maps, plain.maps)


def test_noisy_methods_leave_the_model_as_found(small, image):
    small.train()
    flags = [p.requires_grad for p in small.parameters()]
    for method in ("sscam", "iscam", "smoothgradcampp"):
        Explainer(small, "layer3.5", method, score_channels=4)(image)
        assert small.training and all(not m._forward_hooks for m in small.modules())
        assert [p.requires_grad for p in small.parameters()] == flags
        assert all(p.grad is None for p in small.parameters())
    small.eval()
    with pytest.raises(ValueError, match="samples must be"):
        smoothed_weights(0)
    with pytest.raises(ValueError, match="samples must be"):
        smoothgrad_weights(2, -1.0)


@pytest.mark.parametrize("method", ["sscam", "iscam", "smoothgradcampp"])
def test_the_noisy_methods_run_from_the_cli(explain_cli, method):
    options = ("--score-channels", "4", "--seed", "3", "--layer", "layer3.5")
    record = explain_cli("--method", method, *options)
    assert record["method"] == method and record["seed"] == 3


@pytest.mark.parametrize(
    "method, layer, options",
    (("smoothgradcampp", "layer3.5", {"path": "autograd"}), ("sscam", "layer4.2", {})),
)
def test_an_images_noisy_map_does_not_depend_on_its_batch(small, method, layer, options):
    """The noise was drawn for the batch as a whole, so an image's map changed with its
    batch-mates (0.32 relative for Smooth Grad-CAM++): shards and resumes disagreed."""
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    explainer = Explainer(small, layer, method, seed=3, score_channels=8, **options)
    together = explainer(images, 1).maps
    alone = torch.cat([explainer(images[i : i + 1], 1).maps for i in (2, 0, 1)])[[1, 2, 0]]
    # float rounding of batched and single convolutions, cubed in Smooth Grad-CAM++'s third
    # moment: ~6e-4 of the largest value, against differences of 0.32 before
    torch.testing.assert_close(alone, together, atol=2e-3 * together.abs().max().item(), rtol=0)


def test_each_image_gets_its_own_noise():
    """One draw for the whole batch made every image's Monte Carlo error the same."""
    one, other = torch.zeros(3, 8, 8), torch.ones(3, 8, 8)
    assert image_seed(0, one) == image_seed(0, one.clone()) != image_seed(0, other)
    assert image_seed(0, one) != image_seed(1, one)
