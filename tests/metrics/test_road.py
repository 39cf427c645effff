"""ROAD: noisy linear imputation and the scores, against closed forms and pytorch-grad-cam."""

import numpy as np
import pytest
import torch

from camkit.metrics.road import ROADResult, impute, road


def test_linear_imputation_restores_a_linear_ramp_exactly():
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    image = torch.stack([2 * ys + xs, ys - 3 * xs, 0 * ys + 5])  # harmonic: the mean of its
    keep = torch.ones(12, 16, dtype=torch.bool)  # neighbours, with symmetric weights
    keep[3:9, 4:12] = False  # an interior hole: every removed pixel has all 8 neighbours
    filled = impute(image, keep, noise=0)
    torch.testing.assert_close(filled, image, atol=1e-4, rtol=0)
    assert torch.equal(impute(image, torch.ones_like(keep)), image)


def test_noise_is_drawn_per_removed_pixel_from_the_generator():
    image, keep = torch.zeros(3, 8, 8), torch.ones(8, 8, dtype=torch.bool)
    keep[2:5, 2:5] = False
    a = impute(image, keep, 0.01, torch.Generator().manual_seed(0))
    b = impute(image, keep, 0.01, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a[:, ~keep].abs().gt(0).all() and a[:, keep].eq(0).all()


def _cams(model, images, class_ids):
    from camkit.explainer import Explainer

    heatmaps = Explainer(model, "layer4.2", align="grid")(images, class_ids)
    return heatmaps.normalized()[:, 0]


@pytest.mark.slow
def test_equals_pytorch_grad_cam_road(model):
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.road import (
        ROADCombined,
        ROADLeastRelevantFirstAverage,
        ROADMostRelevantFirstAverage,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    class_ids = [2, 5]
    cams = _cams(model, images, class_ids)
    targets = [ClassifierOutputTarget(c) for c in class_ids]
    percentiles = [20, 50, 80]
    torch.manual_seed(0)
    theirs = ROADCombined(percentiles)(images, cams.numpy(), targets, model)
    torch.manual_seed(0)
    ours = road(model, images, cams, class_ids, percentiles)
    np.testing.assert_allclose(ours.combined, theirs, atol=1e-4)
    # each order on its own, without noise (their imputer's noise is fixed: draw zeros)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "randn_like", torch.zeros_like)
        morf = ROADMostRelevantFirstAverage(percentiles)(images, cams.numpy(), targets, model)
        lerf = ROADLeastRelevantFirstAverage(percentiles)(images, cams.numpy(), targets, model)
    quiet = road(model, images, cams, class_ids, percentiles, noise=0)
    assert isinstance(quiet, ROADResult) and quiet.morf.shape == (2, 3)
    np.testing.assert_allclose(quiet.morf.mean(axis=1), morf, atol=1e-4)
    np.testing.assert_allclose(quiet.lerf.mean(axis=1), lerf, atol=1e-4)


def test_bad_maps_and_options_are_refused(model):
    images = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="one map per image at the input size"):
        road(model, images, torch.rand(1, 16, 16), [0])
    with pytest.raises(ValueError, match="percentiles must lie in"):
        road(model, images, torch.rand(1, 32, 32), [0], percentiles=[0, 50])
    with pytest.raises(ValueError, match="score must be"):
        road(model, images, torch.rand(1, 32, 32), [0], score="margin")
