"""``camkit train-seg DIR --out CKPT``: train a ResUNet segmenter on images/ + masks/."""

from __future__ import annotations

import argparse
from pathlib import Path

from camkit.cli import options

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-seg",
        help="train a ResUNet segmenter on images/ + masks/",
        description="Train a ResUNet (unet or seed) on a folder data set with images/ and "
        "masks/ (same relative paths).",
    )
    parser.add_argument("data", type=Path, help="folder with images/ and masks/")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    parser.add_argument(
        "--val", type=Path, default=None, help="validation folder (default: a seeded split)"
    )
    parser.add_argument("--arch", choices=("unet", "seed"), default="unet")
    parser.add_argument(
        "--classes",
        type=options.positive,
        default=1,
        help="1: binary foreground; K+1: K classes plus background",
    )
    parser.add_argument("--epochs", type=options.positive, default=1)
    parser.add_argument(
        "--size", type=options.positive, default=128, help="training side, a multiple of 32"
    )
    parser.add_argument("--batch-size", type=options.positive, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--loss", default="bce+dice", help="'+'-joined: bce, focal, dice, lovasz (default bce+dice)"
    )
    parser.add_argument("--no-deep-supervision", action="store_true")
    parser.add_argument(
        "--encoder", default=None, help="'imagenet' (local cache), a classifier checkpoint, or none"
    )
    parser.add_argument(
        "--limit", type=options.positive, default=None, help="train on this many images only"
    )
    parser.add_argument("--workers", type=options.count, default=1)
    flag = argparse.BooleanOptionalAction
    parser.add_argument(
        "--bf16",
        action=flag,
        default=None,
        help="bfloat16 autocast (default: where the CPU/GPU has it)",
    )
    parser.add_argument("--channels-last", action=flag, default=True, help="(default: on)")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from --out"
    )
    parser.add_argument(
        "--keep-resume",
        action="store_true",
        help="keep OUT.resume (optimizer and schedule state) after the run finishes",
    )
    options.add_device_option(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from camkit.cli.train import finished_message
    from camkit.training.segmenter import SegConfig, train_segmenter

    encoder = None if args.encoder in (None, "none") else args.encoder
    config = SegConfig(
        arch=args.arch,
        classes=args.classes,
        epochs=args.epochs,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        deep_supervision=not args.no_deep_supervision,
        encoder=encoder,
        limit=args.limit,
        workers=args.workers,
        bf16=args.bf16,
        channels_last=args.channels_last,
    )
    trained: list[dict] = []
    metrics = train_segmenter(
        args.data,
        args.out,
        config,
        val_data=args.val,
        resume=args.resume,
        device=args.device,
        on_epoch=trained.append,
        keep_resume=args.keep_resume,
    )
    if not trained:
        print(finished_message(args.out, metrics))
        return 0
    print(
        f"epoch {metrics['epoch']}: validation IoU {metrics['val_iou']:.3f} "
        f"(data set {metrics['val_iou_dataset']:.3f}), Dice {metrics['val_dice']:.3f} "
        f"(data set {metrics['val_dice_dataset']:.3f}) → {args.out}"
    )
    return 0
