"""``camkit compare IMG|DIR``: heatmap-vs-mask metrics, CSV tables and comparison panels.

With ``--segmenter-maps`` also the segmenter's own Grad-CAM on the same images, measured in its
predicted mask and in the true masks beside the classifier's (``camkit.pipeline.segmenter_maps``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from camkit import methods
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
               "top1_class_id", "top1_probability", "panel", "error",
               "segmenter_class_id")  # fmt: skip
SEGMENTER_MAP_ROWS = 8  # images in segmenter-maps.png (at most --panels)


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
        "--panels",
        type=options.count,
        default=None,
        help="panels to write in folder mode (default 16)",
    )
    own = parser.add_argument_group("the segmenter's own maps")
    own.add_argument(
        "--segmenter-maps",
        nargs="?",
        const=True,
        default=None,
        type=Path,
        metavar="CKPT",
        help="also explain this segmenter (default: --segmenter's) on the same images: its own "
        "Grad-CAM over its predicted mask, measured with the classifier's map in that mask and "
        "in --mask/--masks; extra columns and segmenter-maps.png",
    )
    own.add_argument(
        "--segmenter-layer",
        default=None,
        help="the segmenter's layer for --segmenter-maps (default layer4; layer1–layer4, dec4–dec0)",
    )
    own.add_argument(
        "--segmenter-method",
        choices=methods.names(needs=methods.REGION_NEEDS),
        default=None,
        help="the segmenter's method for --segmenter-maps (default: --method)",
    )
    parser.set_defaults(handler=run)


def _segmenter_maps(args, model, settings):
    """The ``SegmenterMaps`` of ``--segmenter-maps`` (``None`` without it)."""
    from camkit.pipeline.segmenter_maps import SegmenterMaps

    if args.segmenter_maps is None:
        if args.segmenter_layer is not None or args.segmenter_method is not None:
            given = "--segmenter-layer" if args.segmenter_layer else "--segmenter-method"
            raise CLIError(f"{given} goes with --segmenter-maps; add --segmenter-maps [CKPT]")
        return None
    if args.segmenter_maps is True:
        if args.segmenter is None:
            raise CLIError(
                "--segmenter-maps needs a segmenter: pass --segmenter-maps CKPT (with --mask or "
                "--masks for the true masks), or --segmenter CKPT --segmenter-maps"
            )
        path = args.segmenter
    elif args.segmenter is not None:
        raise CLIError(
            f"--segmenter {args.segmenter} and --segmenter-maps {args.segmenter_maps}: give the "
            "segmenter once (--segmenter CKPT --segmenter-maps explains the one that made the masks)"
        )
    else:
        path = args.segmenter_maps
    method = args.segmenter_method or settings.method
    if method not in methods.names(needs=methods.REGION_NEEDS):
        raise CLIError(
            f"--segmenter-maps explains the segmenter with --method {method}, which it cannot "
            "take (only methods with gradients or the activations alone explain a region "
            "score); pass --segmenter-method gradcam"
        )
    segmenter, info = load_segmenter(path, model)
    try:
        return SegmenterMaps(
            segmenter,
            info,
            layer=args.segmenter_layer or "layer4",
            method=method,
            align=settings.align,
            tolerance=args.tolerance,
        )
    except ValueError as error:
        raise CLIError(f"--segmenter-maps {path}: {error}") from None


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
    shown = {k: v for k, v in row.items() if k not in SHOWN_APART}
    shown = {k: v for k, v in shown.items() if isinstance(v, (int, float, type(None)))}
    width = max([16, *map(len, shown)])
    for key, value in shown.items():
        print(f"  {key:<{width}} {'n/a' if value is None else format(value, '.4f')}")
    print(f"panel: {panel}")


def _print_summary(summary: list[dict], out: Path) -> None:
    width = max([16, *(len(row["metric"]) for row in summary)])
    print(f"{'metric':<{width}} {'n':>5} {'mean':>8} {'median':>8}  95% bootstrap CI of the mean")
    for row in summary:
        if row["mean"] is not None:
            print(
                f"{row['metric']:<{width}} {row['n']:>5} {row['mean']:8.4f} {row['median']:8.4f}  "
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
    own_maps = _segmenter_maps(args, model, settings)
    items = as_inputs(args.input)
    masks = _masks(args, items, model)
    names = output_names([item.key for item in items])
    limit = args.panels if args.panels is not None else (16 if args.input.is_dir() else 1)
    entries, rows, panels, pairs, unwritten = [], [], [], [], 0
    results = explain_images(model, info, items, settings, masks, args.tolerance)
    if own_maps is not None:  # the mask files are true masks; --segmenter's are predicted
        results = own_maps.follow(results, args.segmenter is None, settings.batch_size)
    else:
        results = ((result, None) for result in results)
    for result, pair in progress(results, total=len(items), desc="compare", unit="img"):
        entry = record(result, info, settings)
        if pair is not None:
            entry["segmenter_maps"] = pair.metrics
            if len(pairs) < min(limit, SEGMENTER_MAP_ROWS):
                pairs.append(pair)
        if not result.ok:
            print(f"camkit: error: {result.error}", file=sys.stderr)
        elif len(panels) < limit:
            panel = args.out / "panels" / f"{names[result.key]}.compare.png"
            title = f"{settings.method} {settings.layer}: {entry['targets'][0]['name']}"
            metrics = {k: result.metrics[k] for k in PANEL_METRICS}
            heatmap = result.maps[result.order[0]].numpy()
            try:  # a panel that cannot be written loses neither the metrics nor the others
                picture = comparison_panel(result.image, heatmap, result.mask, metrics, title)
                save_image(panel, picture)
            except (OSError, ValueError) as error:
                unwritten += 1
                print(f"camkit: error: {result.key}: panel not written: {error}", file=sys.stderr)
            else:
                entry["outputs"] = {"panel": str(panel.relative_to(args.out))}
                panels.append(panel)
        entries.append(entry)
        rows.append({**flat_row(entry), **entry.get("segmenter_maps", {})})
    good = [row for row in rows if row["status"] == "ok"]
    summary = summarise(good)
    write_csv(args.out / "metrics.csv", rows)
    figure = None
    if pairs:
        from camkit.pipeline.segmenter_maps import pairs_figure
        from camkit.viz.plots import save_figure

        segmenter_label = f"segmenter {own_maps.method} {own_maps.layer}"
        labels = (f"classifier {settings.method} {settings.layer}", segmenter_label)
        figure = save_figure(args.out / "segmenter-maps.png", pairs_figure(pairs, *labels))
    if summary:
        write_csv(args.out / "summary.csv", summary)
    if args.json:
        print(json.dumps({"images": entries, "summary": summary}, indent=1))
    elif len(items) == 1 and good and panels:
        _print_one(good[0], settings.layer, settings.method, panels[0])
    elif summary:
        _print_summary(summary, args.out)
    if figure is not None and not args.json:
        print(f"classifier's and segmenter's maps: {figure}")
    failures = len(rows) - len(good)
    if failures:
        print(f"camkit: {failures} of {len(rows)} images failed", file=sys.stderr)
    if unwritten:
        print(f"camkit: {unwritten} panels could not be written", file=sys.stderr)
    return 1 if failures or unwritten else 0
