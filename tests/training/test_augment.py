import numpy as np
import pytest
import torch

from camkit.training.augment import Augmentation


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)


def test_augmentation_keeps_size_and_type_and_follows_torch_seed(image):
    augment = Augmentation()
    torch.manual_seed(1)
    first = augment(image)
    torch.manual_seed(1)
    again = augment(image)
    assert first.shape == image.shape and first.dtype == np.uint8 and first.flags.c_contiguous
    assert np.array_equal(first, again)
    assert any(not np.array_equal(augment(image), first) for _ in range(5))


def test_augmentation_off_is_the_identity(image):
    off = Augmentation(scale=(1.0, 1.0), flip=False, rotate=False, colour=False)
    assert np.array_equal(off(image), image)


def test_colour_and_turns_only_move_pixels(image):
    moved = Augmentation(scale=(1.0, 1.0), flip=True, rotate=True, colour=False)
    torch.manual_seed(0)
    for _ in range(4):
        assert sorted(moved(image).ravel()) == sorted(image.ravel())
    colour = Augmentation(scale=(1.0, 1.0), flip=False, rotate=False, colour=True)
    out = colour(image)
    assert np.array_equal(np.sort(out, axis=2), np.sort(image, axis=2)) or np.array_equal(
        np.sort(255 - out, axis=2), np.sort(image, axis=2)
    )
