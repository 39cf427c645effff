"""``camkit train DIR --out CKPT``: train or fine-tune a ResNet-50 classifier."""

from __future__ import annotations

import argparse
from pathlib import Path

from camkit.cli import options

__all__ = ["add_parser", "finished_message", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a ResNet-50 classifier on a folder data set",
        description="Train or fine-tune a ResNet-50 classifier on images/<class>/* .",
    )
    parser.add_argument("data", type=Path, help="data folder (images/<class>/*)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    parser.add_argument(
        "--val", type=Path, default=None, help="validation folder (default: a seeded split of DATA)"
    )
    parser.add_argument("--epochs", type=options.positive, default=1)
    parser.add_argument(
        "--size",
        type=options.positive,
        default=None,
        help="training side (default: the recipe's, 96 from scratch, 128 fine-tuning)",
    )
    parser.add_argument(
        "--batch-size",
        type=options.positive,
        default=None,
        help="default: the recipe's, 32 from scratch, 16 fine-tuning",
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--workers", type=options.count, default=1)
    parser.add_argument(
        "--pretrained",
        choices=("auto", "imagenet", "none"),
        default="auto",
        help="auto: ImageNet weights if cached locally, else from scratch",
    )
    parser.add_argument(
        "--recipe",
        choices=("auto", "scratch", "finetune"),
        default="auto",
        help="auto: scratch when the weights start random, else finetune; the options below "
        "default to the recipe's",
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="share of the steps spent warming up"
    )
    parser.add_argument("--label-smoothing", type=float, default=None)
    parser.add_argument(
        "--loss",
        choices=("ce", "bce"),
        default=None,
        help="ce: softmax cross-entropy; bce: a sigmoid per class (the recipe's by default)",
    )
    flag = argparse.BooleanOptionalAction
    parser.add_argument(
        "--augment",
        action=flag,
        default=None,
        help="random crop, flips, quarter turns, colour shuffle (scratch); flips (finetune)",
    )
    parser.add_argument(
        "--bf16",
        action=flag,
        default=None,
        help="bfloat16 autocast (default: where the CPU/GPU has it)",
    )
    parser.add_argument("--channels-last", action=flag, default=None)
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
    from camkit.training.classifier import TrainConfig, train_classifier

    config = TrainConfig(
        epochs=args.epochs,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        pretrained=args.pretrained,
        recipe=args.recipe,
        warmup=args.warmup,
        label_smoothing=args.label_smoothing,
        loss=args.loss,
        augment=args.augment,
        bf16=args.bf16,
        channels_last=args.channels_last,
    )
    trained: list[dict] = []
    metrics = train_classifier(
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
        f"epoch {metrics.get('epoch')}: validation accuracy "
        f"{metrics.get('val_accuracy', float('nan')):.3f}, loss "
        f"{metrics.get('val_loss', float('nan')):.3f} → {args.out}"
    )
    return 0


def finished_message(out: Path, metrics: dict) -> str:
    """What ``--resume`` says about a run that has already run all its epochs."""
    epochs = metrics.get("epoch")
    return (
        f"{out} already finished its {epochs} epoch{'' if epochs == 1 else 's'}, so there is "
        "nothing to resume and nothing was trained. To train for more epochs, start a new run "
        "with a higher --epochs and without --resume (it starts again from the initial weights; "
        "give it a new --out to keep this one)"
    )
