import gc
import warnings

import pytest
import torch

from camkit.core.probe import LayerProbe
from camkit.core.surgery import dilated_last_stage
from camkit.explainer import Explainer, score_maps
from camkit.heatmaps import resolve_targets


def relative_close(a, b, tol=1e-5):
    scale = b.abs().max().clamp_min(1e-12)
    assert (a - b).abs().max() / scale <= tol, float((a - b).abs().max() / scale)


def test_gradcam_at_layer4_is_positive_part_of_cam_over_hw(model, images):
    heatmaps = Explainer(model, "layer4.2")(images, targets="all")
    assert heatmaps.path == "closed-form"
    cams = score_maps(model, images, include_bias=False)
    height, width = cams.shape[-2:]
    relative_close(heatmaps.maps, cams.clamp_min(0) / (height * width))


@pytest.mark.parametrize("targets", [None, "top-3", 4, [1, 2, 3], [[0, 9], [5, 5], [2, 7]]])
def test_three_paths_agree(model, images, targets):
    closed = Explainer(model, "layer4.2", path="closed-form")(images, targets)
    activation = Explainer(model, "layer4.2", path="activation-grad")(images, targets)
    reference = Explainer(model, "layer4.2", path="autograd")(images, targets)
    assert (closed.path, activation.path, reference.path) == (
        "closed-form",
        "activation-grad",
        "autograd",
    )
    assert torch.equal(closed.class_ids, reference.class_ids)
    relative_close(closed.maps, reference.maps)
    relative_close(activation.maps, reference.maps)
    torch.testing.assert_close(closed.scores, reference.scores)


def test_auto_path_choice(model, images):
    assert Explainer(model, "layer4.2")(images).path == "closed-form"
    assert Explainer(model, "layer4")(images).path == "closed-form"
    for layer in ("layer3.5", "layer4.2.conv3", "layer4.1"):
        explainer = Explainer(model, layer)
        first = explainer(images, "top-2")
        assert first.path == "activation-grad"
        reference = Explainer(model, layer, path="autograd")(images, "top-2")
        relative_close(first.maps, reference.maps)
        assert explainer(images).path == "activation-grad"  # checked again, same forward


def test_a_result_does_not_depend_on_earlier_calls(model, images):
    explainer = Explainer(model, "layer4.2")
    # logits + 1 are no longer head(mean_hw(A)): this call's check fails, the next one's passes
    handle = model.register_forward_hook(lambda module, inputs, output: output + 1.0)
    try:
        shifted = explainer(images, "top-2")
    finally:
        handle.remove()
    assert shifted.path == "activation-grad"
    again = explainer(images, "top-2")
    fresh = Explainer(model, "layer4.2")(images, "top-2")
    assert again.path == fresh.path == "closed-form" and torch.equal(again.maps, fresh.maps)
    relative_close(shifted.maps, again.maps)  # a constant shift does not change the gradients


def test_every_class_when_there_are_as_many_classes_as_images(model):
    images = torch.randn(10, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    for method in ("gradcam", "cam"):
        every = Explainer(model, "layer4.2", method)(images, "all")
        assert every.maps.shape == (10, 10, 2, 2)  # (N, classes, h, w), never read as (N, C)
        one = Explainer(model, "layer4.2", method)(images, 3)
        relative_close(every.maps[:, 3:4], one.maps)


def test_forced_closed_form_on_wrong_layer_and_fcn_path(model, images):
    with pytest.raises(ValueError, match="global average pooling"):
        Explainer(model, "layer3.5", path="closed-form")(images)
    with pytest.raises(ValueError, match="global average pooling"):
        Explainer(model, "layer3.5", method="fcn")(images)
    with pytest.raises(ValueError, match="closed-form"):
        Explainer(model, "layer4.2", method="fcn", path="autograd")
    with pytest.raises(ValueError, match="unknown method"):
        Explainer(model, "layer4.2", method="nope")


def test_fcn_and_cam_methods(model, images):
    fcn = Explainer(model, "layer4.2", method="fcn")(images, "all")
    cam = Explainer(model, "layer4.2", method="cam")(images, "all")
    torch.testing.assert_close(fcn.maps.mean(dim=(2, 3)), fcn.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        cam.maps.mean(dim=(2, 3)) + model.fc.bias, cam.logits, rtol=1e-5, atol=1e-5
    )


def test_all_negative_class_gives_zero_map_not_nan(model, images):
    with torch.no_grad():
        model.fc.weight[7] = -model.fc.weight[7].abs()  # layer4 output is post-ReLU, so W·A ≤ 0
    for path in ("closed-form", "activation-grad", "autograd"):
        heatmaps = Explainer(model, "layer4.2", path=path)(images, 7)
        assert torch.equal(heatmaps.maps, torch.zeros_like(heatmaps.maps))
        normalized = heatmaps.normalized()
        assert not torch.isnan(normalized).any() and normalized.abs().max() == 0


@pytest.mark.parametrize("speed", [{}, {"channels_last": True, "autocast": "bf16"}])
@pytest.mark.parametrize("path", ["closed-form", "activation-grad", "autograd"])
def test_model_left_exactly_as_found(model, images, path, speed):
    model.train()
    model.layer2.eval()
    model.layer1.requires_grad_(False)
    marker = torch.full_like(model.fc.weight, 0.5)
    model.fc.weight.grad = marker
    state = {k: v.clone() for k, v in model.state_dict().items()}
    Explainer(model, "layer4.2", path=path, **speed)(images, "top-2")
    assert model.training and not model.layer2.training and model.layer3.training
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer4.parameters())
    assert model.fc.weight.grad is marker and (marker == 0.5).all()
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert all(not m._forward_hooks for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_state_restored_when_targets_are_bad(model, images):
    model.train()
    for path in ("closed-form", "activation-grad"):
        with pytest.raises(ValueError, match="out of range"):
            Explainer(model, "layer4.2", path=path)(images, 99)
        assert model.training and all(p.requires_grad for p in model.parameters())
        assert all(not m._forward_hooks for m in model.modules())


def test_repeated_calls_do_not_grow_memory(model, images):
    explainer = Explainer(model, "layer3.5")

    def live_tensors():
        gc.collect()
        with warnings.catch_warnings():  # isinstance() on lazy torch modules may warn
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    explainer(images)
    before = live_tensors()
    for _ in range(5):
        result = explainer(images, "top-2")
        del result
    assert live_tensors() <= before


def test_heatmaps_result(model, images):
    heatmaps = Explainer(model, "layer4.2")(images, "top-3")
    assert heatmaps.maps.shape == (3, 3, 3, 3) and heatmaps.maps.dtype == torch.float32
    assert heatmaps.upsampled.shape == (3, 3, 96, 96)
    assert heatmaps.normalized(size=(40, 50)).shape == (3, 3, 40, 50)
    assert heatmaps.layer == "layer4.2" and heatmaps.method == "gradcam"
    assert torch.equal(heatmaps.class_ids, heatmaps.logits.topk(3).indices)
    torch.testing.assert_close(heatmaps.probabilities, heatmaps.logits.softmax(1).topk(3).values)
    assert len(heatmaps) == 3
    loss = heatmaps.upsampled.sum()  # usable outside inference mode
    assert torch.isfinite(loss)


def test_resolve_targets_errors():
    logits = torch.randn(2, 5)
    with pytest.raises(ValueError, match="3 targets for a batch of 2"):
        resolve_targets([1, 2, 3], logits)
    with pytest.raises(ValueError, match="out of range"):
        resolve_targets(5, logits)
    with pytest.raises(ValueError, match="out of range"):
        resolve_targets([0, -1], logits)
    with pytest.raises(ValueError, match="not understood"):
        resolve_targets("best", logits)
    with pytest.raises(ValueError, match="between 1 and 5"):
        resolve_targets("top-9", logits)
    with pytest.raises(TypeError):
        resolve_targets(1.5, logits)
    with pytest.raises(TypeError):
        resolve_targets([0.5, 1.0], logits)
    with pytest.raises(ValueError, match="images"):
        resolve_targets([[1, 2]], logits)
    with pytest.raises(ValueError, match="targets are empty"):
        resolve_targets([], logits)  # was a TypeError about float32
    with pytest.raises(ValueError, match="out of range"):
        resolve_targets(2**70, logits)  # was a raw OverflowError
    with pytest.raises(TypeError, match="not class ids"):
        resolve_targets([2**70, 0], logits)
    assert resolve_targets("all", logits).shape == (2, 5)
    assert resolve_targets(torch.tensor([4, 0]), logits).tolist() == [[4], [0]]


def test_bad_images(model):
    explainer = Explainer(model, "layer4.2")
    with pytest.raises(ValueError, match="at least 32×32"):
        explainer(torch.randn(1, 3, 20, 64))
    with pytest.raises(TypeError, match="float"):
        explainer(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError):
        explainer([[1, 2]])
    with pytest.raises(ValueError, match="N ≥ 1"):
        explainer(torch.zeros(0, 3, 64, 64))


def test_output_stride_16_doubles_maps_and_keeps_identities(model, images):
    before = [(m.stride, m.dilation) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = Explainer(model, "layer4.2", output_stride=16)(images, "all")
    reference = Explainer(model, "layer4.2", path="autograd", output_stride=16)(images, "all")
    assert dense.maps.shape[-1] == 2 * Explainer(model, "layer4.2")(images).maps.shape[-1]
    relative_close(dense.maps, reference.maps)
    cams = score_maps(model, images, output_stride=16, include_bias=False)
    relative_close(dense.maps, cams.clamp_min(0) / (cams.shape[-1] * cams.shape[-2]))
    assert before == [
        (m.stride, m.dilation) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    with pytest.raises(ValueError, match="output_stride"):
        Explainer(model, "layer4.2", output_stride=8)


@pytest.mark.parametrize(
    "layer, method, options, tol",
    [
        ("layer4.2", "gradcam", {}, 1e-4),
        ("layer4.2", "fcn", {}, 1e-4),
        ("layer4.2", "gradcampp", {"path": "autograd"}, 1e-3),
        ("layer3.5", "layercam", {}, 5e-3),
        ("layer4.2", "eigencam", {}, 1e-4),
        ("layer4.2", "scorecam", {"score_channels": 6}, 1e-4),
        ("layer4.2", "ablationcam", {}, 1e-4),
    ],
)
def test_channels_last_inputs_give_the_same_maps(model, images, layer, method, options, tol):
    plain = Explainer(model, layer, method, **options)(images[:2], "top-2")
    fast = Explainer(model, layer, method, channels_last=True, **options)(images[:2], "top-2")
    assert fast.path == plain.path and torch.equal(fast.class_ids, plain.class_ids)
    assert (fast.normalized() - plain.normalized()).abs().max() <= tol
    assert "autocast" not in fast.extra


@pytest.mark.parametrize("layer", ["layer4.2", "layer3.5"])
def test_autocast_approximates_float32_and_says_so(model, images, layer):
    plain = Explainer(model, layer, "gradcam")(images, "top-2")
    half = Explainer(model, layer, "gradcam", autocast="bf16")(images, "top-2")
    # the closed form's numeric head check allows for the forward's precision
    assert half.path == plain.path == ("closed-form" if layer == "layer4.2" else "activation-grad")
    assert half.extra["autocast"] == "bfloat16" and half.maps.dtype == torch.float32
    assert torch.equal(half.class_ids, plain.class_ids)
    difference = (half.normalized() - plain.normalized()).abs()
    assert 0 < difference.max() <= 0.15 and difference.mean() <= 0.02  # close, not equal
    with pytest.raises(ValueError, match=r"unknown autocast 'int8'.*'bf16' or 'fp16'"):
        Explainer(model, layer, autocast="int8")


# score_maps: Explainer(method="fcn", targets="all") as a function


@pytest.mark.parametrize("size", [(96, 96), (64, 160), (100, 75)])
def test_mean_of_score_maps_is_logits_for_any_size(model, size):
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(images)
    maps = score_maps(model, images)
    assert maps.shape[:2] == (2, 10)
    torch.testing.assert_close(maps.mean(dim=(2, 3)), logits, rtol=1e-5, atol=1e-5)
    cams = score_maps(model, images, include_bias=False)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + model.fc.bias, logits, rtol=1e-5, atol=1e-5)


def test_probability_maps(model, images):
    probabilities = score_maps(model, images, probabilities=True)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3, 3, 3))
    assert (probabilities >= 0).all()


def test_output_stride_16_doubles_resolution_and_restores_model(model, images):
    before = [
        (m.stride, m.dilation, m.padding) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    coarse = score_maps(model, images)
    dense = score_maps(model, images, output_stride=16)
    assert dense.shape[-1] == 2 * coarse.shape[-1]
    after = [
        (m.stride, m.dilation, m.padding) for m in model.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert before == after
    with dilated_last_stage(model), torch.no_grad():
        logits = model(images)  # the dilated network's own logits
    torch.testing.assert_close(dense.mean(dim=(2, 3)), logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="output_stride"):
        score_maps(model, images, output_stride=8)


def test_layer_that_does_not_feed_the_head_is_refused(model, images):
    with pytest.raises(ValueError, match="global average pooling"):
        score_maps(model, images, layer="layer3")


def test_probe_sees_the_same_map_as_score_maps(model, images):
    with LayerProbe(model, "layer4") as probe, torch.no_grad():
        model(images)
    expected = torch.einsum("kc,nchw->nkhw", model.fc.weight, probe.activations["layer4"])
    torch.testing.assert_close(score_maps(model, images, include_bias=False), expected)
