"""``camkit variants compare CKPT… DIR``: channel variants on the same images."""

from __future__ import annotations

import json
from pathlib import Path

from camkit.cli import options
from camkit.cli.common import CLIError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "variants", help="study channel variants", description="Study channel variants."
    )
    actions = parser.add_subparsers(dest="variants_command", metavar="ACTION")
    actions.required = True
    compare = actions.add_parser(
        "compare",
        help="accuracy, localisation and heatmap agreement of variants on the same images",
        description="Run each variant on the same images: accuracy, pointing game and energy "
        "in mask (needs masks/), Spearman and top-20% IoU between variants; CSV tables and a "
        "figure. The data folder is the last positional argument (a folder) or --data DIR.",
    )
    compare.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        metavar="CKPT",
        help="variant checkpoints, then (unless --data) the folder with images/<class>/* "
        "(and masks/<class>/*)",
    )
    compare.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="the data folder (the same as a last DIR)",
    )
    compare.add_argument(
        "--out", type=options.folder, default=Path("camkit-variants"), help="output folder"
    )
    compare.add_argument(
        "--n",
        type=options.positive,
        default=200,
        help="images to use, spread over the classes (default 200)",
    )
    options.add_speed_options(compare, only=("output_stride", "align"))
    compare.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=run)


def _split(args) -> tuple[list[Path], Path]:
    """The checkpoints and the data folder: ``--data DIR``, or the last positional folder."""
    checkpoints = list(args.checkpoints)
    folder = args.data
    if checkpoints and checkpoints[-1].is_dir():
        last = checkpoints.pop()
        if folder is not None and folder != last:
            raise CLIError(f"two data folders: {last} and --data {folder}; pass one")
        folder = last
    if folder is None:
        raise CLIError("pass the data folder: camkit variants compare CKPT… DIR (or --data DIR)")
    if not checkpoints:
        raise CLIError("pass at least one variant checkpoint before the data folder")
    return checkpoints, folder


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(args) -> int:
    from camkit.pipeline.variants import compare_variants

    checkpoints, folder = _split(args)
    result = compare_variants(
        [str(c) for c in checkpoints], folder, args.out, args.n, args.output_stride
    )
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{'variant':<32} {'accuracy':>9} {'pointing':>9} {'energy':>7}   (Grad-CAM layer4.2, "
        f"output stride {result['output_stride']})"
    )
    for row in result["variants"]:
        print(
            f"{row['variant']:<32} {row['accuracy']:9.3f} {_show(row['pointing_game']):>9} "
            f"{_show(row['energy_in_mask']):>7}"
        )
    for row in result["agreement"]:
        values = list(row.values())
        print(
            f"{row['a']} vs {row['b']}: Spearman {_show(values[2])}, {list(row)[3]} {_show(values[3])}"
        )
    print(f"tables and figure: {result['out']}")
    return 0
