"""The demo's data and trained models, cached in its folder: generated shapes on disk, a
classifier trained on a stream of fresh shapes, ResUNets and channel variants; each reused
when a checkpoint records the same settings."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from camkit.data.shapes import ShapeStream, write_dataset
from camkit.demo.config import DemoConfig
from camkit.io.checkpoint import load_checkpoint
from camkit.training.classifier import TrainConfig, train_classifier

__all__ = [
    "DemoModels",
    "demo_models",
    "demo_root",
    "demo_variants",
    "ensure_classifier",
    "ensure_data",
    "ensure_segmenter",
]


def say(message: str, quiet: bool) -> None:
    """One line of what the demo is doing, on stderr (unless ``quiet``)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def ensure_data(config: DemoConfig, root: Path, quiet: bool) -> tuple[Path, Path]:
    """The demo's train and val folders of generated shapes (written unless their
    ``meta.json`` records these settings)."""
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
            say(f"generating {n} {name} images ({config.size} px) in {folder}", quiet)
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


def ensure_classifier(config: DemoConfig, root: Path, quiet: bool) -> Path:
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
        say(f"reusing the trained classifier {checkpoint}", quiet)
        return checkpoint
    say(
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


def ensure_segmenter(
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
        say(f"reusing the trained segmenter {checkpoint}", quiet)
        return checkpoint
    images = limit or config.n_train
    say(
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
    train, val = ensure_data(config, folder, quiet)
    classifier = ensure_classifier(config, folder, quiet)
    segmenter = ensure_segmenter(config, folder, train, val, "unet", None, quiet)
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
            say(f"making the C={count} variant ({epochs} epoch(s) of layer4.2 + fc)", quiet)
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
