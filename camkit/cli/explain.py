"""``camkit explain IMG…``: predictions, heatmap panels and raw maps for images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from camkit.cli import options
from camkit.cli.common import CLIError, load_model, load_segmenter, pipeline_settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="heatmaps for images",
        description="Explain images: predictions, heatmap panels, raw maps.",
    )
    parser.add_argument("images", nargs="+", metavar="IMG", help="image files")
    options.add_layer_options(parser, several=True)
    options.add_target_options(parser)
    options.add_model_options(parser)
    options.add_size_option(parser)
    parser.add_argument("--batch-size", type=options.positive, default=16)
    options.add_speed_options(parser)
    options.add_mask_options(parser, sources=("mask", "segmenter"))
    options.add_output_options(parser, "camkit-out", overlay=True)
    parser.add_argument("--save-raw", action="store_true", help="also write raw maps as .npz")
    parser.set_defaults(handler=run)


def _masks(args, model, count: int):
    """``--mask`` (one image) or ``--segmenter``: the run's mask source, or ``None``."""
    from camkit.pipeline.masks import MaskSource

    if args.mask is not None and count != 1:
        raise CLIError(
            "--mask goes with one image; for several use --segmenter or `camkit compare DIR --masks`"
        )
    if args.mask is not None:
        return MaskSource(file=args.mask, resize=args.resize_mask)
    if args.segmenter is not None:
        return MaskSource(segmenter=load_segmenter(args.segmenter, model), resize=args.resize_mask)
    return None


def _write(args, info, settings, result, name: str) -> dict:
    """Render one result's panel (and raw maps) under ``--out``; its record (the one schema)."""
    from camkit.io.files import atomic_write_bytes
    from camkit.pipeline.records import npz_bytes, record
    from camkit.viz.overlay import panel, save_image

    entry = record(result, info, settings)
    shown = result.order[:8]
    titles = [f"{t['name']} p={t['probability']:.2f}" for t in entry["targets"][: len(shown)]]
    if result.metrics is not None:
        metrics = result.metrics
        titles[0] += f" PG={metrics['pointing_game']} E={metrics['energy_in_mask'] or 0:.2f}"
    outputs = {"panel": f"{name}.png"}
    picture = panel(
        result.image,
        list(result.maps[shown].numpy()),
        titles,
        args.alpha,
        args.colormap,
        mask=result.mask,
        image_title=f"{Path(result.key).name} ({settings.layer}, {settings.method})",
    )
    save_image(args.out / outputs["panel"], picture)
    if args.save_raw:
        outputs["raw"] = f"{name}.npz"
        atomic_write_bytes(args.out / outputs["raw"], npz_bytes(result, settings))
    entry["outputs"] = outputs
    return entry


def _print_record(entry: dict, out: Path) -> None:
    best = ", ".join(f"{p['name']} {p['probability']:.3f}" for p in entry["predictions"])
    print(f"{entry['input']}: {best}")
    print(
        f"  {entry['layer']} {entry['method']} [{entry['path']}] → {out / entry['outputs']['panel']}"
    )
    metrics = entry.get("metrics")
    if metrics is not None:
        keys = ("pointing_game", "energy_in_mask", "iou@0.2", "pxap")
        print(
            "  vs mask: "
            + ", ".join(
                f"{k} {'n/a' if metrics[k] is None else format(metrics[k], '.3f')}" for k in keys
            )
        )


def run(args) -> int:
    from dataclasses import replace

    from camkit.core.introspect import default_layer
    from camkit.data.inputs import as_inputs, output_names
    from camkit.pipeline.records import record
    from camkit.pipeline.run import explain_images
    from camkit.pipeline.settings import settings_tag
    from camkit.progress import progress

    model, info = load_model(args)
    if args.eigen_smooth and options.is_linear(args.method):
        raise CLIError(
            f"--eigen-smooth does not apply to --method {args.method} (a linear class map); "
            "use it with a Grad-CAM-family method such as gradcam"
        )
    default = default_layer(model)
    settings = pipeline_settings(args, info)
    settings = replace(settings, layer=settings.layer or default).resolved(model, info)
    items = as_inputs([Path(p) for p in args.images])
    masks = _masks(args, model, len(items))
    # names from the inputs' relative paths, tagged with every setting that changes a map
    tag = settings_tag(settings, default, info.input_size)
    names = {key: f"{name}.{tag}" for key, name in output_names([i.key for i in items]).items()}
    records, failures = [], 0
    results = explain_images(model, info, items, settings, masks, args.tolerance)
    for result in progress(results, total=len(items), desc="explain", unit="img"):
        if not result.ok:  # kept in --json as a record with status "error"
            failures += 1
            print(f"camkit: error: {result.error}", file=sys.stderr)
            records.append(record(result, info, settings))
            continue
        try:  # an output that cannot be written fails this image, not the run
            entry = _write(args, info, settings, result, names[result.key])
        except (OSError, ValueError) as error:
            failures += 1
            print(f"camkit: error: {result.key}: not written: {error}", file=sys.stderr)
            records.append({**record(result, info, settings), "status": "error",
                            "error": f"not written: {error}"})  # fmt: skip
            continue
        records.append(entry)
        if not args.json:
            _print_record(entry, args.out)
    if args.json:
        print(json.dumps(records, indent=1))
    if failures:
        print(f"camkit: {failures} of {len(items)} images failed", file=sys.stderr)
    return 1 if failures else 0
