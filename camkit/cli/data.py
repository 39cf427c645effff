"""``camkit data shapes``: camkit's synthetic data sets."""

from __future__ import annotations

from camkit.cli import options

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="generate data sets", description="Generate camkit's synthetic data sets."
    )
    kinds = parser.add_subparsers(dest="data_command", metavar="KIND")
    kinds.required = True
    shapes = kinds.add_parser(
        "shapes",
        help="synthetic shapes with masks",
        description="Write synthetic shapes as a folder data set (images/<class>/*.png, "
        "masks/<class>/*.png).",
    )
    shapes.add_argument("--out", type=options.folder, required=True)
    shapes.add_argument("--n", type=options.positive, default=2000)
    shapes.add_argument(
        "--size", type=options.positive, default=128, help="image side (default 128)"
    )
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--difficulty", choices=("easy", "hard"), default="easy")
    shapes.add_argument("--objects", type=int, choices=(1, 2), default=1)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from camkit.data.shapes import write_dataset

    root = write_dataset(
        args.out,
        args.n,
        args.size,
        args.seed,
        args.difficulty,
        args.objects,
        progress=None,  # a bar on a terminal, a plain line now and then elsewhere
    )
    print(f"wrote {args.n} images and masks to {root}")
    return 0
