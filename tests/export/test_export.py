"""camkit export's run loop: resumable, atomic batch export with a manifest and its failures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camkit.data.shapes import write_dataset
from camkit.export import TEMP_SUFFIX, ExportConfig, collect_inputs, export, merge, read_manifest
from camkit.pipeline.settings import Settings
from tests.export.conftest import outputs_of, records_in, run

CAMKIT = [sys.executable, "-m", "camkit.cli"]


def test_export_folder_with_broken_files(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    code, _stdout, err = run(capsys, "export", folder / "images", "--out", out, "--weights",
                            checkpoint, "--workers", "2", "--batch-size", "4",
                            "--formats", "overlay,raw,panel")  # fmt: skip
    assert code == 3, err  # some images failed, and the exit code says so
    inputs = collect_inputs(folder / "images")
    records = outputs_of(out)
    assert sorted(records) == sorted(i.key for i in inputs) and len(records) == 18
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)  # every image exactly once
    failed = {k: r["error"] for k, r in records.items() if r["status"] == "error"}
    assert sorted(failed) == ["corrupt.png", "text.jpg", "zero.png"]
    assert "empty (0 bytes)" in failed["zero.png"] and "text file" in failed["text.jpg"]
    assert "corrupt or truncated" in failed["corrupt.png"]
    for _key, record in records.items():
        if record["status"] != "ok":
            continue
        overlay = cv2.imread(str(out / record["outputs"]["overlay"]))
        assert overlay is not None and overlay.shape[:2] == (64, 64)
        thumb = cv2.imread(str(out / record["outputs"]["thumb"]))  # small: never enlarged
        assert record["outputs"]["thumb"].endswith(".jpg") and thumb.shape == overlay.shape
        assert np.abs(thumb.astype(int) - overlay).mean() < 8  # the same picture, as a JPEG
        assert cv2.imread(str(out / record["outputs"]["panel"])) is not None
        with np.load(out / record["outputs"]["raw"]) as raw:
            assert raw["maps"].dtype == np.float32 and raw["maps"].shape == (
                1,
                2,
                2,
            )  # one NPZ schema with explain: float32
            assert str(raw["layer"]) == "layer4.2" and str(raw["method"]) == "gradcam"
            assert int(raw["class_ids"][0]) == record["targets"][0]["class_id"]
        assert record["predictions"][0]["name"] in (
            "circle",
            "square",
            "triangle",
            "star",
            *"efghij",
        )
    # same stem, other suffix: both kept, neither overwrites the other
    same = records["odd names/same.png"]["outputs"]["overlay"]
    other = records["odd names/same.jpg.png"]["outputs"]["overlay"]
    assert same != other and (out / same).exists() and (out / other).exists()
    assert (out / "overlays" / "odd names" / "ünïcode ✓ name.png").exists()
    rows = list(csv.DictReader((out / "summary.csv").read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 18 and {r["status"] for r in rows} == {"ok", "error"}
    assert "index.html" in os.listdir(out) and not list(out.rglob(f"*{TEMP_SUFFIX}"))
    settings = json.loads((out / "export.json").read_text())
    assert settings["layer"] == "layer4.2" and settings["model"].startswith("resnet50:sha256:")


def test_rerun_resumes_and_refuses_changed_settings(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    common = ["export", folder / "images", "--out", out, "--weights", checkpoint, "--workers", "0"]
    assert run(capsys, *common)[0] == 3
    before = {p: p.stat().st_mtime_ns for p in (out / "overlays").rglob("*.png")}
    code, stdout, _ = run(capsys, *common)
    assert code == 3 and "0 exported, 18 already done" in stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "overlays").rglob("*.png")} == before
    code, _, err = run(capsys, *common, "--method", "layercam")
    assert code == 1 and "other settings" in err and "method" in err and "--overwrite" in err
    code, stdout, _ = run(capsys, *common, "--method", "layercam", "--overwrite")
    assert code == 3 and "15 exported" in stdout
    assert json.loads((out / "export.json").read_text())["method"] == "layercam"
    code, stdout, _ = run(capsys, *common, "--method", "layercam", "--retry-errors")
    assert "0 exported, 15 already done, 3 failed" in stdout
    # channels-last inputs give the same maps: not a change of settings; autocast is one
    code, stdout, _ = run(capsys, *common, "--method", "layercam", "--channels-last")
    assert code == 3 and "0 exported, 18 already done" in stdout
    code, _, err = run(capsys, *common, "--method", "layercam", "--autocast", "bf16")
    assert code == 1 and "autocast: None → 'bf16'" in err
    code, _, err = run(capsys, *common, "--method", "layercam", "--align", "grid")
    assert code == 1 and "align: 'rf' → 'grid'" in err
    # other outputs asked for: a resumed run would not make them for the images done
    code, _, err = run(capsys, *common, "--method", "layercam", "--formats", "overlay,raw,panel")
    assert code == 1 and "formats: " in err and "--overwrite" in err
    assert not (out / "panels").exists()


def test_an_export_that_failed_before_its_first_image_does_not_block_the_next(
    capsys, tmp_path, folder, checkpoint
):
    out = tmp_path / "out"
    common = ["export", folder / "images", "--out", out, "--weights", checkpoint, "--workers", "0"]
    code, _, err = run(capsys, *common, "--size", "8")
    assert code != 0 and "at least" in err
    code, stdout, err = run(capsys, *common)
    assert code == 3 and "other settings" not in err and "15 exported" in stdout


def test_an_export_from_before_align_is_not_resumed_aligned(capsys, tmp_path, folder, checkpoint):
    """An export.json without ``align`` was drawn on the grid: resumed only with --align grid,
    and its settings id (in every record) is unchanged."""
    from camkit.export.manifest import settings_id

    out = tmp_path / "out"
    common = ["export", folder / "images", "--out", out, "--weights", checkpoint, "--workers", "0"]
    assert run(capsys, *common, "--align", "grid")[0] == 3
    settings = json.loads((out / "export.json").read_text())
    before = settings_id(settings)
    del settings["align"]
    (out / "export.json").write_text(json.dumps(settings))
    assert settings_id(settings) == before
    code, _, err = run(capsys, *common)
    assert code == 1 and "align: 'grid' → 'rf'" in err
    code, stdout, _ = run(capsys, *common, "--align", "grid")
    assert code == 3 and "0 exported, 18 already done" in stdout


def test_masks_add_metrics_and_mask_files(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    _code, _, _err = run(capsys, "export", folder / "images", "--out", out, "--weights", checkpoint,
                       "--masks", folder / "masks", "--formats", "overlay,mask,panel",
                       "--workers", "0")  # fmt: skip
    records = outputs_of(out)
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert len(ok) == 12  # the copies under "odd names" have no mask: recorded as errors
    error = records["odd names/same.png"]["error"]  # where it looked, and no list-file rule
    assert "no mask" in error and str(folder / "masks" / "odd names" / "same") in error
    assert "list file" not in error
    for record in ok:
        assert 0.0 <= record["metrics"]["energy_in_mask"] <= 1.0
        mask = cv2.imread(str(out / record["outputs"]["mask"]), cv2.IMREAD_GRAYSCALE)
        truth = cv2.imread(str(folder / "masks" / record["key"]), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(mask > 0, truth > 0)
    rows = list(csv.DictReader((out / "summary.csv").read_text(encoding="utf-8").splitlines()))
    assert "pointing_game" in rows[0] and "energy_in_mask" in rows[0]


def test_bad_settings_are_refused(capsys, tmp_path, folder, checkpoint):
    images, out = folder / "images", tmp_path / "out"
    cases = [
        (["--formats", "overlay,gif"], "choose from overlay, raw, mask, panel"),
        (["--formats", "mask"], "needs --segmenter"),
        (["--class", "12"], "out of range"),
        (["--shard", "2/2"], "not valid"),
        (["--shard", "one"], "not K/N"),
        (["--layer", "layer9"], "layer9"),
    ]
    for extra, message in cases:
        code, _, err = run(capsys, "export", images, "--out", out, "--weights", checkpoint, *extra)
        assert code == 1 and message in err, (extra, err)
    code, _, err = run(capsys, "export", tmp_path / "nowhere", "--weights", checkpoint)
    assert code == 1 and "does not exist" in err
    code, _, err = run(capsys, "export", "--merge", tmp_path)
    assert code == 1 and "no camkit export" in err


def test_symlink_out_of_out_is_refused(capsys, tmp_path, folder, checkpoint):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out / "overlays").mkdir(parents=True)
    os.symlink(outside, out / "overlays" / "circle")  # a trap: writing circle/… would leave OUT
    code, _, _ = run(capsys, "export", folder / "images", "--out", out, "--weights", checkpoint,
                     "--workers", "0")  # fmt: skip
    assert code == 3 and not list(outside.iterdir())
    circles = [r for k, r in outputs_of(out).items() if k.startswith("circle/")]
    assert circles and all("outside" in r["error"] for r in circles)


def test_list_file_with_parent_paths_stays_inside_out(capsys, tmp_path, folder, checkpoint):
    lists = tmp_path / "lists"
    lists.mkdir()
    first = sorted((folder / "images").rglob("*.png"))[0]
    relative = os.path.relpath(first, lists)  # ../data/images/...
    (lists / "inputs.txt").write_text(f"{relative}\n{first}\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run(capsys, "export", lists / "inputs.txt", "--out", out, "--weights",
                       checkpoint, "--workers", "0")  # fmt: skip
    assert code == 0, err
    records = outputs_of(out)
    assert len(records) == 2
    for record in records.values():
        target = (out / record["outputs"]["overlay"]).resolve()
        assert target.is_relative_to(out.resolve()) and target.exists()
    assert (out / "overlays" / "__").is_dir()  # ".." became "__"


def test_overwrite_ignores_old_records_without_deleting_them(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    common = ["export", folder / "images", "--out", out, "--weights", checkpoint, "--workers", "0",
              "--shard", "0/2"]  # fmt: skip
    assert run(capsys, *common)[0] in (0, 3)
    part = out / "manifests" / "part-0-of-2.jsonl"
    before = len(records_in(part))
    _, stdout, _ = run(capsys, *common, "--method", "layercam", "--overwrite")
    assert "0 already done" in stdout  # the gradcam records do not count as done
    records = records_in(part)
    assert len(records) == 2 * before and len({r["settings"] for r in records}) == 2
    code, _, err = run(capsys, "export", "--merge", out)  # shard 1/2 never ran: refused
    assert code == 1 and "shard 1/2" in err and "--shard 1/2" in err
    merge(out, allow_incomplete=True)
    merged = read_manifest(out)
    assert len(merged) == before
    for record in (r for r in merged if r["status"] == "ok"):
        with np.load(out / record["outputs"]["raw"]) as raw:
            assert str(raw["method"]) == "layercam"
    settings = {r["settings"] for r in records_in(out / "manifest.jsonl")}
    assert len(settings) == 1


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _start_until(command: list[str], manifest: Path, lines: int, **popen) -> subprocess.Popen:
    """Start an export and return it, still running, once its manifest has ``lines`` records."""
    process = subprocess.Popen(command, **popen)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and len(records_in(manifest)) >= lines:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the export finished or failed before it could be stopped"
    return process


@pytest.mark.slow
def test_killed_run_resumes_with_every_image_once(tmp_path, checkpoint):
    data = tmp_path / "many"
    write_dataset(data, 60, size=96, seed=4)
    out = tmp_path / "out"
    command = [*CAMKIT, "export", str(data / "images"), "--out", str(out), "--weights",
               str(checkpoint), "--batch-size", "2", "--workers", "1", "--size", "96",
               "--formats", "overlay,raw,panel"]  # fmt: skip
    manifest = out / "manifest.jsonl"
    process = _start_until(command, manifest, 8, stdout=subprocess.DEVNULL)
    workers = _children(process.pid)  # the DataLoader worker
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.1)
    assert workers and not any(Path(f"/proc/{pid}").exists() for pid in workers)  # no orphans
    done = len(records_in(manifest))
    assert 8 <= done < 60
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write('{"key": "circle/half a rec')  # a record cut short by the kill
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stdout
    skipped = int(result.stdout.split(" already done")[0].split(", ")[-1])
    assert skipped >= done
    records = records_in(manifest)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 60  # merged: each image exactly once
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    for record in records:
        assert cv2.imread(str(out / record["outputs"]["overlay"])) is not None
        assert cv2.imread(str(out / record["outputs"]["panel"])) is not None
        with np.load(out / record["outputs"]["raw"]) as raw:
            assert np.isfinite(raw["maps"]).all()


@pytest.mark.slow
def test_ctrl_c_keeps_finished_images_and_leaves_no_partial_file(tmp_path, checkpoint):
    data = tmp_path / "many"
    write_dataset(data, 200, size=96, seed=4)
    out = tmp_path / "out"
    command = [*CAMKIT, "export", str(data / "images"), "--out", str(out), "--weights",
               str(checkpoint), "--batch-size", "2", "--workers", "2", "--size", "96"]  # fmt: skip
    # a shell that runs the suite in the background (`nohup … &`) hands SIGINT down ignored;
    # Ctrl-C at a terminal is the default handler, so the export gets that
    manifest = out / "manifest.jsonl"
    process = _start_until(
        command,
        manifest,
        6,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "rerun the same command to resume" in err
    records = records_in(manifest)
    assert 6 <= len(records) < 200
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    for record in records:
        assert cv2.imread(str(out / record["outputs"]["overlay"])) is not None
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and len(records_in(manifest)) == 200, result.stderr


def test_failures_come_back_with_their_reasons(monkeypatch, tmp_path, folder, checkpoint):
    """`camkit export list.txt --masks DIR` said "6 failed" and no more: the result now carries
    each failure's key and reason, and "no mask" says where it looked and how list keys form."""
    from camkit.models.resnet import load_classifier

    model, info = load_classifier(str(checkpoint))
    circles = sorted((folder / "images" / "circle").glob("*.png"))
    keys = [p.relative_to(tmp_path).as_posix() for p in circles]  # data/images/circle/…
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(keys) + "\n", encoding="utf-8")
    inputs = collect_inputs(listing)
    assert [i.list_file for i in inputs] == [listing] * len(keys)
    config = ExportConfig(Settings(size=64), workers=0, masks=folder / "masks", progress=False)
    counts = export(model, info, inputs, tmp_path / "out", config)
    assert counts["done"] == 0 and counts["failed"] == len(keys) >= 2
    assert [key for key, _ in counts["errors"]] == keys
    reason = dict(counts["errors"])[keys[0]]
    stem = keys[0].removesuffix(".png")
    assert "no mask" in reason and str(folder / "masks" / stem) in reason
    assert str(listing) in reason and "relative to the list file's folder" in reason
    # the same reason is in the manifest; only the first ERRORS_KEPT come back
    assert outputs_of(tmp_path / "out")[keys[0]]["error"] == reason
    monkeypatch.setattr("camkit.export.writer.ERRORS_KEPT", 1)
    config.retry_errors = True
    counts = export(model, info, inputs, tmp_path / "out", config)
    assert counts["failed"] == len(keys) and len(counts["errors"]) == 1


def test_an_interrupted_export_logs_no_done_line(monkeypatch, caplog, tmp_path, checkpoint):
    """Ctrl-C used to print "export: …, done in 3.1 s" just before "interrupted"."""
    import logging

    from camkit.export import runner
    from camkit.models.resnet import load_classifier

    model, info = load_classifier(str(checkpoint))
    explain_batch, calls = runner._explain_batch, []

    def interrupted_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return explain_batch(*args, **kwargs)

    monkeypatch.setattr(runner, "_explain_batch", interrupted_on_the_third)
    monkeypatch.setattr("camkit.progress.MIN_INTERVAL", 0.0)  # a line at every tenth
    config = ExportConfig(Settings(size=64, batch_size=2), workers=0, progress=None)
    with caplog.at_level(logging.INFO, logger="camkit.progress"), pytest.raises(KeyboardInterrupt):
        export(model, info, collect_inputs(write_dataset(tmp_path / "d", 12, size=64, seed=3)
                                           / "images"), tmp_path / "o", config)  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.name == "camkit.progress"]
    assert lines and all("done in" not in line for line in lines), lines
    assert len(records_in(tmp_path / "o" / "manifest.jsonl")) == 4  # the two finished batches
