import contextlib
import hashlib
import json

import cv2
import numpy as np
import pytest

from camkit.data.shapes import CLASSES, ShapeStream, generate, write_dataset


def test_deterministic_bytes(tmp_path):
    a = write_dataset(tmp_path / "a", 12, 64, seed=5)
    b = write_dataset(tmp_path / "b", 12, 64, seed=5)

    def digest(root):
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*.png")
        }

    assert digest(a) == digest(b) and len(digest(a)) == 24
    assert generate(3, 7).image.tobytes() == generate(3, 7).image.tobytes()
    assert generate(3, 7).image.tobytes() != generate(3, 8).image.tobytes()


@pytest.mark.parametrize("objects", [1, 2])
def test_masks_match_the_drawn_pixels(objects):
    for index in range(16):
        sample = generate(index, seed=1, size=96, objects=objects)
        hsv = cv2.cvtColor(sample.image, cv2.COLOR_RGB2HSV)
        inside = sample.mask > 0
        # objects are saturated (S ≥ 170 before shading); the background is tinted gray (S < 80)
        assert hsv[..., 1][inside].min() > 140
        assert hsv[..., 1][~inside].max() < 80
        assert sorted(np.unique(sample.mask[inside]) - 1) == sorted(sample.labels)
        if objects == 2:
            assert len(set(sample.labels)) == 2


def test_easy_hue_identifies_the_class():
    hues = {}
    for index in range(8):
        sample = generate(index, seed=2, size=64)
        hsv = cv2.cvtColor(sample.image, cv2.COLOR_RGB2HSV)
        hues.setdefault(CLASSES[sample.labels[0]], []).append(
            np.median(hsv[..., 0][sample.mask > 0])
        )
    centres = {name: np.mean(values) for name, values in hues.items()}
    assert (
        len(centres) == 4
        and min(
            abs(a - b)
            for i, a in enumerate(centres.values())
            for b in list(centres.values())[i + 1 :]
        )
        > 15
    )


def test_layout_and_bad_arguments(tmp_path):
    root = write_dataset(tmp_path / "d", 8, 48, objects=1)
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(CLASSES)
    mask = cv2.imread(str(root / "masks" / "square" / "shape_00001.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 2}
    meta = json.loads((root / "meta.json").read_text())
    assert meta["classes"] == list(CLASSES) and len(meta["samples"]) == 8
    pairs = write_dataset(tmp_path / "p", 3, 48, objects=2)
    assert len(list((pairs / "images").glob("pair_*.png"))) == 3
    with pytest.raises(ValueError, match="difficulty"):
        generate(0, difficulty="medium")
    with pytest.raises(ValueError, match="32 px"):
        generate(0, size=16)
    assert generate(0, difficulty="hard").image.shape == (128, 128, 3)


def test_shape_stream_is_fresh_deterministic_and_resizable():
    import torch

    stream = ShapeStream(6, seed=3, size=32, difficulty="hard")
    assert len(stream) == 6 and stream.class_names == sorted(CLASSES)  # a folder's order
    image, label = stream[5]
    truth = CLASSES[generate(5, 3, 32, "hard").labels[0]]
    assert image.shape == (3, 32, 32) and stream.class_names[label] == truth
    assert torch.equal(stream[5][0], image)  # the same sample every time it is read
    assert not torch.equal(stream[1][0], image)
    flipped = stream.with_input(48, lambda x: x[:, ::-1].copy())
    assert flipped[5][0].shape == (3, 48, 48) and flipped.n == 6 and flipped.seed == 3
    with pytest.raises(IndexError, match="out of range"):
        stream[6]
    with pytest.raises(ValueError, match="difficulty"):
        ShapeStream(4, difficulty="medium")


def test_a_stream_with_pairs_gives_soft_targets_on_both_classes():
    import torch

    stream = ShapeStream(40, seed=3, size=32, difficulty="hard", pairs=0.25)
    targets = torch.stack([stream[i][1] for i in range(40)])
    assert torch.allclose(targets.sum(1), torch.ones(40))
    paired = (targets.max(1).values < 1).nonzero().flatten().tolist()
    assert 8 <= len(paired) <= 12  # a quarter of the stream, spread evenly
    index = paired[0]
    truth = {CLASSES[c] for c in generate(index, 3, 32, "hard", objects=2).labels}
    assert {stream.class_names[c] for c in targets[index].nonzero().flatten()} == truth
    assert torch.equal(targets[index][targets[index] > 0], torch.tensor([0.5, 0.5]))
    assert stream.with_input(48, None).pairs == 0.25
    assert isinstance(ShapeStream(4, size=32)[0][1], int)  # no pairs: class indices
    with pytest.raises(ValueError, match="pairs"):
        ShapeStream(4, pairs=1.5)


def test_writing_again_leaves_no_image_of_the_old_data_set(tmp_path):
    """Writing 3 into a folder of 40 rewrote meta.json as n=3 and left 37 stale images."""
    root = write_dataset(tmp_path / "d", 12, 48)
    write_dataset(root, 3, 48, seed=5)
    assert (
        len(list((root / "images").rglob("*.png"))) == 3 == len(list(root.rglob("masks/**/*.png")))
    )
    assert json.loads((root / "meta.json").read_text())["n"] == 3
    mine = tmp_path / "mine"
    (mine / "images" / "cat").mkdir(parents=True)
    (mine / "images" / "cat" / "1.png").write_bytes(b"the user's")
    with pytest.raises(FileExistsError, match="did not write"):
        write_dataset(mine, 3, 48)
    cut = tmp_path / "cut"  # a run stopped after its first image can be run again
    with pytest.raises(KeyboardInterrupt), _interrupted_after_one_image():
        write_dataset(cut, 5, 48)
    assert len(list((cut / "images").rglob("*.png"))) == 1
    assert len(list((write_dataset(cut, 2, 48) / "images").rglob("*.png"))) == 2
    assert (mine / "images" / "cat" / "1.png").read_bytes() == b"the user's"


@contextlib.contextmanager
def _interrupted_after_one_image():
    import camkit.data.shapes as shapes

    generate, calls = shapes.generate, []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    shapes.generate = once
    try:
        yield
    finally:
        shapes.generate = generate
