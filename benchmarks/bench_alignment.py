"""Where do the maps land? Grid (the peers' convention) against receptive-field-aligned maps.

    python benchmarks/bench_alignment.py                        # the demo's classifier (make demo)
    python benchmarks/bench_alignment.py --weights none --n-test 8 --n-pairs 4   # a quick check

For the demo's held-out single-object shapes (``easy``: each class has its own hue, as the demo
trains) and shapes coloured at random (``hard``), at output strides 32 and 16, Grad-CAM at
``layer4.2`` for the true class is put on the 128 px images both ways (``align="grid"`` and
``"rf"``) and measured: the heat-mass centroid's offset from the object's centroid (px, +y down,
+x right), energy in the mask, the pointing game, and the two-object test (each class's map has
its maximum on its own object). One run, the same maps, only the resampling differs. Prints a
Markdown table (the README's) and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result

from camkit.data.shapes import CLASSES
from camkit.demo import DemoConfig, evaluate_localisation
from camkit.models.resnet import load_classifier

COLUMNS = (
    ("accuracy", "accuracy", "{:.3f}"),
    ("centroid_offset_y", "centroid dy", "{:+.1f}"),
    ("centroid_offset_x", "centroid dx", "{:+.1f}"),
    ("energy_in_mask", "energy in mask", "{:.3f}"),
    ("pointing_game", "pointing game", "{:.3f}"),
    ("two_object_own_max", "two-object own max", "{:.3f}"),
)


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, grid and rf side by side."""
    head = "| data | stride | align | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for row in rows:
        values = " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS)
        lines.append(
            f"| {row['difficulty']} | {row['output_stride']} | {row['align']} | {values} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="camkit-demo/classifier.ckpt")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-pairs", type=int, default=100)
    parser.add_argument("--difficulties", default="easy,hard")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/alignment-cpu.json"))
    args = parser.parse_args(argv)
    if args.weights not in ("none", "random") and not Path(args.weights).exists():
        parser.error(f"--weights {args.weights}: no such checkpoint; run `make demo` first")
    model, info = load_classifier(args.weights, num_classes=4)
    if info.random:
        info = replace(info, class_names=CLASSES, input_size=128)
    config = DemoConfig(n_test=args.n_test, n_pairs=args.n_pairs)
    rows, start = [], time.perf_counter()
    for difficulty in args.difficulties.split(","):
        for stride in (32, 16):
            for align in ("grid", "rf"):
                row = evaluate_localisation(model, info, config, stride, align, difficulty)
                rows.append(row)
                print(f"{difficulty} stride {stride} {align}: done", file=sys.stderr, flush=True)
    print(table(rows))
    result = {"weights": args.weights, "seconds": time.perf_counter() - start, "rows": rows}
    write_result(args.out, torch.device("cpu"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
