"""Files inside the export folder OUT: atomic, contained, and cleaned up after a kill.

Like :mod:`camkit.io.files`, a file is written under a temporary name beside its target and then
renamed (``os.replace``). The export needs two things more, so it does not use ``atomic_path``:
the temporary name carries the shard's tag (``.name.0of2.camkit-tmp``), so a rerun of that shard
removes what a killed run left without touching another running shard's files; and every target
must resolve inside OUT (an input named ``../x`` or a symlink planted in OUT cannot lead out).
"""

from __future__ import annotations

import os
from pathlib import Path

from camkit.export.errors import ExportError

__all__ = ["TEMP_SUFFIX", "inside", "remove_temporaries", "write_inside"]

TEMP_SUFFIX = ".camkit-tmp"


def inside(out: Path, target: Path) -> Path:
    """``target`` if it resolves inside ``out`` (no symlink or ``..`` leads out), else an error."""
    if not target.resolve().is_relative_to(out.resolve()):
        raise ExportError(f"output {target} would be written outside {out} (a symlink?); refused")
    return target


def write_inside(out: Path, relative: str, data: bytes, tag: str) -> str:
    """Write ``OUT/relative`` atomically under a temporary name tagged ``tag``; returns
    ``relative`` (what the manifest records)."""
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    inside(out, target.parent)
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


def remove_temporaries(out: Path, tag: str | None) -> int:
    """Remove the temporary files a killed run of shard ``tag`` left (every shard's: ``None``)."""
    pattern = f"*.{tag}{TEMP_SUFFIX}" if tag else f"*{TEMP_SUFFIX}"
    removed = 0
    for path in out.rglob(pattern):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
