"""``camkit explain-seg IMG… --segmenter CKPT``: what the segmenter itself looks at.

The Grad-CAM family for a class's logits summed over a region — the segmenter's own predicted
mask by default, or ``--mask`` — at any encoder or decoder layer (``camkit.regions``). One
panel per image: the region's contour on the image, and the heatmap with the contour on top.
"""

from __future__ import annotations

import sys
from pathlib import Path

from camkit import methods
from camkit.cli import options
from camkit.cli.common import CLIError, device, note, unique_stems

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain-seg",
        help="explain a segmenter: Grad-CAM of a class over its own mask",
        description="Heatmaps of a segmenter's class logits summed over a region (its own "
        "predicted mask, or --mask), at any encoder or decoder layer.",
    )
    parser.add_argument("images", nargs="+", metavar="IMG")
    parser.add_argument("--segmenter", type=Path, required=True, help="camkit train-seg checkpoint")
    parser.add_argument(
        "--layer", default="layer4", help="encoder (layer1–layer4) or decoder (dec4–dec0) layer"
    )
    parser.add_argument(
        "--method",
        choices=methods.names(needs=methods.REGION_NEEDS),
        default="gradcam",
        help="a method that takes gradients or the activations alone (default gradcam)",
    )
    parser.add_argument(
        "--class",
        dest="class_id",
        type=int,
        default=None,
        help="class id (default: the foreground, or each image's largest predicted class)",
    )
    parser.add_argument(
        "--mask", type=Path, default=None, help="a region mask for every image (else its own)"
    )
    parser.add_argument(
        "--resize-mask",
        action="store_true",
        help="resize a --mask of another size than an image (else that is an error)",
    )
    parser.add_argument("--align", choices=("rf", "grid"), default="rf")
    parser.add_argument("--out", type=options.folder, default=Path("camkit-seg-explain"))
    options.add_device_option(parser)
    parser.set_defaults(handler=run)


def _read_region(path: Path):
    """``--mask``: the region file, read once: any pixel non-zero in any channel (white, or
    any colour); an empty region is an error."""
    from camkit.data.images import read_image

    if path.is_dir():
        raise CLIError(f"--mask {path} is a folder, not a mask file")
    try:
        mask = read_image(path).max(axis=2)
    except (OSError, ValueError) as error:
        raise CLIError(f"--mask: {error}") from None
    if not mask.any():
        raise CLIError(f"--mask {path} is empty (no pixel > 0); draw the region in white")
    return mask


def _region(mask, image, path: Path, mask_path: Path, resize: bool, size: int):
    """The region for one image as 0/1 ``(1, size, size)`` at the segmenter's input: the mask
    must be the image's size (or ``--resize-mask``), and must keep a pixel at ``size``."""
    import cv2
    import torch

    from camkit.pipeline.masks import check_mask

    region = check_mask(mask, image, path, resize, mask_path).astype("uint8")
    resized = cv2.resize(region, (size, size), interpolation=cv2.INTER_NEAREST) > 0
    if not resized.any():
        raise ValueError(
            f"--mask {mask_path}: the region vanishes at the segmenter's {size}×{size} px input "
            "(smaller than one input pixel); draw a larger region"
        )
    return torch.from_numpy(resized).float()[None]


def _panel(image, heat, region, title: str):
    import numpy as np

    from camkit.viz.overlay import draw_contours, hstack, overlay, titled

    region = region > 0.5
    shown = overlay(image, heat / max(float(heat.max()), 1e-12), 0.5)
    return hstack(
        [
            titled(draw_contours(image, region, (255, 255, 0)), "region"),
            titled(draw_contours(np.ascontiguousarray(shown), region, (255, 255, 255)), title),
        ]
    )


def run(args) -> int:
    import cv2
    import torch

    from camkit.data.images import preprocess, read_image
    from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
    from camkit.models.segmenter import load_segmenter
    from camkit.regions import SegmenterExplainer
    from camkit.viz.overlay import save_image

    model, info = load_segmenter(args.segmenter)
    model.to(device(args.device))
    size = int(info.get("input_size", 128))
    classes = int(info["classes"])
    if args.class_id is not None and not 0 <= args.class_id < classes:
        raise CLIError(f"--class {args.class_id}: the segmenter has classes 0–{classes - 1}")
    try:
        explainer = SegmenterExplainer(model, args.layer, args.method, align=args.align)
    except ValueError as error:
        raise CLIError(str(error)) from None
    mask = _read_region(args.mask) if args.mask else None
    mean, std = info.get("mean", IMAGENET_MEAN), info.get("std", IMAGENET_STD)
    paths, failures = [Path(p) for p in args.images], 0
    for path, stem in zip(paths, unique_stems(paths)):
        try:
            image = read_image(path)
            region = (
                None
                if mask is None
                else _region(mask, image, path, args.mask, args.resize_mask, size)
            )
        except (OSError, ValueError) as error:
            failures += 1
            print(f"camkit: error: {error}", file=sys.stderr)
            continue
        batch = preprocess([image], size, mean, std).to(next(model.parameters()).device)
        targets = None if args.class_id is None else [[args.class_id]]
        heatmaps = explainer(batch, targets, region)
        class_id = int(heatmaps.class_ids[0, 0])
        heat = heatmaps.on_image(image.shape[:2], index=0)[0].numpy()
        own = heatmaps.extra["regions"][0, class_id].cpu().numpy().astype("uint8")
        own = cv2.resize(own, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        title = f"{args.method} @ {args.layer}, class {class_id}"
        out = save_image(
            args.out / f"{stem}.seg-{args.method}.png", _panel(image, heat, own, title)
        )
        share = float(torch.as_tensor(own).float().mean())
        if not heatmaps.extra["regions"][0, class_id].any():
            note(
                f"{path}: the segmenter predicts no pixel of class {class_id}, so its region "
                "score is 0 and the map is empty; pass --mask REGION or another --class"
            )
        print(f"{path}: class {class_id}, region {share:.1%} → {out}")
    if failures:
        print(f"camkit: {failures} of {len(paths)} images failed", file=sys.stderr)
    return 1 if failures else 0
