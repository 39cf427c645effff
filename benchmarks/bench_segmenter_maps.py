"""The classifier's map next to the segmenter's own, on the demo's held-out shapes.

    python benchmarks/bench_segmenter_maps.py        # the demo's models (make demo), 200 images
    python benchmarks/bench_segmenter_maps.py --n 20 --segmenter-maps gradcam:layer4

Grad-CAM of the demo classifier at ``layer4.2`` (true class = the predicted one here; output
stride 16, as the demo) and the ResUNet's own maps (``camkit.pipeline.segmenter_maps``: its
foreground's logits summed over its own predicted mask) at each ``METHOD:LAYER`` given, on the
same held-out images (``camkit data shapes --n 200 --size 128 --seed 2``, generated into
``--data`` when absent, as ``make compare-study`` does). Both maps are measured in the
segmenter's predicted mask and in the true mask; the classifier is explained once. Prints a
Markdown table (the README's) and writes every per-image value and the summaries as JSON.
The same numbers per configuration: ``camkit compare DATA/images --masks DATA/masks --weights
CLS --output-stride 16 --segmenter-maps SEG --segmenter-layer LAYER --segmenter-method METHOD``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from bench_explain import write_result

from camkit.data.folders import find_images, match_masks
from camkit.data.inputs import as_inputs
from camkit.data.shapes import write_dataset
from camkit.models.resnet import load_classifier
from camkit.models.segmenter import load_segmenter
from camkit.pipeline.compare import summarise
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.run import explain_images
from camkit.pipeline.segmenter_maps import SegmenterMaps, summary_table
from camkit.pipeline.settings import Settings

PER_IMAGE = ("pointing_game@predicted", "energy_in_mask@predicted", "pointing_game@true",
             "energy_in_mask@true", "flat")  # fmt: skip


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classifier", default="camkit-demo/classifier.ckpt")
    parser.add_argument("--segmenter", default="camkit-demo/segmenter-unet.ckpt")
    parser.add_argument("--data", type=Path, default=Path("camkit-demo/compare/test"))
    parser.add_argument("--n", type=int, default=200, help="held-out images (the first N)")
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--tolerance", type=float, default=15.0)
    parser.add_argument(
        "--segmenter-maps",
        default="gradcam:layer4,layercam:layer4,gradcam:layer3,gradcam:dec1",
        help="the segmenter's METHOD:LAYER pairs, comma-separated",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/segmenter-maps-cpu.json")
    )
    return parser.parse_args(argv)


def _rounded(values: list) -> list:
    return [None if v is None else round(float(v), 4) for v in values]


def _value(row: dict, column: str) -> str:
    value = row.get(column)
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not (args.data / "images").is_dir():
        write_dataset(args.data, max(args.n, 200), size=128, seed=2)
    paths = find_images(args.data / "images")[: args.n]
    model, info = load_classifier(args.classifier)
    segmenter, segmenter_info = load_segmenter(args.segmenter)
    settings = Settings("layer4.2", output_stride=args.output_stride, batch_size=25)
    truth = match_masks(paths, args.data / "images", args.data / "masks")
    items = as_inputs(paths)
    masks = MaskSource(by_key={item.key: truth[Path(item.path)] for item in items})
    started = time.perf_counter()
    results = list(explain_images(model, info, items, settings, masks, args.tolerance))
    classifier_seconds = time.perf_counter() - started
    failed = [r.key for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} images failed: {', '.join(failed[:5])}")
    configs, lines = [], []
    for spec in args.segmenter_maps.split(","):
        method, layer = spec.split(":")
        maps = SegmenterMaps(segmenter, segmenter_info, layer, method, tolerance=args.tolerance)
        started = time.perf_counter()
        pairs = [pair for _, pair in maps.follow(results, true_masks=True, batch_size=25)]
        seconds = time.perf_counter() - started
        rows = [pair.metrics for pair in pairs]
        map_size = list(pairs[0].segmenter_map_size)
        configs.append(
            {
                "method": method,
                "layer": layer,
                "map_size": map_size,
                "seconds": seconds,
                "table": summary_table(rows),
                "summary": summarise(rows),
                "per_image": {
                    "key": [pair.key for pair in pairs],
                    **{
                        f"{name}_{column}": _rounded([row[f"{name}_{column}"] for row in rows])
                        for name in ("classifier", "segmenter")
                        for column in PER_IMAGE
                    },
                    "agreement_spearman": _rounded([row["agreement_spearman"] for row in rows]),
                    "agreement_top20_iou": _rounded([row["agreement_top20_iou"] for row in rows]),
                },
            }
        )
        means = {s["metric"]: s["mean"] for s in configs[-1]["summary"]}
        if not lines:
            classifier_size = list(results[0].heatmaps.maps.shape[-2:])
            lines.append(_line("classifier", f"gradcam @ layer4.2 (stride {args.output_stride})",
                               classifier_size, means, "classifier"))  # fmt: skip
        lines.append(_line("segmenter", f"{method} @ {layer}", map_size, means, "segmenter"))
        print(f"{method} @ {layer}: {seconds:.0f} s", file=sys.stderr)
    header = (
        "| map | method @ layer | map at 128 px | flat maps | pointing game (predicted mask) | "
        "energy (predicted mask) | pointing game (true mask) | energy (true mask) | "
        "ρ with the classifier's | top-20 % IoU |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    print(header)
    print("\n".join(lines))
    write_result(
        args.out,
        torch.device("cpu"),
        {
            "command": "python benchmarks/bench_segmenter_maps.py "
            + " ".join(argv or sys.argv[1:]),
            "classifier": str(args.classifier),
            "segmenter": str(args.segmenter),
            "data": str(args.data),
            "n": len(paths),
            "output_stride": args.output_stride,
            "tolerance": args.tolerance,
            "classifier_seconds": classifier_seconds,
            "configs": configs,
        },
    )
    compact(args.out)
    return 0


def compact(path: Path) -> None:
    """Each list of numbers (or keys) on one line: 200 values per column stay readable."""
    text = path.read_text()
    inline = re.sub(
        r"\[\n\s*([^\[\]{}]*?)\n\s*\]",
        lambda m: "[" + re.sub(r"\n\s*", " ", m.group(1)) + "]",
        text,
    )
    path.write_text(inline)


def _line(kind: str, what: str, size, means: dict, name: str) -> str:
    cells = [f"{means.get(f'{name}_flat', 0):.3f}"]
    for mask in ("predicted", "true"):
        cells += [
            _value(means, f"{name}_pointing_game@{mask}"),
            _value(means, f"{name}_energy_in_mask@{mask}"),
        ]
    if name == "segmenter":  # means over the images where neither map is flat
        cells += [_value(means, "agreement_spearman"), _value(means, "agreement_top20_iou")]
    else:
        cells += ["", ""]
    return f"| {kind} | {what} | {size[0]}×{size[1]} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
