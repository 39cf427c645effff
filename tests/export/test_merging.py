"""Merging shards: one manifest, summary and gallery; a merge that lacks shards names them."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from camkit.export import IncompleteExportError, merge
from camkit.export.manifest import read_manifest
from camkit.export.merging import missing_shards
from tests.export.conftest import fake_export, outputs_of, records_in, run

CAMKIT = [sys.executable, "-m", "camkit.cli"]


def test_merge_after_one_of_two_shards_names_the_missing_one(capsys, tmp_path, folder, checkpoint):
    """`camkit export --merge OUT` after only `--shard 0/2` said `merged 10 images (0 failed)`."""
    out = tmp_path / "out"
    common = ["export", folder / "images", "--out", out, "--weights", checkpoint, "--workers", "0",
              "--formats", "overlay"]  # fmt: skip
    assert run(capsys, *common, "--shard", "0/2")[0] in (0, 3)
    code, stdout, err = run(capsys, "export", "--merge", out)
    assert code == 1 and "merged" not in stdout
    assert "shard 1/2" in err and "9 of 18 inputs have no record" in err and "--shard 1/2" in err
    assert not (out / "index.html").exists() and not (out / "manifest.jsonl").exists()
    with pytest.raises(IncompleteExportError) as caught:
        merge(out)
    assert caught.value.missing_shards == ["1/2"] and caught.value.result["images"] == 9
    # asked for, the partial gallery is written, and says it is partial
    result = merge(out, allow_incomplete=True)
    assert result["complete"] is False and result["missing_shards"] == ["1/2"]
    assert result["inputs"] == 18 and result["missing"] == 9 and result["images"] == 9
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="incomplete"' in page and "shard 1/2" in page
    # another shard over other inputs was accepted, and the merge mixed the two sets
    other = ["export", folder / "images" / "circle", *common[2:]]
    code, _, err = run(capsys, *other, "--shard", "1/2")
    assert code == 1 and "holds an export of 18 inputs in 2 shard(s); this run has 3 in 2" in err
    assert "Every shard needs the same inputs" in err
    assert run(capsys, *common, "--shard", "1/2")[0] in (0, 3)
    code, stdout, _ = run(capsys, "export", "--merge", out)
    assert code == 3 and "merged 18 images (3 failed)" in stdout
    assert 'id="incomplete"' not in (out / "index.html").read_text(encoding="utf-8")
    assert merge(out)["missing_shards"] == [] and merge(out)["complete"] is True


def test_missing_shards_from_what_is_on_disk(tmp_path):
    keys = ["a", "b", "c", "d", "e"]  # shard 0 of 2: a, c, e; shard 1: b, d
    out = tmp_path / "out"
    fake_export(out, keys, 2, {0: ["a", "c", "e"], 1: ["b"]})  # shard 1 was killed
    records = read_manifest(out)
    assert missing_shards(out, records) == (["1/2"], 5, 1)
    fake_export(out, keys, 2, {0: ["a", "c", "e"], 1: ["b", "d"]})
    assert missing_shards(out, read_manifest(out)) == ([], 5, 0)
    # records made with other settings (an export --overwrite replaced) do not count
    part = out / "manifests" / "part-1-of-2.jsonl"
    lines = part.read_text().splitlines()
    stale = json.loads(lines[1]) | {"settings": "0123456789ab"}
    part.write_text(lines[0] + "\n" + json.dumps(stale) + "\n")
    with pytest.raises(IncompleteExportError, match=r"shard 1/2 .*1 of 5 inputs"):
        merge(out)
    part.write_text("\n".join(lines) + "\n")
    result = merge(out)
    assert result["complete"] and result["images"] == 5 and result["failed"] == 5
    (out / "manifest.jsonl").unlink()
    # an export made before inputs.json: the part names tell which shards ran
    (out / "inputs.json").unlink()
    assert missing_shards(out, read_manifest(out))[0] == []
    part.unlink()
    assert missing_shards(out, read_manifest(out))[0] == ["1/2"]
    fake_export(tmp_path / "four", list("abcdefgh"), 4, {2: ["c", "g"]})
    with pytest.raises(IncompleteExportError, match="shards 0/4, 1/4, 3/4") as caught:
        merge(tmp_path / "four")
    assert "--shard 0/4 and again with --shard 1/4" in str(caught.value)


@pytest.mark.slow
def test_two_shards_and_merge_equal_one_run(tmp_path, folder, checkpoint):
    common = ["--weights", str(checkpoint), "--workers", "0", "--batch-size", "3",
              "--formats", "overlay,raw"]  # fmt: skip
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    images = str(folder / "images")
    one = subprocess.run([*CAMKIT, "export", images, "--out", str(single), *common],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 3, one.stderr
    shards = [
        subprocess.Popen([*CAMKIT, "export", images, "--out", str(sharded), "--shard", f"{k}/2",
                          *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]  # fmt: skip
    codes = []
    for process in shards:
        _, err = process.communicate(timeout=600)
        codes.append(process.returncode)
        assert process.returncode in (0, 3), err  # 3: the shard holds a broken file
    assert 3 in codes
    parts = sorted((sharded / "manifests").glob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-0-of-2.jsonl", "part-1-of-2.jsonl"]
    first, second = ({r["key"] for r in records_in(p)} for p in parts)
    assert first and second and not first & second
    merged = subprocess.run([*CAMKIT, "export", "--merge", str(sharded)], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert merged.returncode == 3 and "merged 18 images" in merged.stdout
    a, b = outputs_of(single), outputs_of(sharded)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key]["status"] == b[key]["status"]
        if a[key]["status"] != "ok":
            assert a[key]["error"] == b[key]["error"]
            continue
        assert a[key]["outputs"] == b[key]["outputs"]
        assert a[key]["predictions"][0]["class_id"] == b[key]["predictions"][0]["class_id"]
        x = cv2.imread(str(single / a[key]["outputs"]["overlay"])).astype(int)
        y = cv2.imread(str(sharded / b[key]["outputs"]["overlay"])).astype(int)
        assert np.abs(x - y).max() <= 2  # batches differ, so float rounding may too
        with (
            np.load(single / a[key]["outputs"]["raw"]) as p,
            np.load(sharded / b[key]["outputs"]["raw"]) as q,
        ):
            np.testing.assert_allclose(
                p["maps"].astype(float), q["maps"].astype(float), rtol=1e-2, atol=1e-3
            )
    assert (single / "summary.csv").read_text().splitlines()[0] == (
        sharded / "summary.csv"
    ).read_text().splitlines()[0]
    assert len((sharded / "summary.csv").read_text().splitlines()) == 19
