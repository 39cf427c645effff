"""``camkit segment IMG… --segmenter CKPT``: a mask PNG and an overlay per image."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from camkit.cli import options
from camkit.cli.common import CLIError, device, unique_stems

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="predict masks with a trained segmenter",
        description="Write a mask PNG and an overlay per image (any size; resized for the model "
        "and back).",
    )
    parser.add_argument("images", nargs="+", metavar="IMG")
    parser.add_argument(
        "--segmenter",
        "--weights",  # the older spelling, kept so that existing command lines work
        dest="segmenter",
        type=Path,
        required=True,
        help=options.MASK_SOURCES["segmenter"].replace(": predict the masks", ""),
    )
    parser.add_argument("--out", type=options.folder, default=Path("camkit-masks"))
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument(
        "--probabilities", action="store_true", help="also write probability maps (.npz, float16)"
    )
    options.add_device_option(parser)
    parser.set_defaults(handler=run)


def _write(args, path: Path, stem: str, image, mask, probabilities, binary: bool) -> None:
    import cv2
    import numpy as np

    from camkit.io.files import atomic_write_bytes
    from camkit.viz.overlay import draw_contours, hstack, save_image

    # single-channel PNG: 0/255 for binary masks (visible; read back as > 0), else class ids
    ok, encoded = cv2.imencode(".png", (mask * (255 if binary else 1)).astype(np.uint8))
    if not ok:
        raise CLIError(f"cannot encode the mask of {path}")
    atomic_write_bytes(args.out / f"{stem}.mask.png", encoded.tobytes())
    tint = image.copy()
    tint[mask > 0] = (0.5 * tint[mask > 0] + 0.5 * np.array([255, 0, 255])).astype(np.uint8)
    save_image(
        args.out / f"{stem}.overlay.png",
        hstack([image, draw_contours(tint, mask > 0, (255, 255, 0))]),
    )
    if args.probabilities:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, probabilities=probabilities.astype(np.float16))
        atomic_write_bytes(args.out / f"{stem}.prob.npz", buffer.getvalue())


def run(args) -> int:
    from camkit.data.images import read_image
    from camkit.models.segmenter import load_segmenter
    from camkit.pipeline.masks import predict_masks

    if not 0.0 < args.threshold < 1.0:
        raise CLIError(f"--threshold must be in (0, 1), got {args.threshold}")
    model, info = load_segmenter(args.segmenter)
    model.to(device(args.device))
    binary = int(info["classes"]) == 1
    paths = [Path(p) for p in args.images]
    failures = 0
    for path, stem in zip(paths, unique_stems(paths)):
        try:
            image = read_image(path)
        except (OSError, ValueError) as error:
            failures += 1
            print(f"camkit: error: {error}", file=sys.stderr)
            continue
        mask, probabilities = predict_masks(model, info, [image], args.threshold)[0]
        _write(args, path, stem, image, mask, probabilities, binary)
        share = float((mask > 0).mean())
        print(f"{path}: foreground {share:.1%} → {args.out / (stem + '.mask.png')}")
    if failures:
        print(f"camkit: {failures} of {len(paths)} images failed", file=sys.stderr)
    return 1 if failures else 0
