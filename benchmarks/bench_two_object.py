"""Where does a class's maximum go when the two-object test misses? By object separation.

    python benchmarks/bench_two_object.py                  # the demo's classifier (make demo)
    python benchmarks/bench_two_object.py --weights none --n-pairs 4   # a quick check

For two-object hard shapes (the demo's pair generator, its seed), Grad-CAM at ``layer4.2`` for
each of the two true classes, put on the 128 px images both ways (``align="rf"`` and
``"grid"``) at output strides 32 and 16. Each class's maximum is placed on its own object
(the test's hit: within the tolerance and nearer its own), on the other object, or on
neither; the share of hits is also given by the distance between the objects' centroids,
which tells a resolution limit (misses only where the objects are close) from a miss of the
network's evidence (misses at every distance); and the share of maps for which some cell, drawn
where the alignment draws it, would have been a hit (what a perfect map of that lattice scores). Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_alignment import demo_classifier
from bench_explain import write_result

from camkit.data.shapes import generate
from camkit.demo import demo_inputs, maximum_places, object_distances, place_of
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings

BANDS = ((0, 45), (45, 60), (60, 75), (75, 1000))  # centroid distance, px


def separation(sample) -> float:
    """Distance between the two objects' mask centroids, px."""
    centres = [np.argwhere(sample.mask == label + 1).mean(axis=0) for label in sample.labels]
    return float(np.hypot(*(centres[0] - centres[1])))


def cell_places(sample, result) -> list[np.ndarray]:
    """For each class, the image pixel where each single cell of its map is drawn (the maximum
    of a one-hot map put on the image as every map is)."""
    heatmaps = result.heatmaps
    height, width = heatmaps.maps.shape[-2:]
    one_hot = torch.eye(height * width).reshape(1, height * width, height, width)
    drawn = replace(heatmaps, maps=one_hot).on_image(sample.mask.shape, index=0)
    flat = drawn.flatten(1).argmax(dim=1).numpy()
    return np.stack(np.unravel_index(flat, sample.mask.shape), axis=1)


def placements(model, info, pairs, config, stride: int, align: str) -> dict:
    """Shares of own / other / neither, and of hits per separation band."""
    settings = Settings(
        "layer4.2", "gradcam", size=config.size, output_stride=stride, align=align, batch_size=50
    )
    places, distances, reachable = [], [], []
    inputs = demo_inputs(pairs, info, "pair")
    for sample, result in zip(pairs, explain_images(model, info, inputs, settings)):
        found = maximum_places(sample, result, config.tolerance)
        cells = cell_places(sample, result)
        for label in sample.labels:
            to_objects = object_distances(sample, label)
            reachable.append(
                any(place_of(to_objects, y, x, config.tolerance) == "own" for y, x in cells)
            )
        places += found
        distances += [separation(sample)] * len(found)
    places, distances = np.array(places), np.array(distances)
    bands = {}
    for low, high in BANDS:
        inside = (distances >= low) & (distances < high)
        hits = float(np.mean(places[inside] == "own")) if inside.any() else None
        bands[f"{low}-{high}"] = {"maps": int(inside.sum()), "own": hits}
    return {
        "output_stride": stride,
        "align": align,
        **{place: float(np.mean(places == place)) for place in ("own", "other", "neither")},
        "a_cell_could": float(np.mean(reachable)),
        "bands": bands,
    }


def table(rows: list[dict]) -> str:
    names = [f"{low}–{high} px" if high < 1000 else f"≥ {low} px" for low, high in BANDS]
    header = "| stride | maps | own | other | neither | a cell could | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (6 + len(BANDS))]
    for row in rows:
        bands = [
            "–" if band["own"] is None else f"{band['own']:.3f} ({band['maps']})"
            for band in row["bands"].values()
        ]
        lines.append(
            f"| {row['output_stride']} | {row['align']} | {row['own']:.3f} | {row['other']:.3f} "
            f"| {row['neither']:.3f} | {row['a_cell_could']:.3f} | " + " | ".join(bands) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="camkit-demo/classifier.ckpt")
    parser.add_argument("--n-pairs", type=int, default=300)
    parser.add_argument("--difficulty", default="hard", choices=("easy", "hard"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/two-object-cpu.json"))
    args = parser.parse_args(argv)
    args.n_test = 0
    model, info, config = demo_classifier(parser, args)
    pairs = [
        generate(i, config.seed + 3, config.size, args.difficulty, objects=2)
        for i in range(args.n_pairs)
    ]
    start = time.perf_counter()
    rows = [
        placements(model, info, pairs, config, stride, align)
        for stride in (32, 16)
        for align in ("rf", "grid")
    ]
    print(table(rows))
    result = {
        "weights": args.weights,
        "difficulty": args.difficulty,
        "n_pairs": args.n_pairs,
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }
    write_result(args.out, torch.device("cpu"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
