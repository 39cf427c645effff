"""The notebooks run top to bottom from a fresh clone, and their committed outputs are current."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _runner():
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    spec = importlib.util.spec_from_file_location("notebook_runner", NOTEBOOKS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_four_notebooks_are_there():
    assert NAMES == [
        "01_gradcam_and_fcn_maps.ipynb",
        "02_methods_side_by_side.ipynb",
        "03_heatmaps_vs_masks.ipynb",
        "04_channel_variants.ipynb",
    ]


def test_staleness_check_catches_what_it_should():
    import nbformat

    runner = _runner()
    committed = nbformat.read(NOTEBOOKS / NAMES[0], as_version=4)
    assert runner.staleness(committed, committed) == []
    edited = nbformat.from_dict(committed)
    edited.cells[1].source += "\nprint('new')"
    edited.cells[1].outputs = [nbformat.v4.new_output("error", ename="E", evalue="", traceback=[])]
    problems = runner.staleness(edited, committed)
    assert any("source differs" in p for p in problems) and any("error" in p for p in problems)
    fewer = nbformat.from_dict(committed)
    fewer.cells = fewer.cells[:-1]
    assert any("code cells" in p for p in runner.staleness(fewer, committed))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_committed_outputs_are_current(name, demo_dir, monkeypatch):
    import nbformat

    runner = _runner()
    monkeypatch.setenv("CAMKIT_DEMO_DIR", str(demo_dir))
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    fresh = runner.execute(NOTEBOOKS / name)  # raises CellExecutionError on any failing cell
    problems = runner.staleness(committed, fresh)
    assert not problems, f"{name} is stale — run `make notebooks`: " + "; ".join(problems)
    assert any("image" in runner.output_kinds(c) for c in committed.cells), "no figures"
    assert os.environ["CAMKIT_DEMO_DIR"] == str(demo_dir)
