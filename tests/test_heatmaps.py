"""Putting maps on images: with align="rf" a cell is drawn at its receptive-field centre, on
square and non-square inputs and through the preprocessing resize; "grid" is the peers'."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from camkit.cam import upsample
from camkit.core.geometry import LayerGeometry
from camkit.explainer import Explainer
from camkit.heatmaps import to_image

RESNET = LayerGeometry((32.0, 32.0), (0.0, 0.0), (427.0, 427.0))


def _hot(cells: tuple[int, int], at: tuple[int, int]) -> torch.Tensor:
    maps = torch.zeros(*cells)
    maps[at] = 1.0
    return maps


def _peak(image_map: torch.Tensor) -> tuple[float, float]:
    """The centre of the pixels at the maximum (a peak between two pixels lies between them)."""
    ys, xs = np.nonzero(image_map.numpy() >= image_map.max().item() - 1e-6)
    return float(ys.mean()), float(xs.mean())


@pytest.mark.parametrize(
    "input_size, at",
    [((128, 128), (1, 2)), ((128, 128), (2, 1)), ((96, 160), (1, 3)), ((100, 70), (1, 1))],
)
def test_a_hot_cell_peaks_at_its_receptive_field_centre(input_size, at):
    """(An outermost cell's maximum is flat from its centre to the border.)"""
    cells = tuple(-(-side // 32) for side in input_size)  # ResNet rounds each stride-2 step up
    image_map = to_image(_hot(cells, at), input_size, input_size, RESNET)
    peak = _peak(image_map)
    for axis in (0, 1):
        assert abs(peak[axis] - 32 * at[axis]) <= 0.5


@pytest.mark.parametrize("image_size", [(300, 500), (61, 203), (128, 128)])
def test_through_the_preprocessing_resize(image_size):
    input_size, at = (96, 160), (1, 3)
    image_map = to_image(_hot((3, 5), at), image_size, input_size, RESNET)
    assert image_map.shape == image_size
    peak = _peak(image_map)
    for axis in (0, 1):
        scale = input_size[axis] / image_size[axis]
        in_model = (peak[axis] + 0.5) * scale - 0.5  # the resize's pixel-centre convention
        assert abs(in_model - 32 * at[axis]) <= 0.5 + scale / 2


def test_an_offset_moves_the_peak():
    vgg = LayerGeometry((32.0, 32.0), (15.5, 15.5), (212.0, 212.0))
    peak = _peak(to_image(_hot((4, 4), (2, 1)), (128, 128), (128, 128), vgg))
    assert peak == (79.5, 47.5)


def test_flat_beyond_the_outermost_centres():
    maps = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    row = to_image(maps, (1, 128), (1, 128), RESNET)[0]
    assert torch.equal(row[96:], torch.full((32,), 4.0))
    assert row[0] == 1.0 and row[32] == 2.0 and row[16] == pytest.approx(1.5)


def test_grid_is_the_peers_convention_and_draws_half_a_stride_late():
    maps = torch.rand(2, 3, 4, 4)
    assert torch.equal(
        to_image(maps, (128, 128), (128, 128), RESNET, "grid"), upsample(maps, (128, 128))
    )
    assert torch.equal(to_image(maps, (128, 128), (128, 128), None), upsample(maps, (128, 128)))
    peak = _peak(to_image(_hot((4, 4), (1, 1)), (128, 128), (128, 128), RESNET, "grid"))
    assert peak == (47.5, 47.5)  # 32·1 + 32/2 − ½: 15.5 px down and right of the evidence


def test_unknown_align_is_refused(model):
    with pytest.raises(ValueError, match="unknown align 'centre'"):
        to_image(torch.rand(4, 4), (8, 8), (8, 8), RESNET, "centre")
    with pytest.raises(ValueError, match="unknown align 'centre'"):
        Explainer(model, "layer4.2", align="centre")


def test_explainer_maps_carry_their_geometry(model):
    images = torch.randn(1, 3, 96, 160)
    heatmaps = Explainer(model, "layer4.2")(images)
    assert heatmaps.align == "rf" and heatmaps.geometry.offset == (0.0, 0.0)
    hot = replace(heatmaps, maps=_hot((3, 5), (1, 3))[None, None])
    peak = _peak(hot.on_image(index=0)[0])
    assert abs(peak[0] - 32) <= 0.5 and abs(peak[1] - 96) <= 0.5
    grid = Explainer(model, "layer4.2", align="grid")(images)
    assert grid.geometry is None and grid.alignment == "grid"
    torch.testing.assert_close(grid.upsampled, upsample(grid.maps, (96, 160)))


def test_output_stride_16_geometry(model):
    heatmaps = Explainer(model, "layer4.2", output_stride=16)(torch.randn(1, 3, 64, 64))
    assert heatmaps.maps.shape[-2:] == (4, 4)
    assert heatmaps.geometry.stride == (16.0, 16.0)
    hot = replace(heatmaps, maps=_hot((4, 4), (2, 1))[None, None])
    assert _peak(hot.on_image(index=0)[0]) == (32.0, 16.0)


def test_to_image_takes_numpy_and_refuses_sizes_without_pixels():
    raw = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)  # as an NPZ holds them
    assert to_image(raw, (64, 48)).shape == (2, 64, 48)
    for size in ((-3, 5), (0, 5)):
        with pytest.raises(ValueError, match="sizes must be positive"):
            to_image(raw, size)  # were internal torch errors
    with pytest.raises(ValueError, match="with cells"):
        to_image(np.zeros((2, 0, 4)), (8, 8))


def test_a_batch_result_is_indexed_by_image(model, images):
    heatmaps = Explainer(model, "layer4.2")(images, "top-2")
    second, tail = heatmaps[1], heatmaps[1:]
    assert len(second) == 1 and len(tail) == len(images) - 1
    assert torch.equal(second.maps[0], heatmaps.maps[1]) and torch.equal(
        tail.logits, heatmaps.logits[1:]
    )
    assert torch.equal(heatmaps[-1].class_ids[0], heatmaps.class_ids[-1])
    assert torch.equal(second.on_image((50, 70))[0], heatmaps.on_image((50, 70), index=1))
    with pytest.raises(IndexError, match="image 3 of a batch of 3"):
        heatmaps[3]
    with pytest.raises(TypeError, match="an image number or a slice"):
        heatmaps["maps"]
    assert torch.equal(heatmaps[np.int64(2)].maps, heatmaps[2].maps)


def test_indexing_cuts_the_per_layer_maps_of_a_fusion(model, images):
    from camkit.combine import MultiLayerExplainer

    fused = MultiLayerExplainer(model, ["layer4.2", "layer3.5"])(images)
    first = fused[0]
    assert {k: len(v) for k, v in first.extra["per_layer"].items()} == {
        "layer4.2": 1,
        "layer3.5": 1,
    }
