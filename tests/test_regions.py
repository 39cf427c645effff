"""The segmenter explained: region scores, against pytorch-grad-cam's SemanticSegmentationTarget."""

import numpy as np
import pytest
import torch

from camkit.models.resunet import ResUNet
from camkit.regions import RegionScores, SegmenterExplainer, own_regions


@pytest.fixture(scope="module")
def segmenter():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ResUNet("unet", classes=3, encoder_channels=256).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_region_scores_sum_a_classs_logits_over_its_region(segmenter, images):
    scores = RegionScores(segmenter)
    with torch.no_grad():
        logits = segmenter(images)
        regions = own_regions(logits)
        scores.regions = regions
        torch.testing.assert_close(scores(images), (logits * regions).sum(dim=(2, 3)))
    assert regions.sum(dim=1).eq(1).all()  # one class per pixel


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam"])
@pytest.mark.parametrize("layer", ["layer4", "layer3", "dec2"])
def test_matches_pytorch_grad_cam_with_a_semantic_segmentation_target(
    segmenter, images, method, layer
):
    module = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    names = {"gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "layercam": "LayerCAM"}
    explainer = SegmenterExplainer(segmenter, layer, method, align="grid")
    heatmaps = explainer(images)
    regions, classes = heatmaps.extra["regions"], heatmaps.class_ids[:, 0]
    targets = [
        SemanticSegmentationTarget(int(c), regions[i, int(c)].numpy())
        for i, c in enumerate(classes)
    ]
    cam = getattr(module, names[method])
    with cam(model=segmenter, target_layers=[segmenter.get_submodule(layer)]) as reference:
        theirs = reference(input_tensor=images, targets=targets)
    segmenter.zero_grad(set_to_none=True)
    assert heatmaps.layer == layer and heatmaps.path == "activation-grad"
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)


def test_binary_segmenter_given_regions_and_refusals(images):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        binary = ResUNet("unet", classes=1, encoder_channels=256).eval()
    explainer = SegmenterExplainer(binary, "layer4")
    heatmaps = explainer(images)  # the foreground's own mask
    assert heatmaps.class_ids.tolist() == [[0], [0]] and heatmaps.maps.shape == (2, 1, 2, 2)
    box = torch.zeros(2, 64, 64)
    box[:, 16:48, 16:48] = 1
    boxed = explainer(images, regions=box)
    assert torch.equal(boxed.extra["regions"][:, 0], box)
    assert not torch.allclose(boxed.maps, heatmaps.maps)
    with pytest.raises(ValueError, match="do not fit images"):
        explainer(images, regions=torch.ones(2, 32, 32))
    with pytest.raises(ValueError, match="reruns the model on altered copies"):
        SegmenterExplainer(binary, "layer4", "scorecam")
    eigen = SegmenterExplainer(binary, "layer4", "eigencam")(images)
    assert eigen.path == "forward"
