"""``camkit demo``: the whole job offline, on camkit's own shapes data and its own model.

Trains a ResNet-50 classifier on a stream of freshly generated shapes coloured at random (only
shape decides the class, so the heatmaps show shape evidence; cached: a second run reuses it),
explains held-out images at ``layer4.2``, measures how well the heatmaps find the objects,
and writes a report folder with panels, a two-object figure, metrics and ``index.html``.
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from camkit.data.inputs import Input
from camkit.data.shapes import CLASSES, ShapeStream, generate, write_dataset
from camkit.io.checkpoint import load_checkpoint
from camkit.io.files import atomic_write_bytes
from camkit.models.resnet import load_classifier
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings
from camkit.training.classifier import TrainConfig, train_classifier

__all__ = [
    "DemoConfig",
    "DemoModels",
    "demo_models",
    "demo_variants",
    "evaluate_localisation",
    "run_demo",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo generates, trains and evaluates. Defaults take 9–13 minutes on 2 CPU cores
    with bfloat16 units (AVX-512 BF16 or AMX), ~33 on AVX2-only ones, which train in float32.

    The classifier sees ``n_stream`` generated images (each once, at the ``scratch`` recipe's
    96 px unless ImageNet weights are cached); the ResUNet trains on a folder of ``n_train``.
    ``difficulty="hard"``: random colours, so colour cannot give the class away.
    """

    out: str = "camkit-demo"
    n_train: int = 1500
    n_val: int = 300
    n_test: int = 200
    n_pairs: int = 100
    size: int = 128
    epochs: int = 1
    batch_size: int | None = None  # the training recipe's
    n_stream: int = 24000
    difficulty: str = "hard"
    seed: int = 0
    output_stride: int = 16
    tolerance: float = 15.0
    panels: int = 8
    workers: int = 1
    segmenter: bool = True
    compare_seed: int = 0  # > 0: also train `seed` and `unet` on this many images (equal data)


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _data(config: DemoConfig, root: Path, quiet: bool) -> tuple[Path, Path]:
    paths = []
    for name, n, seed in (
        ("train", config.n_train, config.seed),
        ("val", config.n_val, config.seed + 1),
    ):
        folder = root / "data" / name
        meta = folder / "meta.json"
        settings = {
            "n": n,
            "size": config.size,
            "seed": seed,
            "difficulty": config.difficulty,
            "objects": 1,
        }
        current = json.loads(meta.read_text()) if meta.exists() else {}
        if any(current.get(k) != v for k, v in settings.items()):
            _say(f"generating {n} {name} images ({config.size} px) in {folder}", quiet)
            write_dataset(
                folder,
                n,
                config.size,
                seed,
                config.difficulty,
                1,
                progress=not quiet and sys.stderr.isatty(),
            )
        paths.append(folder)
    return paths[0], paths[1]


def _classifier(config: DemoConfig, root: Path, quiet: bool) -> Path:
    """Train (or reuse) the classifier on a stream of ``n_stream`` fresh generated shapes,
    validated on ``n_val`` of another seed."""
    checkpoint = root / "classifier.ckpt"
    wanted = {
        "n_stream": config.n_stream,
        "difficulty": config.difficulty,
        "size": config.size,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
    }
    if _reusable(checkpoint, wanted):
        _say(f"reusing the trained classifier {checkpoint}", quiet)
        return checkpoint
    _say(
        f"training ResNet-50 on a stream of {config.n_stream} generated {config.difficulty} "
        f"shapes, {config.epochs} epoch(s)",
        quiet,
    )
    started = time.perf_counter()
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        workers=config.workers,
    )
    stream = ShapeStream(config.n_stream, config.seed, config.size, config.difficulty)
    val = ShapeStream(config.n_val, config.seed + 1, config.size, config.difficulty)
    scratch = root / "classifier.partial.ckpt"
    train_classifier(
        stream, scratch, train_config, val_data=val, progress=None if not quiet else False
    )
    return _stamp(scratch, checkpoint, wanted, time.perf_counter() - started)


def _reusable(checkpoint: Path, wanted: dict) -> bool:
    """True when ``checkpoint`` was trained by the demo with exactly these settings."""
    if not checkpoint.exists():
        return False
    try:
        return load_checkpoint(checkpoint).get("demo") == wanted
    except (ValueError, FileNotFoundError):
        return False


def _stamp(scratch: Path, checkpoint: Path, wanted: dict, seconds: float) -> Path:
    """Record the demo's settings in a freshly trained checkpoint, so a later run reuses it."""
    from camkit.io.files import atomic_path

    payload = torch.load(scratch, map_location="cpu", weights_only=True)
    payload["demo"] = wanted
    payload["train_seconds"] = seconds
    with atomic_path(checkpoint) as tmp:
        torch.save(payload, tmp)
    scratch.unlink(missing_ok=True)
    return checkpoint


def _segmenter(
    config: DemoConfig,
    root: Path,
    train: Path,
    val: Path,
    arch: str,
    limit: int | None,
    quiet: bool,
) -> Path:
    """Train (or reuse) a ResUNet whose encoder starts from the demo classifier."""
    from camkit.training.segmenter import SegConfig, train_segmenter

    name = f"segmenter-{arch}" + (f"-{limit}" if limit else "") + ".ckpt"
    checkpoint = root / name
    wanted = {
        "arch": arch,
        "limit": limit,
        "n_train": config.n_train,
        "size": config.size,
        "seed": config.seed,
    }
    if _reusable(checkpoint, wanted):
        _say(f"reusing the trained segmenter {checkpoint}", quiet)
        return checkpoint
    images = limit or config.n_train
    _say(
        f"training the {arch} ResUNet on {images} images at {config.size} px (encoder: the demo classifier)",
        quiet,
    )
    started = time.perf_counter()
    seg_config = SegConfig(
        arch=arch,
        size=config.size,
        epochs=1,
        batch_size=8 if limit else 16,
        limit=limit,
        encoder=str(root / "classifier.ckpt"),
        seed=config.seed,
        workers=config.workers,
    )
    scratch = root / (name + ".partial")
    train_segmenter(train, scratch, seg_config, val_data=val, progress=None if not quiet else False)
    return _stamp(scratch, checkpoint, wanted, time.perf_counter() - started)


def evaluate_segmentation(checkpoint: Path, config: DemoConfig, count: int) -> dict:
    """Foreground IoU and Dice of a segmenter on the demo's held-out single-object images."""
    from camkit.metrics.segmentation import segmentation_scores
    from camkit.models.segmenter import load_segmenter
    from camkit.pipeline.masks import predict_masks

    model, info = load_segmenter(checkpoint)
    samples = [generate(i, config.seed + 2, config.size, config.difficulty) for i in range(count)]
    predicted = predict_masks(model, info, [s.image for s in samples], batch_size=25)
    scores = segmentation_scores(
        torch.from_numpy(np.stack([m for m, _ in predicted])),
        torch.from_numpy(np.stack([s.mask for s in samples])),
    )
    union, sizes = scores["union"], scores["sizes"]
    return {
        "arch": info["arch"],
        "train_images": info["config"].get("limit") or config.n_train,
        "train_seconds": info.get("train_seconds"),
        "iou": float(np.mean(scores["iou_per_image"])),
        "dice": float(np.mean(scores["dice_per_image"])),
        "iou_dataset": scores["intersection"] / union if union else 1.0,
        "dice_dataset": 2 * scores["intersection"] / sizes if sizes else 1.0,
        "images": count,
    }


def _inputs(samples, info, prefix: str) -> list[Input]:
    """Generated samples as pipeline inputs: their true classes as targets, masks in memory."""
    to_model = [list(info.class_names).index(name) for name in CLASSES]
    return [
        Input(
            f"{prefix}-{index:04d}",
            image=sample.image,
            targets=tuple(to_model[c] for c in sample.labels),
            mask=sample.mask > 0,
        )
        for index, sample in enumerate(samples)
    ]


def centroid_offset(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    """``(dy, dx)``: the heat-mass centroid (negative heat clipped) minus the mask's centroid,
    in pixels; ``None`` for an empty map or mask."""
    weights = np.clip(heat, 0, None)
    if weights.sum() <= 0 or not mask.any():
        return None
    ys, xs = np.mgrid[0 : heat.shape[0], 0 : heat.shape[1]]
    total = weights.sum()
    heat_yx = ((weights * ys).sum() / total, (weights * xs).sum() / total)
    mask_yx = (ys[mask].mean(), xs[mask].mean())
    return float(heat_yx[0] - mask_yx[0]), float(heat_yx[1] - mask_yx[1])


def _own_maximum(sample, result, tolerance: float) -> list[bool]:
    """For each class of a two-object image: its map's maximum lies on its own object (within
    ``tolerance`` px, and nearer to it than to the other object)."""
    import cv2

    own = []
    for j, label in enumerate(sample.labels):
        mine = sample.mask == label + 1
        other = (sample.mask > 0) & ~mine
        heat = result.maps[j]
        y, x = np.unravel_index(int(heat.argmax()), heat.shape)
        to_mine = cv2.distanceTransform((~mine).astype(np.uint8), cv2.DIST_L2, 5)[y, x]
        to_other = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 5)[y, x]
        own.append(bool(to_mine <= tolerance and to_mine < to_other))
    return own


def evaluate_localisation(
    model: torch.nn.Module,
    info,
    config: DemoConfig,
    output_stride: int,
    align: str = "rf",
    difficulty: str = "easy",
    size: int | None = None,
):
    """Accuracy, pointing game, energy in mask and the heat-mass centroid's offset from the
    object's on held-out single-object images, and the two-object test (each class's map has
    its maximum on its own object). Grad-CAM at ``layer4.2`` for the true classes, on the one
    pipeline, with maps put on the images by ``align``; the images are resized to ``size``
    px for the network (default: their own ``config.size``), the maps measured on the images."""
    size = size or config.size
    settings = Settings(
        "layer4.2", size=size, output_stride=output_stride, align=align, batch_size=50
    )
    singles = [generate(i, config.seed + 2, config.size, difficulty) for i in range(config.n_test)]
    inputs = _inputs(singles, info, "single")
    hits, energies, offsets, correct = [], [], [], 0
    results = explain_images(model, info, inputs, settings, None, config.tolerance)
    for item, sample, result in zip(inputs, singles, results):
        hits.append(result.metrics["pointing_game"])
        energies.append(result.metrics["energy_in_mask"])
        offsets.append(centroid_offset(result.maps[0].numpy(), sample.mask > 0))
        correct += int(result.heatmaps.logits[0].argmax()) == item.targets[0]
        map_size = list(result.heatmaps.maps.shape[-2:])
    pairs = [
        generate(i, config.seed + 3, config.size, difficulty, objects=2)
        for i in range(config.n_pairs)
    ]
    own = []
    for sample, result in zip(
        pairs, explain_images(model, info, _inputs(pairs, info, "pair"), settings)
    ):
        own.extend(_own_maximum(sample, result, config.tolerance))
    offsets = np.array([o for o in offsets if o is not None])
    return {
        "output_stride": output_stride,
        "align": align,
        "difficulty": difficulty,
        "map_size": map_size,
        "input_size": size,
        "accuracy": correct / len(singles),
        "pointing_game": float(np.mean([h for h in hits if h is not None])),
        "energy_in_mask": float(np.mean([e for e in energies if e is not None])),
        "centroid_offset_y": float(offsets[:, 0].mean()),
        "centroid_offset_x": float(offsets[:, 1].mean()),
        "two_object_own_max": float(np.mean(own)),
        "n_test": len(singles),
        "n_pairs": len(pairs),
    }


def _panel(model, info, sample, config: DemoConfig, predicted=None) -> np.ndarray:
    """image + mask contour | Grad-CAM (true class) | FCN probability map of every class, and
    the ResUNet's predicted mask (magenta contour) when given."""
    from camkit.viz.overlay import colorbar, draw_contours, hstack, overlay, titled

    class_names = list(info.class_names)
    height = 192
    settings = Settings("layer4.2", size=config.size, output_stride=config.output_stride)
    item = _inputs([sample], info, "panel")
    (result,) = explain_images(model, info, item, settings)
    gradcam = result.maps[0].numpy()
    fcn = replace(settings, method="fcn", targets="all")
    (scores,) = explain_images(model, info, [replace(item[0], targets=None)], fcn)
    # softmax over classes at each cell of the score maps, then put on the image
    softmax = replace(scores.heatmaps, maps=scores.heatmaps.maps.softmax(dim=1))
    probabilities = softmax.on_image(sample.image.shape[:2], index=0).numpy()
    mask = sample.mask > 0
    probability = float(result.heatmaps.probabilities[0, 0])

    def fit(tile):
        import cv2

        return cv2.resize(tile, (height, height), interpolation=cv2.INTER_NEAREST)

    tiles = [titled(fit(draw_contours(sample.image, mask)), f"{CLASSES[sample.labels[0]]} (mask)")]
    tiles.append(
        titled(fit(overlay(sample.image, gradcam, 0.5, mask=mask)), f"Grad-CAM p={probability:.2f}")
    )
    for name in CLASSES:
        tile = overlay(
            sample.image, probabilities[class_names.index(name)], 0.5, 0.0, 1.0, mask=mask
        )
        tiles.append(titled(fit(tile), f"FCN {name}"))
    if predicted is not None:
        tile = draw_contours(overlay(sample.image, gradcam, 0.5), predicted > 0, (255, 0, 255))
        tiles.insert(2, titled(fit(tile), "ResUNet mask"))
    tiles.append(titled(colorbar(height, 0.0, 1.0), "FCN p"))
    return hstack(tiles)


def _pairs_figure(model, info, config: DemoConfig, count: int = 6) -> np.ndarray:
    """Rows of: two-object image | Grad-CAM of class A | Grad-CAM of class B (own contour)."""
    import cv2

    from camkit.viz.overlay import draw_contours, hstack, overlay, titled

    settings = Settings("layer4.2", size=config.size, output_stride=config.output_stride)
    samples = [
        generate(index, config.seed + 3, config.size, config.difficulty, objects=2)
        for index in range(count)
    ]
    rows = []
    for sample, result in zip(
        samples, explain_images(model, info, _inputs(samples, info, "pair"), settings)
    ):
        tiles = [
            titled(cv2.resize(sample.image, (192, 192), interpolation=cv2.INTER_NEAREST), "image")
        ]
        for j, label in enumerate(sample.labels):
            own = sample.mask == label + 1
            tile = draw_contours(overlay(sample.image, result.maps[j].numpy(), 0.5), own)
            tiles.append(
                titled(
                    cv2.resize(tile, (192, 192), interpolation=cv2.INTER_NEAREST),
                    f"map of {CLASSES[label]}",
                )
            )
        rows.append(hstack(tiles))
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    out = []
    for row in rows:
        out.extend([row, gap])
    return np.concatenate(out[:-1], axis=0)


def _segmentation_html(summary: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{row['train_images']}</td><td>{row['images']}</td>"
        f"<td>{row['iou']:.3f}</td><td>{row['dice']:.3f}</td><td>{row['iou_dataset']:.3f}</td></tr>"
        for name, row in summary.get("segmentation", {}).items()
    )
    if not rows:
        return ""
    return (
        "<h2>ResUNet segmenter (held-out images)</h2><table><tr><th>model</th><th>trained on</th>"
        "<th>evaluated on</th><th>IoU (per image)</th><th>Dice</th><th>IoU (data set)</th></tr>"
        f"{rows}</table>"
    )


def _index_html(summary: dict, panels: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value['map_size'][0]}×{value['map_size'][1]}</td>"
        f"<td>{value['accuracy']:.3f}</td><td>{value['pointing_game']:.3f}</td>"
        f"<td>{value['energy_in_mask']:.3f}</td><td>{value['two_object_own_max']:.3f}</td></tr>"
        for name, value in summary["localisation"].items()
    )
    images = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in panels)
    training = summary["training"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>camkit demo report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1600px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>camkit demo: Grad-CAM at layer4.2 on synthetic shapes</h1>
<p>ResNet-50 trained from {html.escape(str(training.get("origin", "scratch")))} for {training["epochs"]} epoch(s)
on {training["n_train"]} images ({html.escape(training.get("data", "shapes"))}) at {training["size"]} px;
validation accuracy {training["val_accuracy"]:.3f}.
Held-out: {summary["config"]["n_test"]} single-object and {summary["config"]["n_pairs"]} two-object images.
Pointing game tolerance {summary["config"]["tolerance"]:.0f} px at the image's own size.</p>
<table><tr><th>network</th><th>map</th><th>accuracy</th><th>pointing game</th><th>energy in mask</th>
<th>two-object: own max</th></tr>{rows}</table>
<p>Output stride 16 dilates layer4 for the call (same weights), so maps are twice as dense.</p>
{_segmentation_html(summary)}
<h2>Each class's map on two-object images</h2><p><img src="pairs.png" alt="pairs"></p>
<h2>Panels: image | Grad-CAM | ResUNet mask (magenta) | FCN class-probability maps | scale</h2>{images}
</body></html>
"""


@dataclass(frozen=True)
class DemoModels:
    """Where the demo's data and trained models live."""

    root: Path
    classifier: Path
    segmenter: Path
    train: Path
    val: Path


def demo_root() -> Path:
    """Where the demo's models are: ``$CAMKIT_DEMO_DIR`` if set; else the nearest
    ``camkit-demo`` folder holding a trained classifier in the working directory or a parent
    (a notebook runs in ``notebooks/``, the demo in the repository root); else ``./camkit-demo``."""
    if os.environ.get("CAMKIT_DEMO_DIR"):
        return Path(os.environ["CAMKIT_DEMO_DIR"])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / DemoConfig.out / "classifier.ckpt").is_file():
            return folder / DemoConfig.out
    return here / DemoConfig.out


def demo_models(root: str | os.PathLike | None = None, quiet: bool = True) -> DemoModels:
    """The demo's classifier and ResUNet: reused when ``camkit demo`` (or an earlier call) made
    them with the demo's settings, trained with those settings otherwise (~3 min on 2 cores).
    Notebooks start here."""
    config = DemoConfig(out=str(root or demo_root()))
    folder = Path(config.out)
    train, val = _data(config, folder, quiet)
    classifier = _classifier(config, folder, quiet)
    segmenter = _segmenter(config, folder, train, val, "unet", None, quiet)
    return DemoModels(folder, classifier, segmenter, train, val)


def demo_variants(
    channels: tuple[int, ...] = (2048, 512, 128),
    root: str | os.PathLike | None = None,
    epochs: int = 1,
    quiet: bool = True,
) -> list[Path]:
    """Channel variants of the demo classifier (surgery, then ``layer4.2`` + ``fc`` fine-tuned
    for ``epochs`` on the demo's training data), cached beside it like the demo's models."""
    from camkit.training.variants import make_variant

    models = demo_models(root, quiet)
    paths = []
    for count in channels:
        checkpoint = models.root / "variants" / f"c{count}.ckpt"
        wanted = {"channels": count, "epochs": epochs, "parent": _fingerprint(models.classifier)}
        if not _reusable(checkpoint, wanted):
            _say(f"making the C={count} variant ({epochs} epoch(s) of layer4.2 + fc)", quiet)
            started = time.perf_counter()
            scratch = checkpoint.with_name(checkpoint.name + ".partial")
            scratch.parent.mkdir(parents=True, exist_ok=True)
            make_variant(
                models.classifier,
                count,
                models.train,
                scratch,
                epochs=epochs,
                val_data=models.val,
                config=TrainConfig(workers=DemoConfig.workers),  # at the classifier's size
                progress=None if not quiet else False,
            )
            _stamp(scratch, checkpoint, wanted, time.perf_counter() - started)
        paths.append(checkpoint)
    return paths


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{int(stat.st_mtime)}"


def run_demo(config: DemoConfig | None = None, quiet: bool = False) -> dict:
    """Run the demo end to end and return its summary (also written to ``report/metrics.json``)."""
    from camkit.viz.overlay import save_image

    config = config or DemoConfig()
    root = Path(config.out)
    started = time.perf_counter()
    train, val = _data(config, root, quiet)
    checkpoint_path = _classifier(config, root, quiet)
    model, info = load_classifier(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    _say("explaining held-out images at layer4.2", quiet)
    localisation = {}
    for stride in sorted({32, config.output_stride}):
        localisation[f"output stride {stride}"] = evaluate_localisation(
            model, info, config, stride, difficulty=config.difficulty
        )
    segmentation: dict = {}
    predicted_masks: list = [None] * config.panels
    if config.segmenter:
        unet = _segmenter(config, root, train, val, "unet", None, quiet)
        segmentation["unet"] = evaluate_segmentation(unet, config, config.n_test)
        if config.compare_seed:
            for arch in ("unet", "seed"):
                path = _segmenter(config, root, train, val, arch, config.compare_seed, quiet)
                key = f"{arch}, {config.compare_seed} images"
                segmentation[key] = evaluate_segmentation(path, config, min(config.n_test, 100))
        from camkit.models.segmenter import load_segmenter
        from camkit.pipeline.masks import predict_masks

        seg_model, seg_info = load_segmenter(unet)
        shown = [
            generate(i, config.seed + 2, config.size, config.difficulty).image
            for i in range(config.panels)
        ]
        predicted_masks = [m for m, _ in predict_masks(seg_model, seg_info, shown)]
    report = root / "report"
    panels = []
    for index in range(config.panels):
        sample = generate(index, config.seed + 2, config.size, config.difficulty)
        name = f"panels/panel_{index:02d}_{CLASSES[sample.labels[0]]}.png"
        save_image(report / name, _panel(model, info, sample, config, predicted_masks[index]))
        panels.append(name)
    save_image(report / "pairs.png", _pairs_figure(model, info, config))
    summary = {
        "config": asdict(config),
        "checkpoint": str(checkpoint_path),
        "training": {
            "origin": checkpoint.get("origin", "scratch"),
            "epochs": config.epochs,
            "n_train": config.n_stream,
            "data": f"a stream of generated {config.difficulty} shapes",
            "size": info.input_size,
            "val_accuracy": info.metrics.get("val_accuracy"),
            "seconds": checkpoint.get("train_seconds"),
        },
        "localisation": localisation,
        "segmentation": segmentation,
        "seconds": time.perf_counter() - started,
    }
    atomic_write_bytes(report / "metrics.json", json.dumps(summary, indent=1).encode())
    atomic_write_bytes(report / "index.html", _index_html(summary, panels).encode())
    summary["report"] = str(report / "index.html")
    return summary
