"""``camkit compare IMG|DIR``: heatmap-vs-mask metrics, CSV tables and comparison panels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from camkit.cli import options
from camkit.cli.common import (
    CLIError,
    check_class_ids,
    load_model,
    load_segmenter,
    pipeline_settings,
)

__all__ = ["add_parser", "run"]

PANEL_METRICS = (
    "pointing_game",
    "energy_in_mask",
    "iou@0.2",
    "iou_otsu",
    "auc",
    "pxap",
    "rank_accuracy",
)


SHOWN_APART = ("key", "input", "status", "class_id", "class_name", "probability", "score",
               "top1_class_id", "top1_probability", "panel", "error")  # fmt: skip


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare heatmaps with masks (files, a segmenter, or ground truth)",
        description="Heatmap-vs-mask metrics for one image (--mask or --segmenter) or a folder "
        "(--masks DIR or --segmenter): printed, CSV, and comparison panels. One class per "
        "image: the prediction, or the one --class.",
    )
    parser.add_argument("input", type=Path, help="an image, or a folder of images (recursive)")
    options.add_mask_options(parser, required=True)
    options.add_model_options(parser)
    options.add_layer_options(parser)
    options.add_target_options(parser, several=False)
    options.add_size_option(parser)
    options.add_speed_options(parser, only=("output_stride", "align"))
    options.add_output_options(parser, "camkit-compare")
    parser.add_argument(
        "--panels", type=int, default=None, help="panels to write in folder mode (default 16)"
    )
    parser.set_defaults(handler=run)


def _masks(args, items, model):
    """The run's masks; for a folder of masks every image must have one (checked up front)."""
    from camkit.pipeline.masks import MaskSource

    if args.segmenter is not None:
        segmenter = load_segmenter(args.segmenter, model)
        return MaskSource(segmenter=segmenter, resize=args.resize_mask)
    if args.mask is not None:
        return MaskSource(file=args.mask, resize=args.resize_mask)
    masks = MaskSource(folder=args.masks, resize=args.resize_mask).bound(items)
    missing = [item.key for item in items if item.key not in masks.by_key]
    if len(missing) == len(items):
        raise CLIError(
            f"no mask in {args.masks} matches an image in {args.input} (same relative path and stem)"
        )
    if missing:
        raise CLIError(
            f"{len(missing)} images have no mask in {args.masks}: " + ", ".join(missing[:5])
        )
    return masks


def _class_id(args, info) -> int | None:
    if args.class_ids is None:
        return None
    if len(args.class_ids) > 1:
        raise CLIError(
            f"compare measures one class per image; got --class {' '.join(map(str, args.class_ids))}. "
            "Pass one id, and run compare once per class for more"
        )
    check_class_ids(args.class_ids, info)
    return args.class_ids[0]


def _print_one(row: dict, layer: str, method: str, panel: Path) -> None:
    print(f"{row['input']}: {row['class_name']} p={row['probability']:.3f} ({layer}, {method})")
    for key, value in row.items():
        if key not in SHOWN_APART and isinstance(value, (int, float, type(None))):
            print(f"  {key:<16} {'n/a' if value is None else format(value, '.4f')}")
    print(f"panel: {panel}")


def _print_summary(summary: list[dict], out: Path) -> None:
    print(f"{'metric':<16} {'n':>5} {'mean':>8} {'median':>8}  95% bootstrap CI of the mean")
    for row in summary:
        if row["mean"] is not None:
            print(
                f"{row['metric']:<16} {row['n']:>5} {row['mean']:8.4f} {row['median']:8.4f}  "
                f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]"
            )
    print(f"per image: {out / 'metrics.csv'}; summary: {out / 'summary.csv'}")


def run(args) -> int:
    from camkit.data.inputs import as_inputs, output_names
    from camkit.io.tables import write_csv
    from camkit.pipeline.compare import summarise
    from camkit.pipeline.records import flat_row, record
    from camkit.pipeline.run import explain_images
    from camkit.progress import progress
    from camkit.viz.overlay import comparison_panel, save_image

    if not args.input.exists():
        raise FileNotFoundError(f"{args.input} does not exist")
    if args.input.is_dir() and args.mask is not None:
        raise CLIError("--mask is for one image; for a folder pass --masks DIR or --segmenter")
    if args.input.is_file() and args.masks is not None:
        raise CLIError("--masks is for a folder; for one image pass --mask FILE or --segmenter")
    model, info = load_model(args)
    _class_id(args, info)
    settings = pipeline_settings(args, info).resolved(model, info)
    items = as_inputs(args.input)
    masks = _masks(args, items, model)
    names = output_names([item.key for item in items])
    limit = args.panels if args.panels is not None else (16 if args.input.is_dir() else 1)
    entries, rows, panels = [], [], []
    results = explain_images(model, info, items, settings, masks, args.tolerance)
    for result in progress(results, total=len(items), desc="compare", unit="img"):
        entry = record(result, info, settings)
        if not result.ok:
            print(f"camkit: error: {result.error}", file=sys.stderr)
        elif len(panels) < limit:
            panel = args.out / "panels" / f"{names[result.key]}.compare.png"
            title = f"{settings.method} {settings.layer}: {entry['targets'][0]['name']}"
            metrics = {k: result.metrics[k] for k in PANEL_METRICS}
            heatmap = result.maps[result.order[0]].numpy()
            save_image(panel, comparison_panel(result.image, heatmap, result.mask, metrics, title))
            entry["outputs"] = {"panel": str(panel.relative_to(args.out))}
            panels.append(panel)
        entries.append(entry)
        rows.append(flat_row(entry))
    good = [row for row in rows if row["status"] == "ok"]
    summary = summarise(good)
    write_csv(args.out / "metrics.csv", rows)
    if summary:
        write_csv(args.out / "summary.csv", summary)
    if args.json:
        print(json.dumps({"images": entries, "summary": summary}, indent=1))
    elif len(items) == 1 and good:
        _print_one(good[0], settings.layer, settings.method, panels[0])
    elif summary:
        _print_summary(summary, args.out)
    failures = len(rows) - len(good)
    if failures:
        print(f"camkit: {failures} of {len(rows)} images failed", file=sys.stderr)
    return 1 if failures else 0
