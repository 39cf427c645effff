"""Scale-out: what a process does once its shard is exported.

- the only shard (``N = 1``): merge now;
- under ``torchrun`` (``RANK`` / ``WORLD_SIZE``): wait for every rank at a gloo barrier (no GPU
  needed), then rank 0 merges; the other ranks report their own shard;
- separate ``--shard K/N`` processes: nothing to merge yet; ``camkit export --merge OUT`` joins
  the parts once every shard is done (and refuses while one is missing).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from camkit.export.inputs import torchrun_shard
from camkit.export.manifest import current_records, shard_tag
from camkit.export.merging import merge

__all__ = ["ShardOutcome", "finish_shard", "local_device", "torchrun_barrier"]


@dataclass(frozen=True)
class ShardOutcome:
    """What :func:`finish_shard` did.

    Attributes:
        merged: :func:`~camkit.export.merge`'s result where this process merged, else ``None``.
        merge_later: no process merges: run ``camkit export --merge OUT`` when all are done.
        shard_failed: images of this process's shard recorded as failed (current settings).
    """

    merged: dict | None
    merge_later: bool
    shard_failed: int

    @property
    def failed(self) -> int:
        """The failures to report: the merged export's where this process merged, else its
        shard's."""
        return self.merged["failed"] if self.merged is not None else self.shard_failed


def torchrun_barrier() -> bool:
    """Wait for every torchrun rank (gloo, no GPU needed); False where that is not possible."""
    import torch.distributed as dist

    if not dist.is_available() or "MASTER_ADDR" not in os.environ:
        return False
    dist.init_process_group("gloo", timeout=datetime.timedelta(hours=12))
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return True


def local_device() -> str | None:
    """``cuda:LOCAL_RANK`` under torchrun on a machine with CUDA, else ``None`` (the default)."""
    if torchrun_shard() is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


def finish_shard(out: str | os.PathLike, shard: tuple[int, int]) -> ShardOutcome:
    """After this process exported ``shard`` of ``out``: merge, wait and merge, or neither (see
    the module docstring). A merge that finds shards missing raises
    :class:`~camkit.export.IncompleteExportError`."""
    out = Path(out)
    merged, merge_later = None, False
    if shard[1] == 1:
        merged = merge(out)
    elif torchrun_shard() is not None and torchrun_barrier():
        if shard[0] == 0:
            merged = merge(out)
    else:
        merge_later = True
    tag = shard_tag(shard)
    mine = [r for r in current_records(out) if r.get("shard") == tag]
    return ShardOutcome(merged, merge_later, sum(r["status"] != "ok" for r in mine))
