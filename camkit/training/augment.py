"""Training-time augmentation of RGB uint8 images: random resized crop, flips, quarter turns
and a colour shuffle, drawn from torch's generator (so DataLoader workers are seeded).

Made for learning shape from few images: the crop varies the objects' scale and position (a
network trained at 96 px then also recognises them in 128 px images), flips and quarter turns
cost nothing and keep every shape its class, and permuting the RGB channels (and sometimes
inverting the image) keeps a colour from standing in for a class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Augmentation"]


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


@dataclass(frozen=True)
class Augmentation:
    """A random transform of an RGB uint8 ``H×W×3`` image (call it); same size out.

    Args:
        scale: area share of the image a random crop keeps, ``(low, high)``; ``(1, 1)``: none.
        ratio: aspect ratios of that crop (width / height), on a log scale.
        flip: random horizontal flips.
        rotate: random quarter turns (square images only).
        colour: random permutation of the RGB channels, and a random inversion at 1 in 4.

    Example:
        >>> image = np.zeros((32, 32, 3), np.uint8)
        >>> Augmentation()(image).shape
        (32, 32, 3)
    """

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)
    flip: bool = True
    rotate: bool = True
    colour: bool = True

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self.scale[0] < 1.0:
            image = self._crop(image)
        if self.flip and torch.rand(()) < 0.5:
            image = image[:, ::-1]
        if self.rotate and height == width:
            image = np.rot90(image, int(torch.randint(4, ())))
        if self.colour:
            image = image[..., torch.randperm(3).numpy()]
            if torch.rand(()) < 0.25:
                image = 255 - image
        return np.ascontiguousarray(image)

    def _crop(self, image: np.ndarray) -> np.ndarray:
        """A random crop of ``scale`` area and ``ratio`` aspect, resized back to the image's size
        (torchvision's RandomResizedCrop, one try, clamped to the image)."""
        import cv2

        height, width = image.shape[:2]
        area = _uniform(*self.scale) * height * width
        aspect = math.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        crop_w = min(width, max(1, round(math.sqrt(area * aspect))))
        crop_h = min(height, max(1, round(math.sqrt(area / aspect))))
        top = int(torch.randint(height - crop_h + 1, ()))
        left = int(torch.randint(width - crop_w + 1, ()))
        crop = image[top : top + crop_h, left : left + crop_w]
        return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
