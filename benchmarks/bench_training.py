"""From scratch on the CPU: how fast, and how well, camkit's ``scratch`` recipe learns shape.

    python benchmarks/bench_training.py stream --images 20000          # (a) fresh shapes each step
    camkit data shapes --out /tmp/hard3000 --n 3000 --difficulty hard
    python benchmarks/bench_training.py folder /tmp/hard3000 --epochs 10   # (b) `camkit train`
    python benchmarks/bench_training.py stream --images 12000 --no-augment --lr 4e-3
    python benchmarks/bench_training.py optimizer       # (c) one AdamW step: torch's default vs fused
    python benchmarks/bench_training.py step --steps 5  # (d) one training step

The hard shapes (random colours; only the shape gives the class) from random weights:
``stream`` trains ``train_classifier`` on a :class:`camkit.data.shapes.ShapeStream` of
``--images`` generated images (one epoch, each image seen once), validated on 300 shapes of
another seed; ``folder`` runs ``camkit train FOLDER --pretrained none`` (a seeded 15 %
validation split). Each records the resolved recipe, images seen, epochs, wall time, images/s
and validation accuracy under its own key of the JSON result, so both runs share one file;
the checkpoint is kept for ``bench_alignment.py --weights CKPT --difficulties hard``.
``optimizer`` times one AdamW step on ResNet-50's parameters (4 classes, random gradients),
torch's default on the CPU (a loop over the tensors), ``foreach`` and the fused kernel camkit's
trainers use (:func:`camkit.training.loop.adamw`): medians of ``--steps`` steps. ``step``
times a whole training step at ``--size`` (96) per memory layout and precision (bfloat16 where
the CPU has the units); with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` set it runs on AVX2 kernels only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result

from camkit.cli import main as camkit
from camkit.data.shapes import ShapeStream
from camkit.io.checkpoint import load_checkpoint
from camkit.training.classifier import TrainConfig, train_classifier


def stream_run(
    images: int,
    out: Path,
    seed: int,
    size: int | None,
    pairs: float = 0.0,
    loss: str | None = None,
    lr: float | None = None,
    augment: bool | None = None,
) -> None:
    train = ShapeStream(images, seed, 128, "hard", pairs=pairs)
    val = ShapeStream(300, seed + 1, 128, "hard")
    chosen = {"lr": lr} if lr is not None else {}
    config = TrainConfig(
        pretrained="none", seed=seed, size=size, loss=loss, augment=augment, **chosen
    )
    train_classifier(train, out, config, val_data=val)


def folder_run(folder: Path, epochs: int, out: Path, size: int | None, loss: str | None) -> None:
    options = (["--size", str(size)] if size else []) + (["--loss", loss] if loss else [])
    code = camkit(["train", str(folder), "--out", str(out), "--epochs", str(epochs), *options])
    if code:
        raise SystemExit(code)


def optimizer_run(steps: int) -> dict:
    """Median milliseconds of one AdamW step per implementation (after two warm-up steps)."""
    from camkit.models.resnet import resnet50_variant

    parameters = list(resnet50_variant(2048, 4).parameters())
    for p in parameters:
        p.grad = torch.randn_like(p)
    medians = {}
    for name, options in (
        ("default", {}),
        ("foreach", {"foreach": True}),
        ("fused", {"fused": True}),
    ):
        optimizer = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=0.05, **options)
        times = []
        for _ in range(steps + 2):
            started = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - started)
        medians[name] = round(1e3 * sorted(times[2:])[steps // 2], 1)
    return {
        "command": f"bench_training.py optimizer --steps {steps}",
        "tensors": len(parameters),
        "step_ms": medians,
        "fused_speedup": round(medians["default"] / medians["fused"], 2),
    }


def step_run(size: int, steps: int) -> dict:
    """Median seconds of one training step (forward, backward, fused AdamW; ResNet-50, batch
    32, random inputs) per memory layout and precision."""
    import torch.nn.functional as F

    from camkit.models.resnet import resnet50_variant
    from camkit.training.loop import adamw, memory_format, native_bf16

    settings = [(True, False), (False, False)] + [(True, True)] * native_bf16()
    rows = []
    for channels_last, bf16 in settings:
        torch.manual_seed(0)
        layout = "channels_last" if channels_last else "contiguous"
        form = memory_format(channels_last)
        model = resnet50_variant(2048, 4, zero_init_residual=True).to(memory_format=form)
        optimizer = adamw(model.parameters(), 2e-3, 0.05)
        images = torch.randn(32, 3, size, size).to(memory_format=form)
        labels = torch.randint(0, 4, (32,))
        times = []
        for _ in range(steps + 2):
            started = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        median = sorted(times[2:])[steps // 2]
        rows.append({"layout": layout, "bf16": bf16, "first_step_s": round(times[0], 1),
                     "step_s": round(median, 3), "images_per_s": round(32 / median, 1)})  # fmt: skip
        print(rows[-1], flush=True)
    return {
        "command": f"bench_training.py step --size {size} --steps {steps}",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "steps": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=("stream", "folder", "optimizer", "step"))
    parser.add_argument("folder", nargs="?", type=Path, help="folder data set (source folder)")
    parser.add_argument("--images", type=int, default=20000, help="stream length")
    parser.add_argument("--epochs", type=int, default=10, help="epochs over the folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20, help="steps timed (optimizer, step)")
    parser.add_argument("--size", type=int, default=None, help="input side (the recipe's: 96)")
    parser.add_argument(
        "--pairs", type=float, default=0.0, help="stream share of two-object images"
    )
    parser.add_argument(
        "--loss", choices=("ce", "bce"), default=None, help="the training loss (the recipe's: ce)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="stream: peak learning rate (the recipe's: 2e-3)"
    )
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="stream: train on the generated images as they are (no crops, turns, colour shuffle)",
    )
    parser.add_argument("--ckpt", type=Path, default=None, help="default: /tmp/bench-SOURCE.ckpt")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training-cpu.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # progress lines
    if args.source == "step":
        row = step_run(args.size or 96, args.steps)
        _record(args.out, f"step-{args.size or 96}", row)
        return 0
    if args.source == "optimizer":
        row = optimizer_run(args.steps)
        print(json.dumps(row, indent=1))
        _record(args.out, args.source, row)
        return 0
    ckpt = args.ckpt or Path(f"/tmp/bench-{args.source}.ckpt")
    started = time.perf_counter()
    sized = (f" --size {args.size}" if args.size else "") + (
        f" --loss {args.loss}" if args.loss else ""
    )
    if args.source == "stream":
        stream_run(
            args.images, ckpt, args.seed, args.size, args.pairs, args.loss, args.lr, args.augment
        )
        seeded = f" --seed {args.seed}" if args.seed else ""
        paired = f" --pairs {args.pairs}" if args.pairs else ""
        tuned = (f" --lr {args.lr:g}" if args.lr else "") + (
            " --no-augment" if args.augment is False else ""
        )
        command = f"bench_training.py stream --images {args.images}{sized}{seeded}{paired}{tuned}"
    else:
        if args.folder is None:
            parser.error("source folder needs FOLDER (written by `camkit data shapes`)")
        if args.seed:
            parser.error("--seed is for the stream: `camkit train` seeds its split with 0")
        if args.lr is not None or args.augment is False:
            parser.error("--lr and --no-augment are for the stream (camkit train has its own)")
        folder_run(args.folder, args.epochs, ckpt, args.size, args.loss)
        command = (
            f"camkit train {args.folder} --out {ckpt} --epochs {args.epochs} --pretrained none"
        ) + sized
    seconds = time.perf_counter() - started
    checkpoint = load_checkpoint(ckpt)
    history = checkpoint["history"]
    config = checkpoint["config"]
    row = {
        "command": command,
        "checkpoint": str(ckpt),
        "recipe": config,
        "origin": checkpoint.get("origin"),
        "epochs": len(history),
        "images_seen": sum(h["train_images"] for h in history),
        "seconds": seconds,
        "images_per_s": [round(h["images_per_s"], 1) for h in history],
        "val_accuracy": history[-1]["val_accuracy"],
        "val_count": history[-1]["val_count"],
        "val_accuracy_by_epoch": [h["val_accuracy"] for h in history],
    }
    print(json.dumps(row, indent=1))
    _record(args.out, args.source, row)
    return 0


def _record(out: Path, key: str, row: dict) -> None:
    """``row`` under ``key`` of the result file's runs (the other runs kept)."""
    previous = json.loads(out.read_text()) if out.exists() else {}
    runs = previous.get("runs", {})
    runs[key] = row
    write_result(out, torch.device("cpu"), {"runs": runs})


if __name__ == "__main__":
    raise SystemExit(main())
