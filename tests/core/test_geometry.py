"""Layer geometry: receptive-field centres derived from the layer's path equal those measured
from input gradients, for every family camkit explains by name."""

import pytest
import torch
import torchvision
from torch import nn

from camkit.core.geometry import LayerGeometry, layer_geometry, measure_geometry
from camkit.core.surgery import dilated_last_stage


def _model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(arch, weights=None).eval()


def _assert_measured_equal(model: nn.Module, layer: str, axes=(0, 1)) -> LayerGeometry:
    derived = layer_geometry(model, layer)
    assert derived.source == "derived"
    hint = int(derived.receptive_field[0] + 4 * derived.stride[0])  # where to start measuring
    measured = measure_geometry(model, layer, length=hint, axes=axes)
    assert measured.source == "measured"
    for axis in (0, 1):
        assert abs(derived.stride[axis] - measured.stride[axis]) <= 0.25
        assert abs(derived.offset[axis] - measured.offset[axis]) <= 0.25
        assert abs(derived.receptive_field[axis] - measured.receptive_field[axis]) <= 0.5
    return derived


def test_resnet50_layer4_cells_sit_on_multiples_of_the_stride(model):
    geometry = _assert_measured_equal(model, "layer4.2")
    assert geometry.stride == (32.0, 32.0) and geometry.offset == (0.0, 0.0)
    assert geometry.receptive_field == (427.0, 427.0)


def test_resnet50_layer4_dilated_to_output_stride_16(model):
    with dilated_last_stage(model):
        geometry = _assert_measured_equal(model, "layer4.2")
    assert geometry.stride == (16.0, 16.0) and geometry.offset == (0.0, 0.0)


def test_resnet50_layer3(model):
    geometry = _assert_measured_equal(model, "layer3.5")
    assert geometry.stride == (16.0, 16.0) and geometry.offset == (0.0, 0.0)


@pytest.mark.parametrize(
    "arch, layer, offset",
    [("resnet18", "layer4.1", 0.0), ("vgg16", "features.30", 15.5)],
)
def test_torchvision_families(arch, layer, offset):
    geometry = _assert_measured_equal(_model(arch), layer)
    assert geometry.offset == (offset, offset)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, layer, offset",
    [
        ("convnext_tiny", "features.7", 15.5),  # 4×4 stem and 2×2 downsampling, permuted blocks
        ("efficientnet_b0", "features.8", 0.0),  # squeeze-excitation gates
        ("densenet121", "features.norm5", 14.0),  # 2×2 average pools, concatenation
    ],
)
def test_torchvision_families_slow(arch, layer, offset):
    # x only (the networks are symmetric in y and x; a float64 pass on a long input is slow)
    geometry = _assert_measured_equal(_model(arch), layer, axes=(1,))
    assert geometry.offset == (offset, offset)


def test_geometry_does_not_change_the_model(model):
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    layer_geometry(model, "layer4.2")
    measure_geometry(model, "layer4.1", length=640)
    assert model.training
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not model._forward_hooks and not model.layer4[2]._forward_hooks


class _Resampling(nn.Module):
    """A path the derivation cannot follow: the features are resized inside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.body = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        x = nn.functional.interpolate(x, scale_factor=0.5, mode="nearest")
        x = self.body(x)
        return self.head(x.mean(dim=(2, 3)))


def test_an_underivable_path_is_measured_and_says_so():
    geometry = layer_geometry(_Resampling().eval(), "body")
    assert geometry.source == "measured"
    assert geometry.stride == (8.0, 8.0)


def test_centres():
    geometry = LayerGeometry((32.0, 16.0), (0.0, 7.5), (1.0, 1.0))
    rows, columns = geometry.centres((2, 3))
    assert rows.tolist() == [0.0, 32.0] and columns.tolist() == [7.5, 23.5, 39.5]
