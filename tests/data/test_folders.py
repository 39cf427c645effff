import cv2
import numpy as np
import pytest

from camkit.data.folders import (
    ClassificationFolder,
    SegmentationFolder,
    masks_by_key,
    match_masks,
    read_mask,
)
from camkit.data.shapes import write_dataset


def test_classification_folder(tmp_path):
    root = write_dataset(tmp_path / "d", 8, 48)
    data = ClassificationFolder(root, size=32)
    assert data.class_names == ["circle", "square", "star", "triangle"] and len(data) == 8
    image, label = data[0]
    assert image.shape == (3, 32, 32) and label == 0
    fixed = ClassificationFolder(
        root, size=32, class_names=["triangle", "star", "square", "circle"]
    )
    labels = {path.parent.name: label for path, label in fixed.samples}
    assert labels == {"triangle": 0, "star": 1, "square": 2, "circle": 3}


def test_classification_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ClassificationFolder(tmp_path / "none")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ClassificationFolder(tmp_path / "flat")
    root = write_dataset(tmp_path / "d", 4, 48)
    (root / "images" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no images: .*empty"):
        ClassificationFolder(root)
    (root / "images" / "empty").rmdir()
    (root / "images" / "circle" / "shape_00000.png").write_bytes(b"broken")
    data = ClassificationFolder(root)
    with pytest.raises(ValueError, match=r"shape_00000\.png"):
        data[0]


def test_segmentation_folder_and_errors(tmp_path):
    root = write_dataset(tmp_path / "d", 4, 48)
    data = SegmentationFolder(root, size=32, classes=4)
    image, mask, path = data[1]
    assert (
        image.shape == (3, 32, 32)
        and mask.shape == (32, 32)
        and set(mask.unique().tolist()) <= {0, 2}
    )
    assert path.endswith("shape_00001.png")
    (root / "masks" / "square" / "shape_00001.png").unlink()
    with pytest.raises(ValueError, match=r"1 images have no mask.*shape_00001.png"):
        SegmentationFolder(root)
    cv2.imwrite(str(root / "masks" / "square" / "shape_00001.png"), np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match=r"30×20 but image .* is 48×48"):
        SegmentationFolder(root, size=32)[1]
    cv2.imwrite(str(root / "masks" / "square" / "shape_00001.png"), np.full((48, 48), 9, np.uint8))
    with pytest.raises(ValueError, match="value 9 but there are only 4 object classes"):
        read_mask(root / "masks" / "square" / "shape_00001.png", classes=4)
    with pytest.raises(FileNotFoundError):
        read_mask(root / "nope.png")


def test_masks_match_by_relative_path_and_stem_with_any_suffix(tmp_path):
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.bmp", "v1.2.png", "orphan.png"):
        cv2.imwrite(str(masks / name), np.zeros((4, 4), np.uint8))
    keys = ["a.jpg", "sub/b.jpg", "v1.2.jpg", "missing.jpg", "b.jpg"]
    found = masks_by_key(keys, masks)
    assert found == {
        "a.jpg": masks / "a.png",
        "sub/b.jpg": masks / "sub" / "b.bmp",
        "v1.2.jpg": masks / "v1.2.png",
    }
    images = [tmp_path / "images" / key for key in keys]
    assert match_masks(images, tmp_path / "images", masks) == {
        tmp_path / "images" / key: mask for key, mask in found.items()
    }
    assert masks_by_key(keys, tmp_path / "nowhere") == {}


def test_classification_folder_applies_a_callable_augmentation(tmp_path):
    from camkit.data.folders import ClassificationFolder
    from camkit.data.shapes import write_dataset

    root = write_dataset(tmp_path / "d", 4, 32, seed=0)
    seen = []

    def augment(image):
        seen.append(image.shape)
        return image[::-1].copy()

    plain = ClassificationFolder(root, 32, mean=(0, 0, 0), std=(1, 1, 1))
    flipped = ClassificationFolder(root, 32, mean=(0, 0, 0), std=(1, 1, 1), augment=augment)
    assert flipped[0][0].flip(1).allclose(plain[0][0]) and seen == [(32, 32, 3)]
