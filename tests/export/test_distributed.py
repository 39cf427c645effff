"""Scale-out: torchrun ranks merge on rank 0; who merges once a shard is done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from camkit.export import finish_shard, local_device, torchrun_barrier
from tests.export.conftest import fake_export, outputs_of


def test_finish_shard_merges_only_where_it_should(monkeypatch, tmp_path):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    fake_export(out, list("abcd"), 2, {0: ["a", "c"]})
    outcome = finish_shard(out, (0, 2))  # separate --shard processes: the user merges later
    assert outcome.merged is None and outcome.merge_later and outcome.failed == 2
    assert not (out / "index.html").exists() and local_device() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's variables but no rendezvous: no barrier
    assert not torchrun_barrier() and finish_shard(out, (0, 2)).merge_later
    monkeypatch.delenv("RANK")
    one = tmp_path / "one"
    fake_export(one, ["a", "b"], 1, {0: ["a", "b"]})
    outcome = finish_shard(one, (0, 1))  # the only shard: merged now
    assert not outcome.merge_later and outcome.merged["images"] == 2 and outcome.failed == 2
    assert (one / "index.html").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_merge_on_rank_zero(tmp_path, folder, checkpoint):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "out"
    result = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "--master-port", "29517", "-m", "camkit.cli",
         "export", str(folder / "images"), "--out", str(out), "--weights", str(checkpoint),
         "--workers", "0"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert "merged 18 images" in result.stdout, result.stderr[-3000:]
    assert len(list((out / "manifests").glob("part-*-of-2.jsonl"))) == 2
    assert len(outputs_of(out)) == 18 and (out / "index.html").exists()
