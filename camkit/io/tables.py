"""Tables: rows of dicts to CSV (atomically) and to aligned text."""

from __future__ import annotations

import csv
import io
import os

from camkit.io.files import atomic_write_bytes

__all__ = ["format_table", "write_csv"]


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows to CSV atomically (columns: the union of keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def format_table(rows: list[dict], columns: list[str] | None = None, digits: int = 3) -> str:
    """Rows of dicts as an aligned text table (numbers to ``digits`` decimals, None as n/a)."""
    columns = columns or [k for k in (rows[0] if rows else {})]

    def cell(value) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(columns, widths)))
    ]
    for row in cells:
        lines.append(
            "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
        )
    return "\n".join(lines)
