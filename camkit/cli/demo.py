"""``camkit demo``: shapes data, a trained ResNet-50 (cached), explained images, a report."""

from __future__ import annotations

import json
from pathlib import Path

from camkit.cli import options

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the offline demo: shapes data, training, report",
        description="Generate shapes data, train a ResNet-50 (cached), explain held-out images "
        "and write a report.",
    )
    parser.add_argument(
        "--out",
        type=options.folder,
        default=Path("camkit-demo"),
        help="demo folder (default: camkit-demo)",
    )
    parser.add_argument(
        "--n-stream",
        type=options.positive,
        default=24000,
        help="generated images the classifier trains on, each seen once (default 24000)",
    )
    parser.add_argument(
        "--n-train",
        type=options.positive,
        default=1500,
        help="images in the ResUNet's training folder (default 1500)",
    )
    parser.add_argument(
        "--difficulty",
        choices=("easy", "hard"),
        default="hard",
        help="hard (default): random colours, only shape decides; easy: a hue per class",
    )
    parser.add_argument("--epochs", type=options.positive, default=1)
    parser.add_argument(
        "--size",
        type=options.positive,
        default=128,
        help="side of the generated images, explained at this size (default 128; the classifier "
        "trains at its recipe's side, 96 px from scratch)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-segmenter", action="store_true", help="skip the ResUNet")
    parser.add_argument(
        "--compare-seed",
        type=int,
        default=0,
        metavar="N",
        help="also train the notes' seed ResUNet and a unet on N images each (equal data; seed "
        "is ~17× slower per image)",
    )
    parser.set_defaults(handler=run)


def run(args) -> int:
    from camkit.demo import DemoConfig, run_demo

    config = DemoConfig(
        out=str(args.out),
        n_train=args.n_train,
        n_stream=args.n_stream,
        difficulty=args.difficulty,
        epochs=args.epochs,
        size=args.size,
        segmenter=not args.no_segmenter,
        compare_seed=args.compare_seed,
    )
    summary = run_demo(config, quiet=args.json)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    training = summary["training"]
    print(
        f"classifier: validation accuracy {training['val_accuracy']:.3f} ({training['origin']}, "
        f"{training['epochs']} epoch, {training['n_train']} generated {args.difficulty} shapes "
        f"at {training['size']} px)"
    )
    print(
        f"{'Grad-CAM at layer4.2':<26} {'map':>5} {'accuracy':>9} {'pointing':>9} {'energy':>7} "
        f"{'2-object':>9}"
    )
    for name, row in summary["localisation"].items():
        shape = f"{row['map_size'][0]}×{row['map_size'][1]}"
        print(
            f"{name:<26} {shape:>5} {row['accuracy']:9.3f} {row['pointing_game']:9.3f} "
            f"{row['energy_in_mask']:7.3f} {row['two_object_own_max']:9.3f}"
        )
    for name, row in summary.get("segmentation", {}).items():
        print(
            f"ResUNet {name:<20} trained on {row['train_images']:>4} images: IoU {row['iou']:.3f} "
            f"(data set {row['iou_dataset']:.3f}), Dice {row['dice']:.3f} on {row['images']} "
            "held-out images"
        )
    print(f"report: {summary['report']}  ({summary['seconds']:.0f} s)")
    return 0
