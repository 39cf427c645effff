"""The demo's measures on hand-made two-object images: where a class's maximum lies."""

from types import SimpleNamespace

import numpy as np
import torch

from camkit.data.shapes import Sample
from camkit.demo.measures import centroid_offset, maximum_places, own_maximum


def _pair() -> Sample:
    """A 64 px image: class 0 in the top-left square (mask value 1), class 2 bottom-right (3)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[8:16, 8:16] = 1
    mask[44:56, 44:56] = 3
    return Sample(np.zeros((64, 64, 3), np.uint8), mask, (0, 2))


def _maps(*peaks: tuple[int, int]) -> SimpleNamespace:
    maps = torch.zeros(len(peaks), 64, 64)
    for j, (y, x) in enumerate(peaks):
        maps[j, y, x] = 1.0
    return SimpleNamespace(maps=maps)


def test_each_class_maximum_is_placed_on_its_own_object_the_other_or_neither():
    sample = _pair()
    # class 0 peaks inside its square; class 2 on class 0's square
    assert maximum_places(sample, _maps((10, 10), (12, 12)), 15.0) == ["own", "other"]
    # class 0 at 14 px below its square's edge (within 15 px, nearer its own); class 2 in the
    # empty top-right corner, 31 px from its own object
    assert maximum_places(sample, _maps((29, 12), (2, 62)), 15.0) == ["own", "neither"]
    assert maximum_places(sample, _maps((29, 12), (2, 62)), 10.0) == ["neither", "neither"]
    assert own_maximum(sample, _maps((50, 50), (50, 50)), 15.0) == [False, True]


def test_centroid_offset_is_heat_centroid_minus_mask_centroid():
    mask = np.zeros((32, 32), bool)
    mask[10:14, 10:14] = True  # centroid (11.5, 11.5)
    heat = np.zeros((32, 32))
    heat[14, 9] = 2.0
    heat[5, 0] = -1.0  # negative heat is clipped
    assert centroid_offset(heat, mask) == (2.5, -2.5)
    assert centroid_offset(np.zeros((32, 32)), mask) is None
