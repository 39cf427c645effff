"""``camkit evaluate DIR``: CAM methods compared on the same images (localisation,
faithfulness, time)."""

from __future__ import annotations

import json
import sys

from camkit.cli import options
from camkit.cli.common import CLIError, data_folder, load_model

__all__ = ["add_parser", "run"]

DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,hirescam,layercam,ablationcam,eigencam"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare CAM methods: localisation, faithfulness, time",
        description="For each method on the same images: pointing game and energy in mask (if "
        "DIR/masks exists), deletion/insertion AUC (RISE), Average Drop, Increase in "
        "Confidence, time per image.",
    )
    options.add_data_folder(parser, "folder with images/ (and masks/), or of images")
    parser.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated (default: all but scorecam, which needs one pass per channel)",
    )
    options.add_model_options(parser)
    options.add_layer_options(parser, method=False)
    parser.add_argument(
        "--n", type=options.positive, default=50, help="images, spread over the folder (default 50)"
    )
    options.add_speed_options(parser, only=("output_stride", "score_channels", "align"))
    parser.add_argument(
        "--steps", type=options.positive, default=32, help="deletion/insertion steps (default 32)"
    )
    parser.add_argument("--baseline", choices=("blur", "zero"), default="blur")
    parser.add_argument(
        "--road",
        action="store_true",
        help="also ROAD (remove and debias, noisy linear imputation): MoRF, LeRF, combined",
    )
    options.add_mask_options(parser, sources=())  # masks: DIR/masks
    options.add_output_options(parser, "camkit-evaluate")
    parser.set_defaults(handler=run)


def _methods(text: str) -> list[str]:
    known = [m for m in options.method_names() if not options.is_linear(m)]
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))  # once each
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise CLIError(f"--methods: unknown {unknown}; choose from {', '.join(known)}")
    return methods


def _show(value, width: int, spec: str = ".3f") -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}{spec}}"


def run(args) -> int:
    from camkit.core.introspect import default_layer
    from camkit.io.tables import write_csv
    from camkit.pipeline.evaluate import evaluate_methods

    folder = data_folder(args)
    methods = _methods(args.methods)
    model, info = load_model(args)
    rows = evaluate_methods(
        model,
        info,
        folder,
        methods,
        args.layer or default_layer(model),
        args.n,
        args.output_stride,
        args.steps,
        args.baseline,
        score_channels=args.score_channels,
        tolerance=args.tolerance,
        resize_mask=args.resize_mask,
        align=args.align,
        road=args.road,
    )
    write_csv(args.out / "methods.csv", rows)
    masked, images = rows[0]["masked_images"], rows[0]["images"]
    if 0 < masked < images:
        print(
            f"note: {images - masked} of {images} images have no mask in masks/; pointing game "
            f"and energy in mask are over the {masked} that do",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    road = " ROAD morf   lerf  comb." if args.road else ""
    print(
        f"{'method':<19} {'ms/img':>8} {'pointing':>9} {'energy':>7} {'deletion':>9} "
        f"{'insertion':>10} {'avg drop':>9} {'increase':>9}{road}"
    )
    for row in rows:
        scores = (
            f" {row['road_morf']:9.3f} {row['road_lerf']:6.3f} {row['road_combined']:6.3f}"
            if args.road
            else ""
        )
        print(
            f"{row['method']:<19} {row['ms_per_image']:8.1f} {_show(row['pointing_game'], 9)} "
            f"{_show(row['energy_in_mask'], 7)} {row['deletion_auc']:9.3f} "
            f"{row['insertion_auc']:10.3f} {row['average_drop']:9.1f} "
            f"{row['increase_in_confidence']:9.1f}{scores}"
        )
    print(f"{len(rows)} methods on {rows[0]['images']} images → {args.out / 'methods.csv'}")
    return 0
