"""``camkit variant --channels C --from CKPT``: a channel variant of layer4.2, fine-tuned."""

from __future__ import annotations

from pathlib import Path

from camkit.cli import options
from camkit.cli.common import CLIError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "variant",
        help="build a channel variant of layer4.2 from a trained checkpoint and fine-tune it",
        description="Weight-preserving surgery to C output channels in layer4.2, then "
        "fine-tuning (layer4.2 + fc unless --train-all).",
    )
    parser.add_argument(
        "--channels", type=options.positive, required=True, help="output channels C of layer4.2"
    )
    parser.add_argument("--from", dest="parent", type=Path, required=True, help="parent checkpoint")
    parser.add_argument(
        "--data", type=Path, required=True, help="training folder (images/<class>/*)"
    )
    parser.add_argument(
        "--val", type=Path, default=None, help="validation folder (default: a seeded split)"
    )
    parser.add_argument("--out", type=Path, required=True, help="variant checkpoint to write")
    parser.add_argument(
        "--epochs", type=options.count, default=1, help="fine-tuning epochs (0: surgery only)"
    )
    parser.add_argument(
        "--train-all", action="store_true", help="train every layer, not only layer4.2 and fc"
    )
    parser.add_argument("--batch-size", type=options.positive, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=options.count, default=1)
    parser.set_defaults(handler=run)


def run(args) -> int:
    from camkit.models.resnet import load_classifier
    from camkit.training.classifier import TrainConfig
    from camkit.training.variants import make_variant

    if not Path(args.parent).is_file():  # 'none' and 'imagenet' are no parents here
        raise CLIError(
            f"--from {args.parent}: no such checkpoint file; the parent is a classifier "
            "checkpoint, as camkit train --out writes one"
        )
    config = TrainConfig(batch_size=args.batch_size, lr=args.lr, workers=args.workers)
    _, info = load_classifier(args.parent)
    config.size = info.input_size
    report = make_variant(
        args.parent,
        args.channels,
        args.data,
        args.out,
        args.epochs,
        args.train_all,
        args.val,
        config,
    )
    before = report.before
    print(
        f"surgery {info.channels}→{report.channels} channels (kept {report.kept} of the "
        f"parent's): max |Δlogit| {before['max_abs_logit_diff']:.3g}, mean relative "
        f"{before['mean_relative_logit_diff']:.3g}, accuracy {before['variant_accuracy']:.3f} "
        f"vs parent {before['parent_accuracy']:.3f} (same prediction on "
        f"{before['prediction_agreement']:.1%} of {before['count']} images)"
    )
    if args.epochs:
        print(
            f"after {args.epochs} epoch(s) of fine-tuning: validation accuracy "
            f"{report.after['val_accuracy']:.3f} → {report.checkpoint}"
        )
    else:
        print(f"saved without training → {report.checkpoint}")
    return 0
