"""The ResUNet's training step on the CPU: float32 against bfloat16 autocast and channels-last.

    python benchmarks/bench_seg_training.py            # 128 px, batch 16, the demo's unet

One optimizer step of ``train_segmenter``'s shape (forward with the auxiliary heads, BCE + Dice
with deep supervision in float32, backward, AdamW) on random images and masks; the median of
``--steps`` timed steps after two warm-up steps, for each setting, in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result

from camkit.models.losses import CombinedLoss, DeepSupervisionLoss
from camkit.models.resunet import ResUNet

SETTINGS = {"float32": (False, False), "bf16": (True, False), "bf16 + channels-last": (True, True)}


def images_per_second(arch: str, size: int, batch: int, steps: int, bf16: bool, cl: bool) -> float:
    torch.manual_seed(0)
    memory_format = torch.channels_last if cl else torch.contiguous_format
    model = ResUNet(arch, 1).train().to(memory_format=memory_format)
    images = torch.randn(batch, 3, size, size).to(memory_format=memory_format)
    target = (torch.rand(batch, 1, size, size) > 0.7).float()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = DeepSupervisionLoss(CombinedLoss("bce+dice"))
    times = []
    for step in range(steps + 2):
        started = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            main, aux = model.forward_with_aux(images)
        loss = loss_fn((main.float(), [a.float() for a in aux]), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="unet", choices=("unet", "seed"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/seg-training-cpu.json")
    )
    args = parser.parse_args(argv)
    rates = {}
    for name, (bf16, cl) in SETTINGS.items():
        rates[name] = round(
            images_per_second(args.arch, args.size, args.batch_size, args.steps, bf16, cl), 1
        )
        print(f"{name:<22} {rates[name]:6.1f} img/s")
    fields = {"arch": args.arch, "size": args.size, "batch_size": args.batch_size}
    write_result(args.out, torch.device("cpu"), {**fields, "images_per_s": rates})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
