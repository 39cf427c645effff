"""FullGrad and guided backpropagation against pytorch-grad-cam, and the model left as found."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from camkit.cam import normalize
from camkit.methods.fullgrad import channel_normalize, fullgrad_maps
from camkit.methods.guided import guided_gradcam, guided_gradients, reduce_channels
from tests.conftest import perturb

CLASS_IDS = [[3, 7], [0, 3]]  # two images, two targets each, different per image

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


class SmallNet(nn.Module):
    """Convolutions with biases (a ResNet's have none), a biased layer at input resolution, ReLUs as
    modules or functional (one in place with its result unused), and optionally its modules
    registered in reverse order."""

    def __init__(self, functional: bool = False, reverse: bool = False) -> None:
        super().__init__()
        self.functional = functional
        layers = [
            ("conv1", nn.Conv2d(3, 8, 3, padding=1)),  # at input resolution: no resampling
            ("bn1", nn.BatchNorm2d(8)),
            ("conv2", nn.Conv2d(8, 16, 3, padding=1, bias=False)),
            ("bn2", nn.BatchNorm2d(16)),
            ("conv3", nn.Conv2d(16, 12, 3, stride=2, padding=1)),
            ("fc", nn.Linear(12, 10)),
        ]
        for name, module in reversed(layers) if reverse else layers:
            self.add_module(name, module)
        if not functional:
            self.relu1, self.relu2, self.relu3 = nn.ReLU(inplace=True), nn.ReLU(), nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv1(x))
        if self.functional:
            x.relu_()  # in place, result unused: the guided ReLU must change x too
        else:
            x = self.relu1(x)
        x = self.bn2(self.conv2(x))
        x = torch.relu(x) if self.functional else self.relu2(x)
        x = self.conv3(x)
        x = F.relu(x, inplace=True) if self.functional else self.relu3(x)
        return self.fc(x.mean(dim=(2, 3)))


def _seeded(factory, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return perturb(factory(), seed=seed)


@pytest.fixture(scope="session")
def _resnet18() -> nn.Module:
    return _seeded(lambda: torchvision.models.resnet18(weights=None, num_classes=10))


@pytest.fixture(scope="session")
def _small() -> nn.Module:
    return _seeded(SmallNet)


def _images(size: int, count: int = 2) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(size))


@pytest.fixture
def nets(_resnet18, _small, model):
    """``name -> (fresh model copy, images)``: ResNet-18 at 72 px (non-integer upsampling scales:
    3 → 72, 5 → 72), the ResNet-50 of conftest at 64 px, the small net at 36 px."""
    return {
        "resnet18": (copy.deepcopy(_resnet18), _images(72)),
        "resnet50": (model, _images(64)),
        "small": (copy.deepcopy(_small), _images(36)),
    }


@pytest.mark.parametrize(
    ("size", "to"), [((3, 3), (72, 72)), ((5, 7), (80, 96)), ((9, 9), (4, 4)), ((10, 7), (3, 5))]
)
def test_torch_bilinear_resamples_as_cv2_inter_linear(size, to):
    """Why FullGrad may resample with torch: ``align_corners=False`` without antialiasing samples as
    pytorch-grad-cam's ``cv2.resize`` (INTER_LINEAR) does, up and down."""
    import cv2

    maps = np.random.default_rng(0).standard_normal(size).astype(np.float32)
    theirs = cv2.resize(maps, to[::-1])
    ours = F.interpolate(torch.from_numpy(maps)[None, None], size=to, mode="bilinear")
    np.testing.assert_allclose(ours[0, 0].numpy(), theirs, rtol=0, atol=1e-5)
    same = cv2.resize(maps, size[::-1])
    np.testing.assert_array_equal(same, maps)  # and at the same size it is the identity


def _grad_cam_normalize(maps: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's scale_cam_image, per map."""
    shifted = maps - maps.min(axis=(-2, -1), keepdims=True)
    return shifted / (1e-7 + shifted.max(axis=(-2, -1), keepdims=True))


def _reference_fullgrad(model, images, class_ids) -> np.ndarray:
    """pytorch-grad-cam's FullGrad, ``(N, K, H, W)``, one call per target column, on a copy
    (it writes .grad and leaves the model in eval mode; it zeroes .grad before each call)."""
    from pytorch_grad_cam import FullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with FullGrad(copy.deepcopy(model), []) as cam:
        per_target = [
            cam(
                input_tensor=images.clone(),
                targets=[ClassifierOutputTarget(row[k]) for row in class_ids],
            )
            for k in range(len(class_ids[0]))
        ]
    return np.stack(per_target, axis=1)


def _reference_guided(model, images, class_ids) -> np.ndarray:
    """pytorch-grad-cam's GuidedBackpropReLUModel, ``(N, K, 3, H, W)``: it takes one image and
    one class per call, and swaps the model's ReLUs and writes parameter .grad, so it gets a copy
    (the swaps and .grad of one call do not change the next call's input gradient)."""
    from pytorch_grad_cam import GuidedBackpropReLUModel

    guided = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")
    out = np.zeros((len(images), len(class_ids[0]), *images.shape[1:]), dtype=np.float32)
    for n, row in enumerate(class_ids):
        for k, class_id in enumerate(row):
            out[n, k] = guided(images[n : n + 1].clone(), class_id).transpose(2, 0, 1)
    return out


def _input_gradients(model, images, class_ids) -> torch.Tensor:
    """Plain ``dY/dx`` ``(N, K, 3, H, W)`` on a copy of the model."""
    network = copy.deepcopy(model).eval().requires_grad_(False)
    inputs = images.clone().requires_grad_(True)
    logits = network(inputs)
    ids = torch.tensor(class_ids)
    return torch.stack(
        [
            torch.autograd.grad(
                logits.gather(1, ids[:, k : k + 1]).sum(), inputs, retain_graph=True
            )[0]
            for k in range(ids.shape[1])
        ],
        dim=1,
    )


@pytest.mark.parametrize(
    "name", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow), "small"]
)
def test_fullgrad_matches_pytorch_grad_cam(nets, name):
    pytest.importorskip("pytorch_grad_cam")
    model, images = nets[name]
    maps = fullgrad_maps(model, images, CLASS_IDS)
    assert maps.shape == (2, 2, *images.shape[-2:]) and maps.dtype == torch.float32
    theirs = _reference_fullgrad(model, images, CLASS_IDS)
    np.testing.assert_allclose(_grad_cam_normalize(maps.numpy()), theirs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(normalize(maps).numpy(), theirs, rtol=0, atol=1e-4)
    # the comparison has teeth: the targets differ, and so does the input term alone
    assert np.abs(theirs[:, 0] - theirs[:, 1]).max() > 1e-2
    gradients = _input_gradients(model, images, CLASS_IDS)  # (N, K, 3, H, W)
    input_only = channel_normalize((gradients * images[:, None]).abs()).sum(dim=2)
    assert np.abs(_grad_cam_normalize(input_only.numpy()) - theirs).max() > 1e-2


def test_fullgrad_batch_equals_single_images(nets):
    model, images = nets["resnet18"]
    batch = fullgrad_maps(model, images, CLASS_IDS)
    for n in range(len(images)):
        single = fullgrad_maps(model, images[n : n + 1], CLASS_IDS[n : n + 1])
        torch.testing.assert_close(batch[n : n + 1], single, rtol=1e-4, atol=1e-4)


def test_fullgrad_pairs_biases_with_their_own_layer(_small):
    """pytorch-grad-cam pairs biases (in registration order) with gradients (in forward order);
    camkit pairs each gradient with its own layer, so registration order does not matter."""
    images = _images(36)
    reordered = SmallNet(reverse=True)
    reordered.load_state_dict(_small.state_dict())
    reordered.eval()
    torch.testing.assert_close(
        fullgrad_maps(reordered, images, CLASS_IDS), fullgrad_maps(_small, images, CLASS_IDS)
    )


def test_fullgrad_under_no_grad_and_inference_mode(_small):
    images = _images(36)
    expected = fullgrad_maps(_small, images, CLASS_IDS)
    with torch.no_grad():
        torch.testing.assert_close(fullgrad_maps(_small, images, CLASS_IDS), expected)
    with torch.inference_mode():
        inference_images = _images(36)
        maps = fullgrad_maps(_small, inference_images, CLASS_IDS)
    torch.testing.assert_close(maps, expected)


def test_fullgrad_refuses_batch_norm_without_running_statistics():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(1)
    )
    with pytest.raises(ValueError, match="track_running_stats"):
        fullgrad_maps(model, _images(8, 1), [[0]])


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_guided_matches_pytorch_grad_cam(nets, name):
    pytest.importorskip("pytorch_grad_cam")
    model, images = nets[name]
    guided = guided_gradients(model, images, CLASS_IDS)
    assert guided.shape == (2, 2, *images.shape[1:]) and guided.dtype == torch.float32
    theirs = _reference_guided(model, images, CLASS_IDS)
    scale = np.abs(theirs).max()
    # 1e-4 of the scale: ResNet-50's backward sums in another order than their module swap's
    np.testing.assert_allclose(guided.numpy(), theirs, rtol=0, atol=1e-4 * scale)
    # the guided rule changes the gradient: it is not the plain one, and targets differ
    plain = _input_gradients(model, images, CLASS_IDS).numpy()
    assert np.abs(plain - theirs).max() > 0.1 * scale
    assert np.abs(theirs[:, 0] - theirs[:, 1]).max() > 0.01 * scale


def test_guided_handles_functional_relus(_small):
    """F.relu / torch.relu / an in-place Tensor.relu_ are guided like nn.ReLU modules."""
    pytest.importorskip("pytorch_grad_cam")
    functional = SmallNet(functional=True)
    functional.load_state_dict(_small.state_dict())
    functional.eval()
    images = _images(36)
    theirs = _reference_guided(_small, images, CLASS_IDS)  # nn.ReLU modules: what they swap
    ours = guided_gradients(functional, images, CLASS_IDS).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
    plain = _input_gradients(functional, images, CLASS_IDS).numpy()
    assert np.abs(plain - theirs).max() > 0.1 * np.abs(theirs).max()


def test_guided_gradcam_matches_pytorch_grad_cam_recipe(nets):
    """Their cam.py: ``cam_mask = cv2.merge([grayscale_cam] * 3); cam_gb = cam_mask * gb``."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, images = nets["resnet18"]
    class_ids = [[3], [0]]
    reference = copy.deepcopy(model)
    with GradCAM(reference, [reference.layer4[-1]]) as cam:
        grayscale = cam(images.clone(), [ClassifierOutputTarget(row[0]) for row in class_ids])
    gb = _reference_guided(model, images, class_ids)  # (N, 1, 3, H, W)
    theirs = grayscale[:, None, None] * gb
    guided = guided_gradients(model, images, class_ids)
    product = guided_gradcam(torch.from_numpy(grayscale)[:, None], guided)
    assert product.shape == (2, 1, 3, *images.shape[-2:])
    np.testing.assert_allclose(product.numpy(), theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
    heat = reduce_channels(product)  # (N, K, H, W): max over colours of |.|
    assert heat.shape == (2, 1, *images.shape[-2:])
    torch.testing.assert_close(heat, torch.from_numpy(np.abs(theirs).max(axis=2)))
    torch.testing.assert_close(reduce_channels(product, "abs-sum"), product.abs().sum(dim=2))
    torch.testing.assert_close(reduce_channels(product, "l2"), product.norm(dim=2))


def test_pixel_functions_refuse_bad_input(_small):
    images = _images(36)
    with pytest.raises(ValueError, match=r"unknown-mode|must be one of"):
        reduce_channels(torch.zeros(1, 1, 3, 4, 4), "unknown-mode")
    with pytest.raises(ValueError, match="same"):
        guided_gradcam(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 3, 9, 9))
    for function in (fullgrad_maps, guided_gradients):
        with pytest.raises(ValueError, match=r"\(N, K\) = \(2, K\)"):
            function(_small, images, [[1], [2], [3]])
        with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
            function(_small, images[0], [[1]])
        with pytest.raises(ValueError, match=r"\[0, 10\)"):
            function(_small, images, [[1], [10]])


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else (p.grad, p.grad.clone()) for p in model.parameters()],
        "hooks": [
            {attr: list(getattr(m, attr, {})) for attr in HOOK_DICTS} for m in model.modules()
        ],
        "modules": [(name, type(m)) for name, m in model.named_modules()],
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    for old, new in zip(before["grad"], after["grad"]):
        if old is None:
            assert new is None
        else:
            assert new[0] is old[0] and torch.equal(new[1], old[1])
    assert before["hooks"] == after["hooks"]
    assert before["modules"] == after["modules"]


@pytest.mark.parametrize("function", [fullgrad_maps, guided_gradients])
def test_model_left_as_found(nets, function):
    model, images = nets["resnet18"]
    model.train()
    model.layer1.eval()
    for parameter in model.layer2.parameters():
        parameter.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    calls = []
    model.layer3.register_forward_hook(lambda *args: calls.append("forward"))
    model.conv1.register_forward_pre_hook(lambda *args: None)
    model.fc.register_full_backward_hook(lambda *args: None)
    before = _snapshot(model)
    maps = function(model, images, CLASS_IDS)
    assert torch.isfinite(maps).all() and maps.abs().max() > 0
    _assert_same(before, _snapshot(model))
    assert images.grad is None and not images.requires_grad
    assert calls == ["forward"]  # the user's hooks ran, and stayed
    # on error: after the forward (a class out of range) and inside it (4 colour channels)
    with pytest.raises(ValueError, match="class_ids"):
        function(model, images, [[3, 99], [0, 3]])
    _assert_same(before, _snapshot(model))
    with pytest.raises(RuntimeError):
        function(model, torch.zeros(1, 4, 32, 32), [[0]])
    _assert_same(before, _snapshot(model))
    assert torch._C._len_torch_function_stack() == 0  # the guided mode is gone


class _InPlaceInput(nn.Module):
    """Normalises its input in place, as some wrappers do."""

    def __init__(self, net: nn.Module, in_place: bool) -> None:
        super().__init__()
        self.net, self.in_place = net, in_place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.sub_(0.5) if self.in_place else x - 0.5)


@pytest.mark.parametrize("function", [fullgrad_maps, guided_gradients])
def test_model_may_change_its_input_in_place(_small, function):
    images = _images(36)
    kept = images.clone()
    in_place = function(_InPlaceInput(_small, True), images, CLASS_IDS)
    torch.testing.assert_close(in_place, function(_InPlaceInput(_small, False), images, CLASS_IDS))
    assert torch.equal(images, kept)


def test_guided_warns_when_the_model_runs_no_relu(caplog):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(1), nn.Linear(4 * 6 * 6, 5))
    with caplog.at_level("WARNING", logger="camkit.methods.guided"):
        guided = guided_gradients(model, _images(8, 1), [[2]])
    assert "ran no ReLU" in caplog.text
    torch.testing.assert_close(guided, _input_gradients(model, _images(8, 1), [[2]]))
