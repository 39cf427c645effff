"""Shared helpers of the CLI tests: run ``main`` in-process, check one-line errors, tiny images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from camkit.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    """``main(argv)`` → ``(exit code, stdout, stderr)``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit 1 with one ``camkit: error:`` line (notes aside), no traceback, naming ``fragments``."""
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert lines and "Traceback" not in err, err
    assert lines[0].startswith("camkit: error:"), err
    for fragment in fragments:
        assert fragment in err, err


def write_image(path: Path, height: int = 80, width: int = 100, seed: int = 0) -> Path:
    """A seeded RGB image with a red block, written as PNG (BGR on disk)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image[height // 4 : height // 2, width // 4 : width // 2] = (220, 30, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def write_mask(path: Path, height: int, width: int) -> Path:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask)
    return path


def write_images_and_masks(root, names=("a", "b"), size=64):
    """``root/images/{a,b}.png`` (size × size) and ``root/masks/{a,b}.png``; returns ``root``."""
    for name in names:
        write_image(root / "images" / f"{name}.png", size, size, seed=ord(name))
        write_mask(root / "masks" / f"{name}.png", size, size)
    return root


def save_segmenter(path: Path, model, size: int = 64) -> Path:
    """``model`` (a binary ResUNet) saved as ``camkit train-seg`` saves one (``size`` px input)."""
    from camkit.io.checkpoint import save_checkpoint
    from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD

    return save_checkpoint(
        path,
        model.state_dict(),
        kind="segmenter",
        arch="unet",
        classes=1,
        encoder_channels=model.encoder_channels,
        input_size=size,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
    )
