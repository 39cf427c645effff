"""Handwritten digits on clutter: a folder data set no camkit generator made.

scikit-learn's 8×8 UCI digits, upscaled to 48–80 px, turned ±15° and painted in a random colour
on cluttered, randomly coloured 128 px backgrounds (lines, discs, rings, noise); 3,000 train and
300 test images (``OUT/{train,test}/images/d0..d9/*.png``), the test images from other
digits than the training ones. The README's learned-nothing example trains on it:

    python benchmarks/make_digits.py /tmp/digits
    camkit train /tmp/digits/train --out /tmp/digits.ckpt --epochs 8 --pretrained none
"""

import argparse
import os

import cv2
import numpy as np
from sklearn.datasets import load_digits


def clutter(rng):
    img = np.zeros((128, 128, 3), np.float32) + rng.uniform(0, 255, 3)
    for _ in range(rng.integers(6, 14)):
        c = tuple(float(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            ends = [tuple(int(v) for v in rng.integers(0, 128, 2)) for _ in range(2)]
            cv2.line(img, *ends, c, int(rng.integers(1, 4)))
        else:
            centre = tuple(int(v) for v in rng.integers(0, 128, 2))
            cv2.circle(img, centre, int(rng.integers(3, 20)), c, -1 if rng.random() < 0.5 else 2)
    return img + rng.normal(0, 12, img.shape)


def render(digit, rng):
    img = clutter(rng)
    s = int(rng.integers(48, 81))
    g = cv2.resize((digit / 16).astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
    turn = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(-15, 15)), 1.0)
    g = cv2.warpAffine(g.clip(0, 1), turn, (s, s))
    top, left = rng.integers(0, 128 - s + 1, 2)
    patch = img[top : top + s, left : left + s]
    colour = rng.uniform(0, 255, 3)
    while np.abs(colour - patch.reshape(-1, 3).mean(0)).max() < 80:  # visible on its patch
        colour = rng.uniform(0, 255, 3)
    img[top : top + s, left : left + s] = patch * (1 - g[..., None]) + colour * g[..., None]
    return img.clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(digits.images))
    for split, ids, n in (("train", order[300:], 3000), ("test", order[:300], 300)):
        for k in range(10):
            os.makedirs(f"{args.out}/{split}/images/d{k}", exist_ok=True)
        for i in range(n):
            j = ids[i % len(ids)]
            path = f"{args.out}/{split}/images/d{digits.target[j]}/{i:05d}.png"
            cv2.imwrite(path, render(digits.images[j], rng)[..., ::-1])


if __name__ == "__main__":
    main()
