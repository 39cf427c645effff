"""What an export reads and how it is sharded.

Inputs and their output names come from :mod:`camkit.data.inputs` (the same for every command);
a shard ``K/N`` takes every N-th input from the K-th of the sorted keys, so every process of a
sharded run agrees on its share without talking to the others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from camkit.data.inputs import Input, collect_inputs, output_names
from camkit.export.errors import ExportError

__all__ = [
    "ExportInput",
    "collect_inputs",
    "output_names",
    "parse_shard",
    "shard_of",
    "torchrun_shard",
]


ExportInput = Input  # the export's name for an input (camkit.data.inputs.Input)


def shard_of(items: Sequence, shard: tuple[int, int]) -> list:
    """The items of shard ``K`` of ``N``: every N-th item from the K-th (disjoint, deterministic)."""
    index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise ExportError(f"shard {index}/{count} is not valid; use K/N with 0 ≤ K < N")
    return list(items)[index::count]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (the ``--shard`` option) → ``(K, N)``, checked."""
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
