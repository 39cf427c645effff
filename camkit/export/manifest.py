"""What an export folder records: its settings, its inputs, and one manifest record per image.

- ``OUT/export.json``: the settings (:func:`make_settings`). ``IDENTITY_KEYS`` are the ones that
  change what an output file holds; their hash (:func:`settings_id`) is in every record, and a
  rerun with other values is refused unless ``overwrite``.
- ``OUT/inputs.json``: every input key, in the order shards are cut from, and the shard count N,
  so that a merge can tell which shards have not finished (:mod:`camkit.export.merging`).
- ``OUT/manifest.jsonl`` (one process, or the merge) and ``OUT/manifests/part-K-of-N.jsonl`` (shard
  K of N): one JSON record per line, appended once the image's files exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from camkit.export.errors import ExportError
from camkit.export.files import write_inside

__all__ = [
    "IDENTITY_KEYS",
    "INPUTS_FILE",
    "PART_NAME",
    "SETTINGS_FILE",
    "check_inputs",
    "check_settings",
    "current_records",
    "describe_model",
    "make_settings",
    "manifest_files",
    "part_path",
    "read_inputs",
    "read_manifest",
    "read_settings",
    "settings_id",
    "shard_tag",
    "write_inputs",
]

SETTINGS_FILE = "export.json"
INPUTS_FILE = "inputs.json"
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
    "aug_smooth",
    "fusion",
    "score_channels",
    "align",
    "seed",
)
# identity keys added later, with the value an export made before them had: at these values
# they are left out of the hash (so such an export keeps its settings id), and an export.json
# without them is read as having them ("align": exports before it drew maps on the grid)
_LATER_DEFAULTS = {
    "autocast": None,
    "aug_smooth": False,
    "fusion": None,
    "score_channels": None,
    "align": "grid",
    "seed": 0,
}
PART_NAME = re.compile(r"part-(\d+)-of-(\d+)\.jsonl")  # a shard's manifest: part-K-of-N


def shard_tag(shard: tuple[int, int]) -> str:
    """``(K, N)`` → ``"KofN"``: the ``shard`` field of records and the temporary files' tag."""
    return f"{shard[0]}of{shard[1]}"


def part_path(out: Path, shard: tuple[int, int]) -> Path:
    """The manifest a shard appends to: ``manifest.jsonl`` alone, else its own part."""
    index, count = shard
    if count == 1:
        return out / "manifest.jsonl"
    return out / "manifests" / f"part-{index}-of-{count}.jsonl"


def describe_model(weights: str, arch: str) -> str:
    """The model's part of the settings: ``arch:sha256:<16 hex>`` of a weights file, else
    ``arch:<weights name>`` (e.g. ``resnet50:imagenet``)."""
    path = Path(str(weights))
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"{arch}:sha256:{digest.hexdigest()[:16]}"
    return f"{arch}:{weights}"


def make_settings(config, model_id: str, segmenter_id: str | None) -> dict:
    """The settings of an :class:`~camkit.export.ExportConfig` run, as ``export.json`` holds them."""
    from camkit import __version__

    described = config.settings.describe()
    return {
        "model": model_id,
        **{k: described[k] for k in IDENTITY_KEYS if k in described},
        "path": described["path"],
        "channels_last": described["channels_last"],
        "formats": list(config.formats),
        "masks": str(config.masks) if config.masks else None,
        "segmenter": segmenter_id,
        "camkit": __version__,
    }


def settings_id(settings: dict) -> str:
    """A short hash of the settings that decide what an output holds (``IDENTITY_KEYS``)."""
    identity = {k: settings.get(k, _LATER_DEFAULTS.get(k)) for k in IDENTITY_KEYS}
    for key, default in _LATER_DEFAULTS.items():
        if identity[key] == default:
            del identity[key]
    identity = json.dumps(identity, sort_keys=True)
    return hashlib.sha1(identity.encode()).hexdigest()[:12]


def read_settings(out: str | os.PathLike) -> dict:
    """``OUT/export.json``; an :class:`ExportError` where OUT holds no export."""
    path = Path(out) / SETTINGS_FILE
    if not path.exists():
        raise ExportError(f"{out} holds no camkit export (no {SETTINGS_FILE}); check --out")
    return json.loads(path.read_text(encoding="utf-8"))


def _changed(previous: dict, settings: dict) -> list[tuple[str, object, object]]:
    """The identity settings that differ, and the outputs asked for (formats, masks: a resumed
    run would not make the new ones for the images already done)."""
    changed = []
    for key in IDENTITY_KEYS:
        before = previous.get(key, _LATER_DEFAULTS.get(key))
        if before != settings.get(key):
            changed.append((key, before, settings.get(key)))
    for key, same in (("formats", lambda a, b: set(a) == set(b)), ("masks", lambda a, b: a == b)):
        if key in previous and key in settings and not same(previous[key], settings[key]):
            changed.append((key, previous[key], settings[key]))
    return changed


def _has_records(out: Path) -> bool:
    """Whether OUT's manifests hold anything (a run that failed before its first image leaves
    an empty one)."""
    return any(path.stat().st_size > 0 for path in manifest_files(out))


def check_settings(out: Path, settings: dict, overwrite: bool, tag: str) -> None:
    """Refuse ``settings`` where OUT holds records made with other identity settings or other
    outputs (unless ``overwrite``), then write them to ``export.json``."""
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = {}
        changed = _changed(previous, settings)
        if changed and not overwrite and _has_records(out):
            details = "; ".join(f"{k}: {old!r} → {new!r}" for k, old, new in changed)
            raise ExportError(
                f"{out} holds an export made with other settings ({details}); pass --overwrite "
                "to redo every image with the new ones, or choose another --out"
            )
    # every shard writes the same settings; its own temporary name keeps the writes apart
    write_inside(out, SETTINGS_FILE, json.dumps(settings, indent=1).encode(), tag)


def check_inputs(out: Path, keys: Sequence[str], shards: int, overwrite: bool) -> None:
    """Shards are cut from one list of inputs: where OUT holds records of a sharded export
    (or this run is sharded), other inputs are refused unless ``overwrite`` — a merge would
    mix the two sets. The same inputs may be resumed under another shard count (finished
    images are skipped by key), and one process may rerun over a grown folder."""
    previous = read_inputs(out)
    if overwrite or previous is None or not _has_records(out):
        return
    before, count = int(previous.get("shards", 1)), len(previous.get("keys", ()))
    if max(before, shards) == 1 or previous.get("keys") == list(keys):
        return
    known = set(previous.get("keys", ()))
    new = next((key for key in keys if key not in known), None)
    raise ExportError(
        f"{out} holds an export of {count} inputs in {before} shard(s); this run has {len(keys)} "
        f"in {shards}" + (f" ({new!r} is not among them)" if new else "") + ". Every shard "
        "needs the same inputs: pass those, --overwrite to start again, or choose another --out"
    )


def write_inputs(out: Path, keys: Sequence[str], shards: int, tag: str) -> None:
    """Record every input key (in shard order) and the shard count: what a merge checks."""
    data = {"shards": shards, "count": len(keys), "keys": list(keys)}
    write_inside(out, INPUTS_FILE, json.dumps(data, ensure_ascii=False).encode("utf-8"), tag)


def read_inputs(out: str | os.PathLike) -> dict | None:
    """``OUT/inputs.json`` (``{"shards", "count", "keys"}``), or ``None`` for an export made
    before it was written."""
    path = Path(out) / INPUTS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def manifest_files(out: Path) -> list[Path]:
    """``manifest.jsonl`` (if any) and then every shard part, in name order."""
    folder = out / "manifests"
    parts = sorted(folder.glob("part-*.jsonl")) if folder.is_dir() else []
    main = out / "manifest.jsonl"
    return ([main] if main.exists() else []) + parts


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
    return read_manifest(out, settings_id(read_settings(out)))
