"""Batch heatmap export: folders of images → overlays, raw maps, a manifest, a gallery.

Pipeline: decoding and resizing in DataLoader workers → the Explainer on batches in the main
thread → PNG / NPZ encoding and the manifest in a writer thread (a bounded queue keeps memory
flat). Never loses work:

- every file is written under a temporary name, then renamed (``os.replace``);
- a manifest record is appended (and flushed) only after the image's files exist;
- a rerun with the same settings skips images already in the manifest; changed settings
  (model, layer, method, targets, size …) are refused unless ``overwrite``;
- an unreadable image is recorded as an error and the run goes on.

Shards: ``shard=(K, N)`` takes the sorted inputs ``K, K+N, K+2N …`` and writes
``manifests/part-K-of-N.jsonl``; :func:`merge` joins every part into ``manifest.jsonl``,
``summary.csv`` and ``index.html``. Under ``torchrun`` the shard comes from ``RANK`` /
``WORLD_SIZE`` and rank 0 merges once every rank is done.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import html
import io
import json
import os
import queue
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from camkit.data.images import IMAGE_SUFFIXES, ImageError, preprocess, read_image

__all__ = [
    "ExportConfig",
    "ExportError",
    "ExportInput",
    "collect_inputs",
    "export",
    "merge",
    "output_names",
    "read_manifest",
]

FORMATS = ("overlay", "raw", "mask", "panel")
TEMP_SUFFIX = ".camkit-tmp"
# settings that change what an output file holds: a rerun with other values is refused
IDENTITY_KEYS = (
    "model",
    "layer",
    "method",
    "targets",
    "size",
    "output_stride",
    "eigen_smooth",
    "autocast",
)


class ExportError(ValueError):
    """A problem with the export's inputs or settings, with the fix in the message."""


@dataclass(frozen=True)
class ExportInput:
    """One input image: its path and its name relative to the input root (POSIX)."""

    path: Path
    key: str


@dataclass
class ExportConfig:
    """What ``camkit export`` does; every field has the CLI option of the same name."""

    layer: str = "layer4.2"
    method: str = "gradcam"
    targets: object = None  # None (top class), [ids], "top-k" or "all"
    size: int | tuple[int, int] = 224
    batch_size: int = 16
    workers: int = 2
    formats: tuple[str, ...] = ("overlay", "raw")
    output_stride: int = 32
    eigen_smooth: bool = False
    channels_last: bool = False
    autocast: str | None = None  # "bf16" / "fp16": approximate maps, part of the settings
    alpha: float = 0.5
    colormap: str = "jet"
    max_side: int = 1024  # overlays and panels are drawn at the image's size, capped at this
    masks: Path | None = None
    resize_mask: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    shard: tuple[int, int] = (0, 1)
    progress: bool | None = None  # None: on a terminal only
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# inputs and names


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def collect_inputs(source: str | os.PathLike) -> list[ExportInput]:
    """The images of ``source``: a folder (recursive), a glob pattern, or a text file with one
    path per line (relative paths are relative to the file's folder). Sorted by key."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        from camkit.data.folders import find_images

        files = find_images(path)
        items = [ExportInput(p, p.relative_to(path).as_posix()) for p in files]
        if not items:
            raise ExportError(
                f"no images under {path} (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)"
            )
    elif path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        base = path.parent
        items = []
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            entry = Path(line).expanduser()
            full = entry if entry.is_absolute() else base / entry
            key = PurePosixPath(*entry.parts[1:]) if entry.is_absolute() else PurePosixPath(line)
            items.append(ExportInput(full, key.as_posix()))
        if not items:
            raise ExportError(f"the list {path} names no images (one path per line)")
    elif path.is_file():
        items = [ExportInput(path, path.name)]
    elif _is_glob(text):
        parts = Path(text).parts
        fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _is_glob(p))]]
        root = Path(*fixed) if fixed else Path(".")
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        items = [ExportInput(p, p.relative_to(root).as_posix()) for p in files]
        if not items:
            raise ExportError(f"the pattern {text!r} matches no files")
    else:
        raise ExportError(
            f"{text} does not exist; pass a folder, a glob pattern ('photos/**/*.jpg') or a text "
            "file with one image path per line"
        )
    seen: dict[str, Path] = {}
    for item in items:
        if item.key in seen and seen[item.key] != item.path:
            raise ExportError(
                f"two inputs have the same name {item.key!r}: {seen[item.key]} and {item.path}"
            )
        seen[item.key] = item.path
    return sorted({i.key: i for i in items}.values(), key=lambda i: i.key)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\:*?\"<>|]")


def _safe_part(part: str) -> str:
    part = unicodedata.normalize("NFC", part)
    part = _UNSAFE.sub("_", part).strip()
    if part in ("", ".", ".."):
        return "_" * max(1, len(part))
    return part[:200]


def output_names(keys: Sequence[str]) -> dict[str, str]:
    """A safe, unique output stem for every key: relative, no ``..`` or absolute parts, no
    control or reserved characters, the suffix dropped unless two inputs would then share a
    name (``a.jpg``/``a.png`` → ``a.jpg``/``a.png``), and a hash where names differ only by case.
    Depends on the whole list only, so every shard derives the same names."""
    stems = {}
    for key in keys:
        parts = [_safe_part(p) for p in PurePosixPath(key).parts if p not in ("/", "")]
        parts = parts or ["_"]
        stems[key] = "/".join(parts)

    def without_suffix(stem: str) -> str:
        head, _, name = stem.rpartition("/")
        base, dot, suffix = name.rpartition(".")
        name = base if dot and base and suffix.lower() in {s[1:] for s in IMAGE_SUFFIXES} else name
        return f"{head}/{name}" if head else name

    short = {key: without_suffix(stem) for key, stem in stems.items()}
    counts: dict[str, int] = {}
    for stem in short.values():
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    names = {key: short[key] if counts[short[key].lower()] == 1 else stems[key] for key in keys}
    counts = {}
    for stem in names.values():
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    for key, stem in names.items():
        if counts[stem.lower()] > 1:
            names[key] = f"{stem}~{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return names


def shard_of(items: Sequence, shard: tuple[int, int]) -> list:
    """The items of shard ``K`` of ``N``: every N-th item from the K-th (disjoint, deterministic)."""
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise ExportError(f"shard {index}/{count} is not valid; use K/N with 0 ≤ K < N")
    return list(items)[index::count]


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ExportError(f"--shard {text!r} is not K/N (e.g. 0/4 for the first of four shards)")
    shard = int(match.group(1)), int(match.group(2))
    shard_of([], shard)
    return shard


def torchrun_shard() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when started by torchrun with more than one process."""
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


# --------------------------------------------------------------------------------------------
# files


def _inside(out: Path, target: Path) -> Path:
    """``target`` if it resolves inside ``out`` (no symlink or ``..`` leads out), else an error."""
    resolved = target.resolve()
    if not resolved.is_relative_to(out.resolve()):
        raise ExportError(f"output {target} would be written outside {out} (a symlink?); refused")
    return target


def _write(out: Path, relative: str, data: bytes, tag: str) -> str:
    """Write ``OUT/relative`` atomically; the temporary name carries the shard ``tag`` so a
    rerun of that shard can remove what a killed run left."""
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    _inside(out, target.parent)
    if target.is_symlink():
        raise ExportError(f"output {target} is a symlink; refused")
    temporary = target.with_name(f".{target.name}.{tag}{TEMP_SUFFIX}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return relative


THUMB_SIDE = 256  # the gallery's thumbnails: JPEG, at most this many pixels a side


def _thumbnail(image: np.ndarray) -> bytes:
    """A small JPEG of an RGB picture for the gallery (never enlarged)."""
    import cv2

    height, width = image.shape[:2]
    scale = THUMB_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(
        ".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return encoded.tobytes()


def _png(image: np.ndarray) -> bytes:
    import cv2

    # level 1: ~2× faster than the default 3, files ~10 % larger
    ok, encoded = cv2.imencode(
        ".png", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def _remove_temporaries(out: Path, tag: str | None) -> int:
    pattern = f"*.{tag}{TEMP_SUFFIX}" if tag else f"*{TEMP_SUFFIX}"
    removed = 0
    for path in out.rglob(pattern):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def manifest_files(out: Path) -> list[Path]:
    parts = sorted((out / "manifests").glob("part-*.jsonl")) if (out / "manifests").is_dir() else []
    main = out / "manifest.jsonl"
    return ([main] if main.exists() else []) + parts


def settings_id(settings: dict) -> str:
    """A short hash of the settings that decide what an output holds (``IDENTITY_KEYS``)."""
    identity = {k: settings.get(k) for k in IDENTITY_KEYS}
    if identity["autocast"] is None:  # float32: the same id as exports made before the option
        del identity["autocast"]
    identity = json.dumps(identity, sort_keys=True)
    return hashlib.sha1(identity.encode()).hexdigest()[:12]


def read_manifest(out: str | os.PathLike, settings: str | None = None) -> list[dict]:
    """Every record of ``OUT``'s manifest and shard parts; a line cut short by a kill is skipped.
    One record per input: an ``ok`` record wins over errors, a later one over an earlier.
    ``settings``: only records made with these settings (see :func:`settings_id`); records of an
    export that ``--overwrite`` replaced are ignored that way, never deleted under a running
    shard."""
    records: dict[str, dict] = {}
    for path in manifest_files(Path(out)):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                key = record.get("key")
                if key is None or (settings is not None and record.get("settings") != settings):
                    continue
                previous = records.get(key)
                if previous is None or previous["status"] != "ok" or record["status"] == "ok":
                    records[key] = record
    return [records[k] for k in sorted(records)]


def current_records(out: str | os.PathLike) -> list[dict]:
    """The records made with the settings in ``OUT/export.json`` (one per input)."""
    settings = json.loads((Path(out) / "export.json").read_text(encoding="utf-8"))
    return read_manifest(out, settings_id(settings))


# --------------------------------------------------------------------------------------------
# the pipeline


class _Images(torch.utils.data.Dataset):
    """Decoding and resizing, run in DataLoader workers; failures become error items."""

    def __init__(self, items, names, size, mean, std, max_side, masks: dict | None, resize_mask):
        self.items, self.names = items, names
        self.size, self.mean, self.std, self.max_side = size, mean, std, max_side
        self.masks, self.resize_mask = masks, resize_mask

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        import cv2

        item = self.items[index]
        record = {"key": item.key, "path": str(item.path), "name": self.names[item.key]}
        try:
            image = read_image(item.path)
            tensor = preprocess(image, self.size, self.mean, self.std)[0]
            mask = None
            if self.masks is not None:
                from camkit.pipeline.masks import load_mask

                mask_path = self.masks.get(item.key)
                if mask_path is None:
                    raise ImageError(f"no mask for {item.key} in the --masks folder")
                mask = load_mask(
                    image, mask_path, resize_mask=self.resize_mask, image_path=item.path
                )
            scale = self.max_side / max(image.shape[:2])
            if scale < 1:
                size = (
                    max(1, round(image.shape[1] * scale)),
                    max(1, round(image.shape[0] * scale)),
                )
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                if mask is not None:
                    mask = (
                        cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
                    )
            record.update(tensor=tensor, image=image, mask=mask, size=tuple(image.shape[:2]))
        except (OSError, ValueError) as error:  # unreadable, corrupt, empty, mismatched mask
            record["error"] = str(error)
        except Exception as error:  # anything else about this one file: recorded, the run goes on
            record["error"] = f"{type(error).__name__}: {error}"
        return record


def _collate(records: list[dict]) -> list[dict]:
    return records


def _die_with_parent(_worker_id: int) -> None:
    """DataLoader worker start: on Linux, ask to be killed when the export process dies, so a
    ``kill -9`` of the export leaves no worker blocked on a full queue."""
    import contextlib
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # PR_SET_PDEATHSIG = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))


def _describe_model(weights: str, arch: str) -> str:
    path = Path(str(weights))
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"{arch}:sha256:{digest.hexdigest()[:16]}"
    return f"{arch}:{weights}"


def _settings(config: ExportConfig, model_id: str, segmenter_id: str | None) -> dict:
    from camkit import __version__

    targets = config.targets
    return {
        "model": model_id,
        "layer": config.layer,
        "method": config.method,
        "targets": list(targets) if isinstance(targets, (list, tuple)) else targets,
        "size": list(config.size) if isinstance(config.size, tuple) else config.size,
        "output_stride": config.output_stride,
        "eigen_smooth": config.eigen_smooth,
        "autocast": config.autocast,
        "formats": list(config.formats),
        "masks": str(config.masks) if config.masks else None,
        "segmenter": segmenter_id,
        "camkit": __version__,
    }


def _check_settings(out: Path, settings: dict, overwrite: bool, tag: str) -> None:
    path = out / "export.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
        changed = [k for k in IDENTITY_KEYS if previous.get(k) != settings.get(k)]
        if changed and not overwrite and manifest_files(out):
            details = "; ".join(f"{k}: {previous.get(k)!r} → {settings.get(k)!r}" for k in changed)
            raise ExportError(
                f"{out} holds an export made with other settings ({details}); pass --overwrite "
                "to redo every image with the new ones, or choose another --out"
            )
    # every shard writes the same settings; its own temporary name keeps the writes apart
    _write(out, "export.json", json.dumps(settings, indent=1).encode(), tag)


def export(
    model: torch.nn.Module,
    info,
    inputs: Sequence[ExportInput],
    out: str | os.PathLike,
    config: ExportConfig,
    segmenter: tuple | None = None,
    model_id: str | None = None,
) -> dict:
    """Explain ``inputs`` into ``out`` (see the module docstring). Returns counts:
    ``{"done", "skipped", "failed", "total", "manifest"}``.
    """
    from tqdm import tqdm

    from camkit.explainer import Explainer

    out = Path(out)
    unknown = [f for f in config.formats if f not in FORMATS]
    if unknown or not config.formats:
        raise ExportError(f"--formats {','.join(config.formats)}: choose from {', '.join(FORMATS)}")
    if "mask" in config.formats and segmenter is None and config.masks is None:
        raise ExportError("--formats mask needs --segmenter CKPT or --masks DIR")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    explainer = Explainer(
        model,
        config.layer,
        config.method,
        output_stride=config.output_stride,
        eigen_smooth=config.eigen_smooth,
        channels_last=config.channels_last,
        autocast=config.autocast,
    )
    segmenter_id = None
    if segmenter is not None:
        segmenter_id = str(segmenter[1].get("path", "segmenter"))
    settings = _settings(config, model_id or f"{info.arch}:{info.weights}", segmenter_id)
    index, count = config.shard
    tag = f"{index}of{count}"
    _check_settings(out, settings, config.overwrite, tag)
    _remove_temporaries(out, tag)

    names = output_names([i.key for i in inputs])
    mine = shard_of(inputs, config.shard)
    finished = {
        r["key"]
        for r in read_manifest(out, settings_id(settings))
        if r["status"] == "ok" or (r["status"] == "error" and not config.retry_errors)
    }
    todo = [i for i in mine if i.key not in finished]
    masks = None
    if config.masks is not None:
        masks = _mask_files(config.masks, todo)
    manifest_path = (
        out / "manifest.jsonl"
        if count == 1
        else out / "manifests" / f"part-{index}-of-{count}.jsonl"
    )
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"done": 0, "skipped": len(mine) - len(todo), "failed": 0, "total": len(mine)}
    if not todo:
        counts["manifest"] = str(manifest_path)
        return counts

    dataset = _Images(
        todo, names, config.size, info.mean, info.std, config.max_side, masks, config.resize_mask
    )
    workers = max(0, int(config.workers))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_die_with_parent if workers else None,
        persistent_workers=False,
    )
    writer = _Writer(out, manifest_path, config, info, tag, settings)
    bar = tqdm(
        total=len(todo),
        unit="img",
        desc="export",
        disable=None if config.progress is None else not config.progress,
        smoothing=0.1,
    )
    device = next(model.parameters()).device
    interrupted = False
    try:
        for records in loader:
            good = [r for r in records if "error" not in r]
            for record in records:
                if "error" in record:
                    writer.put(record, None)
            if good:
                batch = torch.stack([r["tensor"] for r in good]).to(device)
                heatmaps = explainer(batch, _targets(config.targets, len(good), info)).cpu()
                predicted = None
                if segmenter is not None:
                    from camkit.pipeline.masks import predict_masks

                    predicted = predict_masks(
                        segmenter[0], segmenter[1], [r["image"] for r in good]
                    )
                for position, record in enumerate(good):
                    record.pop("tensor")
                    if predicted is not None and record["mask"] is None:
                        record["mask"] = predicted[position][0] > 0
                    writer.put(record, (heatmaps, position))
            writer.raise_if_failed()
            bar.update(len(records))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        writer.close()
    counts["done"], counts["failed"] = writer.done, writer.failed
    counts["manifest"] = str(manifest_path)
    if interrupted:
        raise KeyboardInterrupt
    return counts


def _targets(targets, count: int, info):
    if targets is None:
        return None
    if isinstance(targets, str):
        return targets
    for class_id in targets:
        if not 0 <= int(class_id) < info.num_classes:
            raise ExportError(
                f"--class {class_id} is out of range: the model has {info.num_classes} classes "
                f"(0–{info.num_classes - 1})"
            )
    return [list(targets)] * count


def _mask_files(root: Path, items: Sequence[ExportInput]) -> dict[str, Path]:
    from camkit.data.folders import masks_by_key

    root = Path(root)
    if not root.is_dir():
        raise ExportError(f"--masks {root} is not a folder")
    return masks_by_key([item.key for item in items], root)


class _Writer:
    """A thread that renders and writes each image's files, then appends its manifest record.
    The queue is bounded, so a slow disk slows the model instead of filling memory."""

    def __init__(self, out, manifest_path, config, info, tag, settings, depth: int = 64):
        self.out, self.config, self.info, self.tag = out, config, info, tag
        self.settings_id = settings_id(settings)
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.done = self.failed = 0
        self.error: BaseException | None = None
        self.manifest = open(manifest_path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._end_line()
        self.thread = threading.Thread(target=self._run, name="camkit-export-writer", daemon=True)
        self.thread.start()

    def _end_line(self) -> None:
        """A kill during an append can leave half a line: start the next record on a new one."""
        self.manifest.seek(0, os.SEEK_END)
        if self.manifest.tell():
            self.manifest.seek(self.manifest.tell() - 1)
            if self.manifest.read(1) != "\n":
                self.manifest.write("\n")
        self.manifest.flush()

    def put(self, record: dict, result) -> None:
        self.queue.put((record, result))

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.manifest.close()
        self.raise_if_failed()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.error is not None:
                continue
            record, result = job
            try:
                entry = self._entry(record, result)
            except ExportError as error:  # e.g. an output path that leads outside OUT
                entry = self._failure(record, str(error))
            except OSError as error:  # disk full, permissions: stop the run (main thread raises)
                self.error = error
                continue
            except Exception as error:  # a problem with this image's maps or mask: recorded
                entry = self._failure(record, f"{type(error).__name__}: {error}")
            self.manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.manifest.flush()
            if entry["status"] == "ok":
                self.done += 1
            else:
                self.failed += 1

    def _failure(self, record: dict, message: str) -> dict:
        return {
            "key": record["key"],
            "input": record["path"],
            "status": "error",
            "error": message,
            "outputs": {},
            "shard": self.tag,
            "settings": self.settings_id,
        }

    def _entry(self, record: dict, result) -> dict:
        from camkit.cam import normalize, upsample
        from camkit.viz.overlay import comparison_panel, overlay, panel

        if result is None:
            return self._failure(record, record["error"])
        heatmaps, i = result
        info, config = self.info, self.config
        image, mask, name = record["image"], record["mask"], record["name"]
        maps = heatmaps.maps[i]  # (K, h, w)
        class_ids = heatmaps.class_ids[i]
        probabilities = heatmaps.logits[i].softmax(dim=0)
        top = probabilities.topk(min(5, len(probabilities)))
        order = torch.argsort(heatmaps.scores[i], descending=True)[:8]
        targets = [
            {
                "class_id": int(class_ids[k]),
                "name": info.class_name(int(class_ids[k])),
                "score": float(heatmaps.scores[i, k]),
                "probability": float(heatmaps.probabilities[i, k]),
            }
            for k in order
        ]
        shown = normalize(upsample(maps[order], record["size"])).numpy()  # (K', H, W)
        outputs, metrics = {}, None
        if mask is not None:
            from camkit.metrics.localisation import heatmap_metrics

            metrics = heatmap_metrics(shown[0], mask)
        if "overlay" in config.formats:
            picture = overlay(image, shown[0], config.alpha, colormap=config.colormap, mask=mask)
            outputs["overlay"] = _write(self.out, f"overlays/{name}.png", _png(picture), self.tag)
            outputs["thumb"] = _write(self.out, f"thumbs/{name}.jpg", _thumbnail(picture), self.tag)
        if "raw" in config.formats:
            buffer = io.BytesIO()
            np.savez_compressed(
                buffer,
                maps=maps.numpy().astype(np.float16),
                class_ids=class_ids.numpy(),
                scores=heatmaps.scores[i].numpy(),
                probabilities=heatmaps.probabilities[i].numpy(),
                layer=np.array(heatmaps.layer),
                method=np.array(heatmaps.method),
                input_size=np.array(heatmaps.input_size),
                image_size=np.array(record["size"]),
            )
            outputs["raw"] = _write(self.out, f"raw/{name}.npz", buffer.getvalue(), self.tag)
        if "mask" in config.formats and mask is not None:
            outputs["mask"] = _write(
                self.out,
                f"masks/{name}.png",
                _png(np.repeat(mask[..., None] * 255, 3, 2).astype(np.uint8)),
                self.tag,
            )
        if "panel" in config.formats:
            if mask is not None:
                picture = comparison_panel(
                    image,
                    shown[0],
                    mask,
                    metrics,
                    targets[0]["name"],
                    config.alpha,
                    config.colormap,
                )
            else:
                titles = [f"{t['name']} p={t['probability']:.2f}" for t in targets]
                picture = panel(
                    image, list(shown), titles, config.alpha, config.colormap, image_title=name
                )
            outputs["panel"] = _write(self.out, f"panels/{name}.png", _png(picture), self.tag)
        entry = {
            "key": record["key"],
            "input": record["path"],
            "status": "ok",
            "outputs": outputs,
            "top": [
                {"class_id": int(c), "name": info.class_name(int(c)), "probability": float(p)}
                for p, c in zip(top.values, top.indices)
            ],
            "targets": targets[:50],
            "path": heatmaps.path,
            "shard": self.tag,
            "settings": self.settings_id,
        }
        if metrics is not None:
            entry["metrics"] = metrics
        return entry


# --------------------------------------------------------------------------------------------
# summary and gallery


def merge(out: str | os.PathLike) -> dict:
    """Join every manifest part of ``out`` into ``manifest.jsonl`` and write ``summary.csv`` and
    ``index.html``. Safe to run again; removes temporary files a killed run left."""
    out = Path(out)
    if not (out / "export.json").exists():
        raise ExportError(f"{out} holds no camkit export (no export.json); check --out")
    _remove_temporaries(out, None)
    settings = json.loads((out / "export.json").read_text(encoding="utf-8"))
    records = read_manifest(out, settings_id(settings))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    _write(out, "manifest.jsonl", lines.encode("utf-8"), "merge")
    _write(out, "summary.csv", _summary_csv(records).encode("utf-8"), "merge")
    _write(out, "index.html", gallery_html(records, settings).encode("utf-8"), "merge")
    failed = sum(r["status"] != "ok" for r in records)
    return {"images": len(records), "failed": failed, "ok": len(records) - failed}


def _summary_csv(records: list[dict]) -> str:
    metric_names: list[str] = []
    for record in records:
        for name in record.get("metrics", {}) or {}:
            if name not in metric_names:
                metric_names.append(name)
    columns = ["key", "input", "status", "class_id", "class_name", "probability", "score",
               "top1_class_id", "top1_probability", *metric_names, "overlay", "raw", "error"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        row = {"key": record["key"], "input": record["input"], "status": record["status"]}
        row["error"] = record.get("error") or ""
        if record["status"] == "ok":
            target, best = record["targets"][0], record["top"][0]
            row.update(class_id=target["class_id"], class_name=target["name"])
            row.update(probability=f"{target['probability']:.6g}", score=f"{target['score']:.6g}")
            row.update(
                top1_class_id=best["class_id"], top1_probability=f"{best['probability']:.6g}"
            )
            for name, value in (record.get("metrics") or {}).items():
                row[name] = "" if value is None else f"{value:.6g}"
            row.update({k: v for k, v in record["outputs"].items() if k in ("overlay", "raw")})
        writer.writerow(row)
    return buffer.getvalue()


def gallery_html(records: list[dict], settings: dict) -> str:
    """A self-contained page: thumbnails (linking to the full overlays), sortable by score,
    probability, name or any metric, errors listed; opens from disk (relative links, no server)."""
    items = []
    for record in records:
        item = {"key": record["key"], "status": record["status"]}
        if record["status"] == "ok":
            target = record["targets"][0]
            item.update(
                src=record["outputs"].get("thumb")  # exports made before thumbnails: the overlay
                or record["outputs"].get("overlay")
                or record["outputs"].get("panel"),
                full=record["outputs"].get("overlay") or record["outputs"].get("panel"),
                cls=target["name"],
                score=target["score"],
                probability=target["probability"],
                metrics={k: v for k, v in (record.get("metrics") or {}).items() if v is not None},
            )
        else:
            item["error"] = record.get("error", "")
        items.append(item)
    data = json.dumps(items, ensure_ascii=False).replace("</", "<\\/")
    title = html.escape(f"camkit export — {settings.get('method')} at {settings.get('layer')}")
    metric_names = sorted({m for i in items for m in i.get("metrics", {})})
    options = "".join(
        f'<option value="{html.escape(v)}">{html.escape(label)}</option>'
        for v, label in [("score", "score ↓"), ("probability", "probability ↓"), ("key", "name"),
                         *[(f"metric:{m}", f"{m} ↓") for m in metric_names], ("status", "errors first")]
    )  # fmt: skip
    return (
        _GALLERY.replace("__TITLE__", title)
        .replace("__OPTIONS__", options)
        .replace("__DATA__", data)
        .replace(
            "__SETTINGS__", html.escape(json.dumps({k: settings.get(k) for k in IDENTITY_KEYS}))
        )
    )


_GALLERY = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
header{display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px;margin-top:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
figure img{width:100%;height:auto;display:block;image-rendering:auto}
figcaption{font-size:12px;line-height:1.35;word-break:break-all}
figure.error{border-color:#d33;background:#fff4f4}
.muted{color:#777;font-size:12px}
button{margin:12px 0}
</style></head>
<body>
<header><h1 style="font-size:18px">__TITLE__</h1>
<label>sort by <select id="sort">__OPTIONS__</select></label>
<span id="count" class="muted"></span></header>
<div class="muted">__SETTINGS__</div>
<div id="grid"></div>
<button id="more" hidden>show more</button>
<script id="data" type="application/json">__DATA__</script>
<script>
const items = JSON.parse(document.getElementById('data').textContent);
const grid = document.getElementById('grid'), more = document.getElementById('more');
const PAGE = 240; let shown = 0, order = items.slice();
const url = p => p.split('/').map(encodeURIComponent).join('/');
function value(item, key) {
  if (key.startsWith('metric:')) { const v = (item.metrics || {})[key.slice(7)]; return v === undefined ? -Infinity : v; }
  const v = item[key]; return v === undefined ? -Infinity : v;
}
function sortBy(key) {
  order = items.slice();
  if (key === 'key') order.sort((a, b) => a.key.localeCompare(b.key));
  else if (key === 'status') order.sort((a, b) => (a.status === 'ok') - (b.status === 'ok') || a.key.localeCompare(b.key));
  else order.sort((a, b) => value(b, key) - value(a, key) || a.key.localeCompare(b.key));
  grid.textContent = ''; shown = 0; page();
}
function card(item) {
  const figure = document.createElement('figure'), caption = document.createElement('figcaption');
  figure.dataset.key = item.key;
  if (item.status === 'ok') {
    if (item.src) {
      const img = document.createElement('img'); img.src = url(item.src); img.alt = item.key; img.loading = 'lazy';
      const link = document.createElement('a'); link.href = url(item.full || item.src); link.append(img); figure.append(link);
    }
    const metrics = Object.entries(item.metrics || {}).filter(([k]) => ['pointing_game', 'energy_in_mask', 'iou@0.2'].includes(k)).map(([k, v]) => k + ' ' + v.toFixed(2)).join(' · ');
    caption.textContent = item.key + ' — ' + item.cls + ' p=' + item.probability.toFixed(3) + ' s=' + item.score.toFixed(2) + (metrics ? ' — ' + metrics : '');
  } else { figure.className = 'error'; caption.textContent = item.key + ' — error: ' + item.error; }
  figure.append(caption); return figure;
}
function page() {
  const end = Math.min(order.length, shown + PAGE);
  for (; shown < end; shown++) grid.append(card(order[shown]));
  more.hidden = shown >= order.length;
  document.getElementById('count').textContent = items.length + ' images, ' + items.filter(i => i.status !== 'ok').length + ' failed; showing ' + shown;
}
more.onclick = page;
document.getElementById('sort').onchange = e => sortBy(e.target.value);
sortBy(document.getElementById('sort').value);
</script></body></html>
"""
