"""``run_demo``: the demo end to end, from data to report."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from camkit.data.shapes import CLASSES, generate
from camkit.demo.config import DemoConfig
from camkit.demo.measures import evaluate_localisation, evaluate_segmentation
from camkit.demo.models import ensure_classifier, ensure_data, ensure_segmenter, say
from camkit.demo.report import index_html, pairs_figure, panel
from camkit.io.checkpoint import load_checkpoint
from camkit.io.files import atomic_write_bytes
from camkit.models.resnet import load_classifier

__all__ = ["run_demo"]


def _segmenters(config: DemoConfig, root: Path, train, val, quiet: bool) -> tuple[dict, Path]:
    """The demo's ResUNet (and, with ``compare_seed``, the equal-data comparison) trained or
    reused, and their scores on the held-out images."""
    unet = ensure_segmenter(config, root, train, val, "unet", None, quiet)
    segmentation = {"unet": evaluate_segmentation(unet, config, config.n_test)}
    if config.compare_seed:
        for arch in ("unet", "seed"):
            path = ensure_segmenter(config, root, train, val, arch, config.compare_seed, quiet)
            key = f"{arch}, {config.compare_seed} images"
            segmentation[key] = evaluate_segmentation(path, config, min(config.n_test, 100))
    return segmentation, unet


def _panels(model, info, config: DemoConfig, report: Path, unet: Path | None) -> list[str]:
    """The first held-out images as panels (with the ResUNet's masks where there is one), and
    the two-object figure; returns the panels' paths under ``report``."""
    from camkit.viz.overlay import save_image

    samples = [
        generate(i, config.seed + 2, config.size, config.difficulty) for i in range(config.panels)
    ]
    masks: list = [None] * len(samples)
    if unet is not None:
        from camkit.models.segmenter import load_segmenter
        from camkit.pipeline.masks import predict_masks

        seg_model, seg_info = load_segmenter(unet)
        masks = [m for m, _ in predict_masks(seg_model, seg_info, [s.image for s in samples])]
    names = []
    for index, (sample, mask) in enumerate(zip(samples, masks)):
        name = f"panels/panel_{index:02d}_{CLASSES[sample.labels[0]]}.png"
        save_image(report / name, panel(model, info, sample, config, mask))
        names.append(name)
    save_image(report / "pairs.png", pairs_figure(model, info, config))
    return names


def run_demo(config: DemoConfig | None = None, quiet: bool = False) -> dict:
    """Run the demo end to end and return its summary (also written to ``report/metrics.json``)."""
    config = config or DemoConfig()
    root = Path(config.out)
    started = time.perf_counter()
    train, val = ensure_data(config, root, quiet)
    checkpoint_path = ensure_classifier(config, root, quiet)
    model, info = load_classifier(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    say("explaining held-out images at layer4.2", quiet)
    localisation = {}
    for stride in sorted({32, config.output_stride}):
        localisation[f"output stride {stride}"] = evaluate_localisation(
            model, info, config, stride, difficulty=config.difficulty
        )
    segmentation, unet = (
        _segmenters(config, root, train, val, quiet) if config.segmenter else ({}, None)
    )
    report = root / "report"
    panels = _panels(model, info, config, report, unet)
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
    atomic_write_bytes(report / "index.html", index_html(summary, panels).encode())
    summary["report"] = str(report / "index.html")
    return summary
