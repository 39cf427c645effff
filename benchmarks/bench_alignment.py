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

``--flips`` splits the centroid offset into what follows the object and what follows the
network's frame: each image is also explained flipped in both axes, its map flipped back. An
offset tied to the object keeps its sign; one tied to the network's frame (a drawing error, or
evidence the weights put beside the receptive-field centre) changes it. Object-tied = half the
sum of the two mean offsets, frame-tied = half their difference.
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
from bench_explain import write_result

from camkit.data.shapes import CLASSES
from camkit.demo import DemoConfig, centroid_offset, evaluate_localisation
from camkit.models.resnet import load_classifier

SCALE = 1.5  # the figure's tiles: 192 px for the 128 px images

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


def _marked(tile: np.ndarray, heat: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The heat-mass centroid (red cross) and the object's centroid (white cross)."""
    import cv2

    offset = centroid_offset(heat, mask)
    ys, xs = np.nonzero(mask)
    centre = (float(xs.mean()), float(ys.mean()))
    marks = [(centre, (255, 255, 255))]
    if offset is not None:  # None: a map without positive heat
        marks.insert(0, ((centre[0] + offset[1], centre[1] + offset[0]), (255, 0, 0)))
    for (x, y), colour in marks:
        point = (round(x * SCALE), round(y * SCALE))
        cv2.drawMarker(tile, point, colour, cv2.MARKER_CROSS, 14, 2, cv2.LINE_AA)
    return tile


def figure(model, info, config: DemoConfig, out: Path, count: int = 5) -> Path:
    """The same held-out images under both conventions (stride 32), the mask's contour on top."""
    import cv2

    from camkit.data.shapes import generate
    from camkit.demo import demo_inputs
    from camkit.pipeline.run import explain_images
    from camkit.pipeline.settings import Settings
    from camkit.viz.overlay import draw_contours, hstack, overlay, save_image, titled

    samples = [generate(i, config.seed + 2, config.size) for i in range(count)]
    rows = []
    for align, title in (("grid", "grid (the peers)"), ("rf", "rf (camkit)")):
        settings = Settings("layer4.2", size=config.size, align=align)
        results = explain_images(model, info, demo_inputs(samples, info, "figure"), settings)
        tiles = []
        for sample, result in zip(samples, results):
            heat, mask = result.maps[0].numpy(), sample.mask > 0
            shown = overlay(sample.image, heat / max(heat.max(), 1e-12), 0.5)
            side = round(config.size * SCALE)
            big = cv2.resize(shown, (side, side), interpolation=cv2.INTER_NEAREST)
            big = draw_contours(big, cv2.resize(mask.astype(np.uint8), (side, side)) > 0)
            tiles.append(titled(_marked(big, heat, mask), f"{title}, stride 32"))
        rows.append(hstack(tiles))
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    return save_image(out, np.concatenate([rows[0], gap, rows[1]]))


def turned_maps(model, info, samples, settings) -> tuple[list, list]:
    """Each sample's maps ``(K, H, W)``, and those of the sample turned 180° (both axes
    flipped), turned back onto the original."""
    from camkit.demo import demo_inputs
    from camkit.pipeline.run import explain_images

    turned = [
        replace(s, image=np.ascontiguousarray(s.image[::-1, ::-1]), mask=s.mask[::-1, ::-1])
        for s in samples
    ]
    plain = explain_images(model, info, demo_inputs(samples, info, "plain"), settings)
    back = explain_images(model, info, demo_inputs(turned, info, "turned"), settings)
    return [r.maps.numpy() for r in plain], [r.maps.numpy()[:, ::-1, ::-1] for r in back]


def flip_decomposition(
    model, info, config: DemoConfig, stride: int, align: str, difficulty: str, size: int
):
    """Mean centroid offsets (dy, dx) of plain and flipped-back maps, and their object-tied and
    frame-tied parts (see the module docstring)."""
    from camkit.data.shapes import generate
    from camkit.pipeline.settings import Settings

    samples = [generate(i, config.seed + 2, config.size, difficulty) for i in range(config.n_test)]
    settings = Settings("layer4.2", size=size, align=align, output_stride=stride)
    means = []
    for maps in turned_maps(model, info, samples, settings):
        offsets = [centroid_offset(m[0], s.mask > 0) for m, s in zip(maps, samples)]
        means.append(np.mean([o for o in offsets if o is not None], axis=0))
    plain, back = means
    return {
        "output_stride": stride,
        "align": align,
        "difficulty": difficulty,
        "plain": plain.tolist(),
        "flipped_back": back.tolist(),
        "object_tied": ((plain + back) / 2).tolist(),
        "frame_tied": ((plain - back) / 2).tolist(),
    }


def flip_table(rows: list[dict]) -> str:
    lines = [
        "| data | stride | align | plain dy / dx | object-tied | frame-tied |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            " / ".join(f"{v:+.1f}" for v in r[k]) for k in ("plain", "object_tied", "frame_tied")
        ]
        lines.append(
            f"| {r['difficulty']} | {r['output_stride']} | {r['align']} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def demo_classifier(parser: argparse.ArgumentParser, args) -> tuple:
    """``--weights`` (a demo checkpoint, or ``none``: random weights with the demo's classes)
    and a :class:`DemoConfig` of ``--n-test`` / ``--n-pairs`` images."""
    if args.weights not in ("none", "random") and not Path(args.weights).exists():
        parser.error(f"--weights {args.weights}: no such checkpoint; run `make demo` first")
    model, info = load_classifier(args.weights, num_classes=4)
    if info.random:
        info = replace(info, class_names=CLASSES, input_size=128)
    return model, info, DemoConfig(n_test=args.n_test, n_pairs=args.n_pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="camkit-demo/classifier.ckpt")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-pairs", type=int, default=100)
    parser.add_argument("--difficulties", default="easy,hard")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/alignment-cpu.json"))
    parser.add_argument("--figure", type=Path, default=None, help="also draw this PNG")
    parser.add_argument(
        "--size", type=int, default=128, help="the network's input side (the images are 128 px)"
    )
    parser.add_argument(
        "--flips", action="store_true", help="also split the offsets: object- vs frame-tied"
    )
    args = parser.parse_args(argv)
    model, info, config = demo_classifier(parser, args)
    if args.figure:
        print(f"wrote {figure(model, info, config, args.figure)}", file=sys.stderr)
    rows, start = [], time.perf_counter()
    for difficulty in [d for d in args.difficulties.split(",") if d]:
        for stride in (32, 16):
            for align in ("grid", "rf"):
                row = evaluate_localisation(
                    model, info, config, stride, align, difficulty, args.size
                )
                rows.append(row)
                print(f"{difficulty} stride {stride} {align}: done", file=sys.stderr, flush=True)
    print(table(rows))
    result = {
        "weights": args.weights,
        "size": args.size,
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }
    if args.flips:
        difficulties = [d for d in args.difficulties.split(",") if d]
        result["flips"] = [
            flip_decomposition(model, info, config, stride, align, difficulty, args.size)
            for difficulty in difficulties
            for stride in (32, 16)
            for align in ("grid", "rf")
        ]
        print("\n" + flip_table(result["flips"]))
    write_result(args.out, torch.device("cpu"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
