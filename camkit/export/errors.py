"""The export's errors: what went wrong with its inputs or settings, with the fix in the message."""

from __future__ import annotations

__all__ = ["ExportError", "IncompleteExportError"]


class ExportError(ValueError):
    """A problem with the export's inputs or settings, with the fix in the message."""


class IncompleteExportError(ExportError):
    """A merge found inputs without a record: some shards never ran or did not finish.

    Attributes:
        missing_shards: the unfinished shards as ``"K/N"`` (what ``--shard`` takes).
        result: what the merge found (the same keys as :func:`camkit.export.merge` returns).
    """

    def __init__(self, message: str, missing_shards: list[str], result: dict) -> None:
        super().__init__(message)
        self.missing_shards = missing_shards
        self.result = result
