"""The CAM family: closed forms against autograd, and each method against pytorch-grad-cam."""

import numpy as np
import pytest
import torch

from camkit.cam import GRADIENT_METHODS
from camkit.explainer import METHODS, Explainer
from camkit.models.resnet import resnet50_variant
from tests.conftest import perturb


@pytest.fixture(scope="module")
def small():
    """A 64-channel variant at 64 px keeps Score-CAM and Ablation-CAM (one pass per channel) quick."""
    torch.manual_seed(1)
    return perturb(resnet50_variant(64, num_classes=5), seed=1)


@pytest.fixture(scope="module")
def small_images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_closed_form_equals_autograd(model, images, method):
    closed = Explainer(model, "layer4.2", method)(images, "top-2")
    activation = Explainer(model, "layer4.2", method, path="activation-grad")(images, "top-2")
    reference = Explainer(model, "layer4.2", method, path="autograd")(images, "top-2")
    assert closed.path == "closed-form"
    scale = reference.maps.abs().max().clamp_min(1e-12)
    assert (closed.maps - reference.maps).abs().max() / scale <= 1e-5
    assert (activation.maps - reference.maps).abs().max() / scale <= 1e-5
    every = Explainer(model, "layer4.2", method)(images, "all")
    torch.testing.assert_close(
        every.maps.gather(1, closed.class_ids[..., None, None].expand(-1, -1, 3, 3)), closed.maps
    )


def test_eigengradcam_closed_form_equals_autograd_and_elementwise_has_none(model, images):
    closed = Explainer(model, "layer4.2", "eigengradcam")(images, "top-2")
    reference = Explainer(model, "layer4.2", "eigengradcam", path="autograd")(images, "top-2")
    assert closed.path == "closed-form" and reference.path == "autograd"
    scale = reference.maps.abs().max()
    assert (closed.maps - reference.maps).abs().max() / scale <= 1e-4
    elementwise = Explainer(model, "layer4.2", "gradcam-elementwise")(images, "top-2")
    assert elementwise.path == "activation-grad"  # relu per channel: no closed form
    with pytest.raises(ValueError, match="has no closed form"):
        Explainer(model, "layer4.2", "gradcam-elementwise", path="closed-form")


def test_hirescam_is_gradcam_at_a_gap_head(model, images):
    a = Explainer(model, "layer4.2", "hirescam")(images, "all").maps
    b = Explainer(model, "layer4.2", "gradcam")(images, "all").maps
    torch.testing.assert_close(a, b)
    c = Explainer(model, "layer3.5", "hirescam")(images).maps  # elsewhere they differ
    d = Explainer(model, "layer3.5", "gradcam")(images).maps
    assert not torch.allclose(c, d)


def reference_cam(name, model, layer, images, class_ids, eigen_smooth=False, **kwargs):
    module = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(module, name)
    targets = [ClassifierOutputTarget(c) for c in class_ids]
    with cls(model=model, target_layers=[model.get_submodule(layer)], **kwargs) as cam:
        out = cam(input_tensor=images, targets=targets, eigen_smooth=eigen_smooth)
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("gradcampp", "GradCAMPlusPlus"),
        ("xgradcam", "XGradCAM"),
        ("hirescam", "HiResCAM"),
        ("layercam", "LayerCAM"),
        ("gradcam-elementwise", "GradCAMElementWise"),
        ("eigengradcam", "EigenGradCAM"),
    ],
)
@pytest.mark.parametrize("layer", ["layer4.2", "layer3.5"])
def test_gradient_methods_match_pytorch_grad_cam(model, images, method, name, layer):
    class_ids = [1, 7, 4]
    theirs = reference_cam(name, model, layer, images, class_ids)
    ours = Explainer(model, layer, method, align="grid")(images, class_ids).normalized()[:, 0]
    ours = ours.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_eigencam_matches_pytorch_grad_cam(model, images):
    theirs = reference_cam("EigenCAM", model, "layer4.2", images, [0, 0, 0])
    heatmaps = Explainer(model, "layer4.2", "eigencam", align="grid")(images, "top-2")
    assert heatmaps.path == "forward" and torch.equal(heatmaps.maps[:, 0], heatmaps.maps[:, 1])
    np.testing.assert_allclose(heatmaps.normalized()[:, 0].numpy(), theirs, atol=1e-4)


def test_ablationcam_matches_pytorch_grad_cam(small, small_images):
    class_ids = [2, 3]
    theirs = reference_cam("AblationCAM", small, "layer4.2", small_images, class_ids, batch_size=16)
    closed = Explainer(small, "layer4.2", "ablationcam", align="grid")(small_images, class_ids)
    forward = Explainer(small, "layer4.2", "ablationcam", path="autograd", batch_size=16)(
        small_images, class_ids
    )
    assert closed.path == "closed-form" and forward.path == "ablation-forward"
    scale = forward.maps.abs().max()
    assert (closed.maps - forward.maps).abs().max() / scale <= 1e-4
    np.testing.assert_allclose(closed.normalized()[:, 0].numpy(), theirs, atol=1e-4)


def test_scorecam_matches_pytorch_grad_cam_with_its_upsampling(small, small_images):
    class_ids = [0, 4]
    theirs = reference_cam("ScoreCAM", small, "layer4.2", small_images, class_ids)
    explainer = Explainer(small, "layer4.2", "scorecam", batch_size=16, align="grid")
    explainer._score_align_corners = True  # pytorch-grad-cam's UpsamplingBilinear2d
    same = explainer(small_images, class_ids)
    assert same.path == "masked-forward"
    np.testing.assert_allclose(same.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    ours = Explainer(small, "layer4.2", "scorecam", batch_size=7)(
        small_images, class_ids
    )  # chunking
    assert ours.maps.shape == same.maps.shape and not torch.isnan(ours.maps).any()
    fast = Explainer(small, "layer4.2", "scorecam", score_channels=8)(small_images, class_ids)
    assert fast.maps.shape == ours.maps.shape


def test_every_method_runs_and_leaves_the_model_as_found(small, small_images):
    small.train()
    for method in METHODS:
        if method in ("cam", "fcn"):
            continue
        explainer = Explainer(small, "layer4.2", method, batch_size=64, score_channels=8)
        heatmaps = explainer(small_images, "top-2")
        cells = (64, 64) if heatmaps.path == "input-gradients" else (2, 2)  # pixels or cells
        assert heatmaps.maps.shape == (2, 2, *cells) and heatmaps.method == method
        assert not torch.isnan(heatmaps.maps).any()
        assert small.training and all(not m._forward_hooks for m in small.modules())
    small.eval()


@pytest.mark.parametrize(
    ("arch", "layer", "path"),
    [
        ("resnet18", "layer4.1", "closed-form"),
        ("resnet101", "layer4.2", "closed-form"),
        ("wide_resnet50_2", "layer4.2", "closed-form"),
        ("resnext50_32x4d", "layer4.2", "closed-form"),
        ("vgg16", "features.30", "activation-grad"),
        ("densenet121", "features.norm5", "activation-grad"),
    ],
)
def test_other_torchvision_cnns(arch, layer, path):
    """Default layer per family; the closed form wherever the head is GAP + linear (checked
    numerically: DenseNet applies a ReLU after `features`, so it takes the gradient path)."""
    from camkit.core.introspect import default_layer
    from camkit.models.resnet import load_classifier

    model, _ = load_classifier("none", arch=arch, num_classes=5)
    assert default_layer(model) == layer
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    auto = Explainer(model, layer)(images, "top-2")
    reference = Explainer(model, layer, path="autograd")(images, "top-2")
    assert auto.path == path
    scale = reference.maps.abs().max().clamp_min(1e-12)
    assert (auto.maps - reference.maps).abs().max() / scale <= 1e-4


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_multi_layer_fusion(model, images, fusion):
    from camkit.cam import normalize
    from camkit.combine import MultiLayerExplainer

    fused = MultiLayerExplainer(model, "layer4.2,layer3.5", fusion=fusion)(images, "top-2")
    a = Explainer(model, "layer4.2")(images, "top-2")
    b = Explainer(model, "layer3.5")(images, a.class_ids)
    stacked = torch.stack([normalize(a.upsampled), normalize(b.upsampled)])
    expected = stacked.mean(0) if fusion == "mean" else stacked.amax(0)
    torch.testing.assert_close(fused.maps, expected)
    assert fused.fusion == fusion and fused.layer == "layer4.2,layer3.5"
    assert fused.path == "closed-form,activation-grad" and fused.maps.shape == (3, 2, 96, 96)
    assert torch.equal(fused.class_ids, a.class_ids)
    with pytest.raises(ValueError, match="fusion"):
        MultiLayerExplainer(model, ["layer4.2"], fusion="median")


def test_multi_layer_cli(tmp_path, capsys, rgb_image):
    import cv2

    from camkit.cli import main

    path = tmp_path / "x.png"
    cv2.imwrite(str(path), rgb_image)
    smooth = [
        "explain",
        str(path),
        "--weights",
        "none",
        "--aug-smooth",
        "--size",
        "64",
        "--out",
        str(tmp_path / "s"),
    ]
    assert main(smooth) == 0
    # the file name names the settings that change the map (aug smoothing, a size not the model's)
    assert (tmp_path / "s" / "x.gradcam-aug-s64.png").exists()
    capsys.readouterr()
    code = main(
        [
            "explain",
            str(path),
            "--weights",
            "none",
            "--layer",
            "layer4.2,layer3.5",
            "--fusion",
            "max",
            "--size",
            "64",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    import json

    record = json.loads(out)[0]
    assert record["layer"] == "layer4.2,layer3.5" and record["fusion"] == "max"


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_augmentation_smoothing_matches_pytorch_grad_cam(model, images, method):
    module = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from camkit.combine import augmentation_smoothed

    names = {"gradcam": "GradCAM", "layercam": "LayerCAM"}
    class_ids = [3, 0, 8]
    with getattr(module, names[method])(model=model, target_layers=[model.layer4[2]]) as cam:
        theirs = cam(
            input_tensor=images,
            targets=[ClassifierOutputTarget(c) for c in class_ids],
            aug_smooth=True,
        )
    model.zero_grad(set_to_none=True)
    explainer = Explainer(model, "layer4.2", method, align="grid")
    smoothed = augmentation_smoothed(explainer, images, class_ids)
    assert smoothed.maps.shape == (3, 1, 96, 96) and "flip" in smoothed.extra["smoothing"]
    np.testing.assert_allclose(smoothed.maps[:, 0].numpy(), theirs, atol=1e-4)


def reference_eigen_smoothed(name, model, layer, images, class_ids, **kwargs):
    return reference_cam(name, model, layer, images, class_ids, eigen_smooth=True, **kwargs)


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("gradcam", "GradCAM"),
        ("gradcampp", "GradCAMPlusPlus"),
        ("xgradcam", "XGradCAM"),
        ("hirescam", "HiResCAM"),
        ("layercam", "LayerCAM"),
    ],
)
@pytest.mark.parametrize("layer", ["layer4.2", "layer3.5"])
def test_eigen_smoothing_matches_pytorch_grad_cam(model, images, method, name, layer):
    class_ids = [3, 0, 8]
    theirs = reference_eigen_smoothed(name, model, layer, images, class_ids)
    smoothed = Explainer(model, layer, method, eigen_smooth=True, align="grid")(images, class_ids)
    assert smoothed.extra["smoothing"] == "eigen"
    assert smoothed.path == ("closed-form" if layer == "layer4.2" else "activation-grad")
    np.testing.assert_allclose(smoothed.normalized()[:, 0].numpy(), theirs, atol=1e-4)
    plain = Explainer(model, layer, method, align="grid")(images, class_ids)
    assert not torch.allclose(plain.normalized(), smoothed.normalized(), atol=1e-3)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_eigen_smoothing_closed_form_equals_autograd(model, images, method):
    closed = Explainer(model, "layer4.2", method, eigen_smooth=True)(images, "top-2")
    reference = Explainer(model, "layer4.2", method, path="autograd", eigen_smooth=True)(
        images, closed.class_ids
    )
    assert closed.path == "closed-form" and reference.path == "autograd"
    scale = reference.maps.abs().max()
    assert scale > 0 and (closed.maps - reference.maps).abs().max() / scale < 1e-4


def test_eigen_smoothing_all_classes_in_chunks(small, small_images):
    chunked = Explainer(small, "layer4.2", "gradcam", eigen_smooth=True)
    chunked._eigen_block = 4  # two classes per block for two images
    every = chunked(small_images, "all")
    some = Explainer(small, "layer4.2", "gradcam", eigen_smooth=True)(small_images, [[1, 4]] * 2)
    assert every.maps.shape[1] == small.fc.out_features
    torch.testing.assert_close(every.maps[:, [1, 4]], some.maps)


def test_eigen_smoothing_forward_methods_match_pytorch_grad_cam(small, small_images):
    class_ids = [2, 3]
    theirs = reference_eigen_smoothed(
        "AblationCAM", small, "layer4.2", small_images, class_ids, batch_size=16
    )
    for path in ("auto", "autograd"):  # closed form and ablated forward passes
        ours = Explainer(
            small, "layer4.2", "ablationcam", path=path, eigen_smooth=True, align="grid"
        )
        np.testing.assert_allclose(
            ours(small_images, class_ids).normalized()[:, 0].numpy(), theirs, atol=1e-3
        )
    theirs = reference_eigen_smoothed("ScoreCAM", small, "layer4.2", small_images, class_ids)
    explainer = Explainer(
        small, "layer4.2", "scorecam", batch_size=16, eigen_smooth=True, align="grid"
    )
    explainer._score_align_corners = True
    ours = explainer(small_images, class_ids).normalized()[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_eigen_smoothing_refused_for_linear_maps(small):
    for method in ("cam", "fcn"):
        with pytest.raises(ValueError, match="eigen_smooth does not apply"):
            Explainer(small, "layer4.2", method, eigen_smooth=True)


def test_explain_cli_eigen_smooth_and_chunk_size(tmp_path, capsys, rgb_image):
    import json

    from camkit.cli import main

    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), rgb_image[:, :, ::-1])
    common = [str(image), "--weights", "none", "--size", "64", "--out", str(tmp_path / "o")]
    code = main(["explain", *common, "--method", "scorecam", "--chunk-size", "7",
                 "--score-channels", "16", "--eigen-smooth", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(out)[0]
    assert record["method"] == "scorecam" and record["smoothing"] == "eigen"
    assert main(["explain", *common, "--method", "cam", "--eigen-smooth"]) == 1
    assert "--eigen-smooth does not apply" in capsys.readouterr().err


def test_scorecam_distinct_masks():
    from camkit.methods.score import _distinct_masks

    maps = torch.rand(6, 3, 3)
    maps[1] = 0  # dead
    maps[3] = 5.0  # constant: the same (zero) mask as a dead channel
    maps[4] = 2 * maps[0] + 1  # same mask as channel 0 after min-max
    maps[5] = -maps[0]  # a different mask
    first, inverse = _distinct_masks(maps)
    assert len(first) == 4
    assert inverse[1] == inverse[3] and inverse[0] == inverse[4] and inverse[5] != inverse[0]
    torch.testing.assert_close(inverse[first], torch.arange(4))


def test_scorecam_shares_passes_without_changing_the_maps(small, small_images, monkeypatch):
    import camkit.methods.score as score
    from camkit.core.probe import LayerProbe

    class ZeroEven(torch.nn.Module):
        def forward(self, x):
            return x * (torch.arange(x.shape[1]) % 2 == 1).float()[:, None, None]

    dead = __import__("copy").deepcopy(small)  # dead channels at layer4.2: equal masks
    dead.layer4[2] = torch.nn.Sequential(dead.layer4[2], ZeroEven())
    with LayerProbe(dead, ["layer4.2"]) as probe, torch.no_grad():
        dead(small_images)
    activations = probe.activations["layer4.2"]
    first, inverse = score._distinct_masks(activations[0])
    assert activations[0, ::2].eq(0).all() and inverse[::2].unique().numel() == 1
    assert len(first) <= activations.shape[1] // 2 + 1  # the dead channels share one pass
    shared = Explainer(dead, "layer4.2", "scorecam", batch_size=16)(small_images, [0, 1])

    def every_channel(maps):
        return torch.arange(len(maps)), torch.arange(len(maps))

    monkeypatch.setattr(score, "_distinct_masks", every_channel)
    monkeypatch.setattr(score, "_inference_copy", lambda model: model)
    plain = Explainer(dead, "layer4.2", "scorecam", batch_size=16)(small_images, [0, 1])
    torch.testing.assert_close(shared.maps, plain.maps, rtol=1e-4, atol=1e-6)
