"""Execute the notebooks top to bottom (nbclient), and check committed outputs for staleness.

    python notebooks/execute.py            # run every notebook, write the outputs in place
    python notebooks/execute.py 02_*.ipynb # some of them

The demo's models come from ``$CAMKIT_DEMO_DIR`` (default ``camkit-demo``), trained there with
the demo's settings if absent. ``make notebooks`` runs this; ``tests/test_notebooks.py`` runs the
same execution into a copy and compares it with the committed files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel, in the notebooks folder; raises on the first error.
    The kernel finds the demo's models at ``$CAMKIT_DEMO_DIR``, by default the repository's
    ``camkit-demo`` (trained there if absent)."""
    os.environ.setdefault("CAMKIT_DEMO_DIR", str(HERE.parent / "camkit-demo"))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    return notebook


def output_kinds(cell) -> list[str]:
    """What a code cell showed, as kinds: ``stream``, ``image``, ``text/plain``, ``error``."""
    kinds = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            kinds.append("stream")
        elif output["output_type"] == "error":
            kinds.append("error")
        else:
            data = output.get("data", {})
            kinds.append("image" if any(k.startswith("image/") for k in data) else "text/plain")
    return sorted(set(kinds))


def staleness(committed: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """Why the committed outputs do not match a fresh run: cell counts, sources, execution
    order, errors and kinds of output (not pixels, not numbers)."""
    problems = []
    old = [c for c in committed.cells if c.cell_type == "code"]
    new = [c for c in fresh.cells if c.cell_type == "code"]
    if len(committed.cells) != len(fresh.cells) or len(old) != len(new):
        problems.append(f"{len(old)} code cells committed, {len(new)} now")
    for number, (a, b) in enumerate(zip(old, new), 1):
        if a.source != b.source:
            problems.append(f"code cell {number}: source differs")
        if a.get("execution_count") != number:
            problems.append(f"code cell {number}: committed without running in order")
        if "error" in output_kinds(a):
            problems.append(f"code cell {number}: the committed output is an error")
        if output_kinds(a) != output_kinds(b):
            problems.append(
                f"code cell {number}: committed shows {output_kinds(a)}, a fresh run {output_kinds(b)}"
            )
    return problems


def main(argv: list[str]) -> int:
    paths = [HERE / name for name in argv] or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        print(f"executing {path.name}", flush=True)
        nbformat.write(execute(path), path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
