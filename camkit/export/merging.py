"""Joining an export's shards: ``manifest.jsonl``, ``summary.csv`` and ``index.html``.

A merge checks that every input has a record made with the current settings: ``inputs.json``
(written by every shard) lists the input keys in shard order and the shard count N, so an input
without a record belongs to shard ``position % N``. Exports made before ``inputs.json`` fall back
to the part names: a shard ``K/N`` without a ``part-K-of-N.jsonl`` is missing.

A merge that lacks shards does not pass for complete. By default it refuses: it writes nothing
and raises :class:`IncompleteExportError`, whose message names the missing shards and the
command that finishes them, and whose ``missing_shards`` / ``result`` say the same as data. With
``allow_incomplete=True`` it writes all three files, the gallery headed by a red notice naming the
missing shards, and returns ``complete: False`` with the same ``missing_shards``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from camkit.export.errors import IncompleteExportError
from camkit.export.files import remove_temporaries, write_inside
from camkit.export.gallery import gallery_html
from camkit.export.manifest import PART_NAME, read_inputs, read_manifest, read_settings, settings_id

__all__ = ["merge", "missing_shards", "summary_csv"]


def missing_shards(out: Path, records: list[dict]) -> tuple[list[str], int | None, int]:
    """The shards (``"K/N"``) with inputs that have no record among ``records``; the number
    of inputs (``None`` where OUT does not say) and how many of them have no record."""
    inputs = read_inputs(out)
    if inputs is None:  # an export made before inputs.json: what the part names tell
        found: dict[int, set[int]] = {}
        for path in (out / "manifests").glob("part-*.jsonl"):
            if match := PART_NAME.fullmatch(path.name):
                found.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
        if len(found) != 1:  # no parts (one process), or parts of several runs: cannot tell
            return [], None, 0
        ((count, present),) = found.items()
        return [f"{k}/{count}" for k in range(count) if k not in present], None, 0
    have = {record["key"] for record in records}
    count = int(inputs["shards"])
    absent = [position for position, key in enumerate(inputs["keys"]) if key not in have]
    shards = sorted({position % count for position in absent})
    return [f"{k}/{count}" for k in shards], len(inputs["keys"]), len(absent)


def _incomplete_message(out: Path, missing: list[str], absent: int, total: int | None) -> str:
    which = "shard" if len(missing) == 1 else "shards"
    how_many = f": {absent} of {total} inputs have no record" if total else ""
    runs = " and again with ".join(f"--shard {s}" for s in missing)
    return (
        f"{which} {', '.join(missing)} of {out} missing or unfinished{how_many}; run the same "
        f"`camkit export` command with {runs}, then `camkit export --merge {out}`"
    )


def merge(out: str | os.PathLike, *, allow_incomplete: bool = False) -> dict:
    """Join every manifest part of ``out`` into ``manifest.jsonl`` and write ``summary.csv`` and
    ``index.html`` (see the module docstring for a merge that lacks shards). Safe to run again;
    removes temporary files a killed run left.

    Returns:
        ``{"images", "ok", "failed", "inputs", "missing", "missing_shards", "complete"}``:
        records merged, of them ok and failed; inputs recorded in ``inputs.json`` (``None`` for
        older exports) and how many of them lack a record; the unfinished shards as ``"K/N"``.

    Raises:
        ExportError: ``out`` holds no export.
        IncompleteExportError: shards are missing and ``allow_incomplete`` is false.
    """
    out = Path(out)
    settings = read_settings(out)
    records = read_manifest(out, settings_id(settings))
    missing, total, absent = missing_shards(out, records)
    failed = sum(r["status"] != "ok" for r in records)
    result = {"images": len(records), "ok": len(records) - failed, "failed": failed}
    result.update(inputs=total, missing=absent, missing_shards=missing, complete=not missing)
    notice = _incomplete_message(out, missing, absent, total) if missing else None
    if notice and not allow_incomplete:
        raise IncompleteExportError(notice, missing, result)
    remove_temporaries(out, None)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    page = gallery_html(records, settings, notice=f"Incomplete: {notice}" if notice else None)
    write_inside(out, "manifest.jsonl", lines.encode("utf-8"), "merge")
    write_inside(out, "summary.csv", summary_csv(records).encode("utf-8"), "merge")
    write_inside(out, "index.html", page.encode("utf-8"), "merge")
    return result


def summary_csv(records: list[dict]) -> str:
    """One CSV row per record (:func:`camkit.pipeline.records.flat_row`): the first target, the
    top class, every metric, the overlay and raw files, the error."""
    from camkit.pipeline.records import ROW_COLUMNS, flat_row

    metric_names: list[str] = []
    for record in records:
        for name in record.get("metrics", {}) or {}:
            if name not in metric_names:
                metric_names.append(name)
    columns = [*ROW_COLUMNS, *metric_names, "overlay", "raw", "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        row = flat_row(record)
        writer.writerow(
            {
                k: "" if v is None else f"{v:.6g}" if isinstance(v, float) else v
                for k, v in row.items()
            }
        )
    return buffer.getvalue()
