"""Does averaging each map with that of the image turned 180° cancel the network's lean?

    python benchmarks/bench_turn_average.py --weights camkit-demo/classifier.ckpt
    python benchmarks/bench_turn_average.py --weights none --n-test 4 --n-pairs 2   # a quick check

The demo's classifier is trained with flips and quarter turns, so an image turned by 180° is
one it knows. A lean tied to the network's frame (``bench_alignment.py --flips``) changes sign
when the map of the turned image is turned back; the average of the two maps keeps only the
part tied to the object, and its cells interleave (at 128 px the turned image's cell centres lie
at 127 − S·i). Aligned (rf) Grad-CAM at ``layer4.2`` for the true class on the held-out hard
shapes, plain against averaged: centroid offset, energy in mask, pointing game, two-object test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alignment import demo_classifier, turned_maps
from bench_explain import write_result

from camkit.data.shapes import generate
from camkit.demo import DemoConfig, centroid_offset, own_maximum
from camkit.metrics.localisation import energy_in_mask, pointing_game
from camkit.pipeline.settings import Settings


def measure(model, info, config: DemoConfig, stride: int, tolerance: float) -> list[dict]:
    settings = Settings("layer4.2", size=config.size, output_stride=stride, batch_size=50)
    singles = [generate(i, config.seed + 2, config.size, "hard") for i in range(config.n_test)]
    pairs = [
        generate(i, config.seed + 3, config.size, "hard", objects=2) for i in range(config.n_pairs)
    ]
    single_maps = turned_maps(model, info, singles, settings)
    pair_maps = turned_maps(model, info, pairs, settings)
    masks = [s.mask > 0 for s in singles]
    rows = []
    for name, pick in (("plain", lambda a, b: a), ("turn-averaged", lambda a, b: (a + b) / 2)):
        maps = [pick(a, b)[0] for a, b in zip(*single_maps)]
        offsets = [centroid_offset(m, k) for m, k in zip(maps, masks)]
        offsets = np.array([o for o in offsets if o is not None])
        own = []
        for sample, a, b in zip(pairs, *pair_maps):
            own += own_maximum(sample, SimpleNamespace(maps=pick(a, b)), tolerance)
        rows.append(
            {
                "output_stride": stride,
                "maps": name,
                "centroid_offset_y": float(offsets[:, 0].mean()),
                "centroid_offset_x": float(offsets[:, 1].mean()),
                "energy_in_mask": float(
                    np.mean([energy_in_mask(m, k) for m, k in zip(maps, masks)])
                ),
                "pointing_game": float(
                    np.mean([pointing_game(m, k, tolerance) for m, k in zip(maps, masks)])
                ),
                "two_object_own_max": float(np.mean(own)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="camkit-demo/classifier.ckpt")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-pairs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/turn-average.json"))
    args = parser.parse_args(argv)
    model, info, config = demo_classifier(parser, args)
    rows = [row for stride in (32, 16) for row in measure(model, info, config, stride, 15.0)]
    print("| stride | maps | centroid dy / dx | energy in mask | pointing game | two-object |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['output_stride']} | {r['maps']} | {r['centroid_offset_y']:+.1f} / "
            f"{r['centroid_offset_x']:+.1f} | {r['energy_in_mask']:.3f} | "
            f"{r['pointing_game']:.3f} | {r['two_object_own_max']:.3f} |"
        )
    write_result(args.out, torch.device("cpu"), {"weights": args.weights, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
