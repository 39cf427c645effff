"""What the export tests share: a folder of images with awkward names and broken files, and
helpers to run the CLI in-process and read an export's records."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from camkit.cli import main
from camkit.data.shapes import write_dataset
from camkit.export import read_manifest


@pytest.fixture
def folder(tmp_path) -> Path:
    """Twelve shapes images with masks, plus awkward names and broken files among them."""
    root = tmp_path / "data"
    write_dataset(root, 12, size=64, seed=3)
    images = root / "images"
    good = sorted(images.rglob("*.png"))[0]
    (images / "odd names").mkdir()
    shutil.copy(good, images / "odd names" / "ünïcode ✓ name.png")
    shutil.copy(good, images / "odd names" / "same.png")
    shutil.copy(good, images / "odd names" / "same.jpg.png")
    (images / "zero.png").write_bytes(b"")
    (images / "text.jpg").write_text("not an image at all")
    (images / "corrupt.png").write_bytes(good.read_bytes()[:200])
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    """``camkit *argv`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def outputs_of(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in read_manifest(out)}


def records_in(path: Path) -> list[dict]:
    """The records of one manifest file; a line cut short is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def fake_export(out: Path, keys: list[str], shards: int, parts: dict[int, list[str]]) -> str:
    """An export folder written by hand, no model: ``export.json``, ``inputs.json`` and, for
    each shard K in ``parts``, ``part-K-of-N`` holding an error record for each of its keys.
    Returns the settings id of the records."""
    from camkit.export.manifest import settings_id, write_inputs

    settings = {"model": "resnet50:none", "layer": "layer4.2", "method": "gradcam"}
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps(settings), encoding="utf-8")
    write_inputs(out, keys, shards, "test")
    identity = settings_id(settings)
    (out / "manifests").mkdir(exist_ok=True)
    for index, part_keys in parts.items():
        tag = f"{index}of{shards}"
        record = {"status": "error", "error": "broken", "outputs": {}, "shard": tag}
        records = [{"key": k, "input": k, **record, "settings": identity} for k in part_keys]
        text = "".join(json.dumps(r) + "\n" for r in records)
        (out / "manifests" / f"part-{index}-of-{shards}.jsonl").write_text(text, encoding="utf-8")
    return identity
