"""``camkit export INPUT --out OUT``: a whole folder, glob or list explained into OUT
(resumable, atomic, with a gallery); shards, torchrun and ``--merge``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from camkit.cli import options
from camkit.cli.common import DEFAULT_MODEL, CLIError, load_model, load_segmenter, pipeline_settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="heatmaps for a whole folder: resumable, atomic, with a gallery",
        description="Explain every image of a folder, glob or list file into OUT: overlays/, "
        "raw/ (float16 maps), manifest.jsonl, summary.csv and index.html. Rerun the same "
        "command to resume. Exit code 3 when some images failed (see the manifest). "
        "Scale out with `torchrun --nproc-per-node N -m camkit.cli export ...` or --shard K/N "
        "per process, then `camkit export --merge OUT`. The options mean what they mean for "
        "explain.",
    )
    parser.add_argument(
        "input", nargs="?", help="a folder (recursive), a glob ('a/**/*.jpg'), or a list file"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        default=None,
        metavar="OUT",
        help="join the shards' manifests of OUT and write summary.csv and index.html",
    )
    options.add_layer_options(parser, several=True)
    options.add_target_options(parser)
    options.add_model_options(parser)
    options.add_size_option(parser)
    parser.add_argument("--batch-size", type=options.positive, default=16)
    parser.add_argument(
        "--workers",
        type=options.count,
        default=None,
        help="decoding processes (default: min(4, CPUs))",
    )
    parser.add_argument(
        "--formats",
        default="overlay,raw",
        help="comma-separated: overlay, raw, mask, panel (default overlay,raw)",
    )
    options.add_mask_options(parser, sources=("masks", "segmenter"))
    options.add_speed_options(parser)
    options.add_output_options(parser, "camkit-export", json=False, overlay=True)
    parser.add_argument(
        "--max-side", type=options.positive, default=1024, help="overlays are at most this big"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo every image (needed when settings change)"
    )
    parser.add_argument(
        "--retry-errors", action="store_true", help="try images that failed before again"
    )
    parser.add_argument("--shard", default=None, metavar="K/N", help="this process's shard")
    parser.set_defaults(handler=run)


def _config(args, info, shard):
    from camkit import export as ex

    return ex.ExportConfig(
        settings=pipeline_settings(args, info),
        workers=min(4, os.cpu_count() or 1) if args.workers is None else args.workers,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        alpha=args.alpha,
        colormap=args.colormap,
        max_side=args.max_side,
        masks=args.masks,
        resize_mask=args.resize_mask,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        retry_errors=args.retry_errors,
        shard=shard,
    )


def _merge(out: Path) -> int:
    from camkit import export as ex

    counts = ex.merge(out)
    print(f"merged {counts['images']} images ({counts['failed']} failed) → {out / 'index.html'}")
    return 3 if counts["failed"] else 0


def run(args) -> int:
    from camkit import export as ex

    if args.merge is not None:
        return _merge(args.merge)
    if args.input is None:
        raise CLIError("pass the images (a folder, a glob or a list file), or --merge OUT")
    if args.eigen_smooth and options.is_linear(args.method):
        raise CLIError(
            f"--eigen-smooth does not apply to --method {args.method} (a linear class map); "
            "use it with a Grad-CAM-family method such as gradcam"
        )
    shard = ex.parse_shard(args.shard) if args.shard else (ex.torchrun_shard() or (0, 1))
    if args.device is None:
        args.device = ex.local_device()  # cuda:LOCAL_RANK under torchrun, else the default
    inputs = ex.collect_inputs(args.input)
    model, info = load_model(args)
    segmenter = None
    if args.segmenter is not None:
        segmenter = load_segmenter(args.segmenter, model)
        segmenter[1]["path"] = ex.describe_model(str(args.segmenter), "resunet")
    config = _config(args, info, shard)
    model_id = ex.describe_model(str(args.weights), args.model or DEFAULT_MODEL)
    try:
        counts = ex.export(model, info, inputs, args.out, config, segmenter, model_id)
    except KeyboardInterrupt:
        print(
            f"camkit: interrupted; finished images are kept in {args.out} — rerun the same "
            "command to resume",
            file=sys.stderr,
        )
        return 130
    print(
        f"shard {shard[0]}/{shard[1]}: {counts['done']} exported, {counts['skipped']} already "
        f"done, {counts['failed']} failed of {counts['total']}"
    )
    for key, reason in counts.get("errors", ()):  # the first failures, with their reasons
        print(f"camkit: failed: {key}: {reason}", file=sys.stderr)
    outcome = ex.finish_shard(args.out, shard)  # merges now, or after torchrun's barrier
    merged, index = outcome.merged, args.out / "index.html"
    if merged is not None and shard[1] == 1:
        print(f"{merged['images']} images, {merged['failed']} failed → {index}")
    elif merged is not None:  # rank 0 under torchrun, after every rank's shard
        print(f"merged {merged['images']} images → {index}")
    elif outcome.merge_later:
        print(f"when every shard is done: camkit export --merge {args.out}")
    return 3 if outcome.failed else 0
