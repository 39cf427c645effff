"""The demo's settings: what it generates, trains and evaluates."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DemoConfig"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo generates, trains and evaluates. Defaults take 9–13 minutes on 2 CPU cores
    with bfloat16 units (AVX-512 BF16 or AMX), ~33 on AVX2-only ones, which train in float32.

    The classifier sees ``n_stream`` generated images (each once, at the ``scratch`` recipe's
    96 px unless ImageNet weights are cached); the ResUNet trains on a folder of ``n_train``.
    ``difficulty="hard"``: random colours, so colour cannot give the class away.
    """

    out: str = "camkit-demo"
    n_train: int = 1500
    n_val: int = 300
    n_test: int = 200
    n_pairs: int = 100
    size: int = 128
    epochs: int = 1
    batch_size: int | None = None  # the training recipe's
    n_stream: int = 24000
    difficulty: str = "hard"
    seed: int = 0
    output_stride: int = 16
    tolerance: float = 15.0
    panels: int = 8
    workers: int = 1
    segmenter: bool = True
    compare_seed: int = 0  # > 0: also train `seed` and `unet` on this many images (equal data)
