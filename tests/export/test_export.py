"""camkit export: resumable, atomic batch export with a manifest, summary and gallery."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from camkit.cli import main
from camkit.data.shapes import write_dataset
from camkit.export import TEMP_SUFFIX, ExportError, collect_inputs, output_names, read_manifest

CAMKIT = [sys.executable, "-m", "camkit.cli"]


@pytest.fixture
def folder(tmp_path) -> Path:
    """Twelve shapes images with masks, plus awkward names and broken files among them."""
    root = tmp_path / "data"
    write_dataset(root, 12, size=64, seed=3)
    images = root / "images"
    good = sorted(images.rglob("*.png"))[0]
    (images / "odd names").mkdir()
    shutil.copy(good, images / "odd names" / "ünïcode ✓ name.png")
    shutil.copy(good, images / "odd names" / "same.png")
    shutil.copy(good, images / "odd names" / "same.jpg.png")
    (images / "zero.png").write_bytes(b"")
    (images / "text.jpg").write_text("not an image at all")
    (images / "corrupt.png").write_bytes(good.read_bytes()[:200])
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def outputs_of(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in read_manifest(out)}


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
            assert raw["maps"].dtype == np.float16 and raw["maps"].shape == (1, 2, 2)
            assert str(raw["layer"]) == "layer4.2" and str(raw["method"]) == "gradcam"
            assert int(raw["class_ids"][0]) == record["targets"][0]["class_id"]
        assert record["top"][0]["name"] in ("circle", "square", "triangle", "star", *"efghij")
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


def test_masks_add_metrics_and_mask_files(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    _code, _, _err = run(capsys, "export", folder / "images", "--out", out, "--weights", checkpoint,
                       "--masks", folder / "masks", "--formats", "overlay,mask,panel",
                       "--workers", "0")  # fmt: skip
    records = outputs_of(out)
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert len(ok) == 12  # the copies under "odd names" have no mask: recorded as errors
    assert "no mask" in records["odd names/same.png"]["error"]
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


def test_inputs_from_a_glob_and_a_list_file(tmp_path, folder):
    images = folder / "images"
    flat = collect_inputs(str(images) + "/circle/*.png")  # keys relative to the fixed part
    assert flat and all("/" not in i.key and i.path.parent.name == "circle" for i in flat)
    deep = collect_inputs(str(images) + "/**/*.png")
    assert {i.key for i in deep} >= {f"circle/{i.key}" for i in flat}
    listing = tmp_path / "list.txt"
    first = sorted(images.rglob("*.png"))[0]
    listing.write_text(f"# a comment\n{first}\n\ndata/images/zero.png\n../elsewhere/x.png\n")
    keys = [i.key for i in collect_inputs(listing)]
    assert keys == sorted(
        [first.as_posix().lstrip("/"), "data/images/zero.png", "../elsewhere/x.png"]
    )
    with pytest.raises(ExportError, match="does not exist"):
        collect_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no images"):
        collect_inputs(tmp_path / "empty")


def test_output_names_stay_inside_and_never_collide():
    keys = ["../../etc/passwd.png", "a/../b.png", "/abs/x.png", "A.png", "a.png", "a.jpg",
            "x\x00y\n.png", "sub/ünï code.png", "sub/ünï code.jpg"]  # fmt: skip
    names = output_names(keys)
    assert len(set(n.lower() for n in names.values())) == len(keys)
    for name in names.values():
        parts = name.split("/")
        assert ".." not in parts and "." not in parts and not name.startswith("/")
        assert all(c >= " " for c in name)
    assert names["sub/ünï code.png"].startswith("sub/ünï code")
    assert output_names(["a.png", "b.png"]) == {"a.png": "a", "b.png": "b"}


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


def _lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def _start_until(command: list[str], manifest: Path, lines: int, **popen) -> subprocess.Popen:
    """Start an export and return it, still running, once its manifest has ``lines`` records."""
    process = subprocess.Popen(command, **popen)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and len(_lines(manifest)) >= lines:
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
    done = len(_lines(manifest))
    assert 8 <= done < 60
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write('{"key": "circle/half a rec')  # a record cut short by the kill
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "already done" in result.stdout
    skipped = int(result.stdout.split(" already done")[0].split(", ")[-1])
    assert skipped >= done
    records = _lines(manifest)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 60  # merged: each image exactly once
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    for record in records:
        assert cv2.imread(str(out / record["outputs"]["overlay"])) is not None
        assert cv2.imread(str(out / record["outputs"]["panel"])) is not None
        with np.load(out / record["outputs"]["raw"]) as raw:
            assert np.isfinite(raw["maps"]).all()


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
    first, second = ({r["key"] for r in _lines(p)} for p in parts)
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
        assert a[key]["top"][0]["class_id"] == b[key]["top"][0]["class_id"]
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


def gallery_driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    browser = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("Chromium or chromedriver is not installed (CI installs both)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--allow-file-access-from-files", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_gallery_renders_in_headless_chromium(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    run(capsys, "export", folder / "images", "--out", out, "--weights", checkpoint,
        "--masks", folder / "masks", "--workers", "0")  # fmt: skip
    driver = gallery_driver()
    try:
        driver.get((out / "index.html").as_uri())
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        figures = driver.find_elements(By.CSS_SELECTOR, "figure")
        assert len(figures) == 18
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(
                "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        assert driver.execute_script("return document.images.length") == 12
        widths = driver.execute_script("return [...document.images].map(i => i.naturalWidth)")
        assert set(widths) == {64}
        sources = driver.execute_script("return [...document.images].map(i => i.src)")
        links = driver.execute_script(
            "return [...document.querySelectorAll('figure a')].map(a => a.href)"
        )
        assert all("/thumbs/" in src and src.endswith(".jpg") for src in sources)
        assert len(links) == 12 and all("/overlays/" in link for link in links)
        errors = driver.find_elements(By.CSS_SELECTOR, "figure.error")
        assert len(errors) == 6 and "error" in errors[0].text
        scores = driver.execute_script(
            "return [...document.querySelectorAll('figure:not(.error) figcaption')]"
            ".map(c => parseFloat(c.textContent.split(' s=')[1]))"
        )
        assert scores == sorted(scores, reverse=True)  # sorted by score by default
        Select(driver.find_element(By.ID, "sort")).select_by_value("metric:energy_in_mask")
        keys = driver.execute_script(
            "return [...document.querySelectorAll('figure')].map(f => f.dataset.key)"
        )
        records = outputs_of(out)
        energy = [records[k].get("metrics", {}).get("energy_in_mask", -1) for k in keys[:12]]
        assert energy == sorted(energy, reverse=True)
    finally:
        driver.quit()


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
    records = _lines(manifest)
    assert 6 <= len(records) < 200
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    for record in records:
        assert cv2.imread(str(out / record["outputs"]["overlay"])) is not None
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and len(_lines(manifest)) == 200, result.stderr


def test_overwrite_ignores_old_records_without_deleting_them(capsys, tmp_path, folder, checkpoint):
    out = tmp_path / "out"
    common = ["export", folder / "images", "--out", out, "--weights", checkpoint, "--workers", "0",
              "--shard", "0/2"]  # fmt: skip
    assert run(capsys, *common)[0] in (0, 3)
    part = out / "manifests" / "part-0-of-2.jsonl"
    before = len(_lines(part))
    _, stdout, _ = run(capsys, *common, "--method", "layercam", "--overwrite")
    assert "0 already done" in stdout  # the gradcam records do not count as done
    records = _lines(part)
    assert len(records) == 2 * before and len({r["settings"] for r in records}) == 2
    assert run(capsys, "export", "--merge", out)[0] in (0, 3)
    merged = read_manifest(out)
    assert len(merged) == before
    for record in (r for r in merged if r["status"] == "ok"):
        with np.load(out / record["outputs"]["raw"]) as raw:
            assert str(raw["method"]) == "layercam"
    settings = {r["settings"] for r in _lines(out / "manifest.jsonl")}
    assert len(settings) == 1


def test_thumbnails_are_small_jpegs_never_enlarged():
    from camkit.export import THUMB_SIDE, _thumbnail

    big = np.zeros((600, 1000, 3), np.uint8)
    big[:, 500:] = (255, 0, 0)  # RGB red on the right
    thumb = cv2.imdecode(np.frombuffer(_thumbnail(big), np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (154, THUMB_SIDE, 3)
    assert thumb[77, 200, 2] > 200 and thumb[77, 50].max() < 30  # red stays red (BGR on disk)
    small = np.full((40, 30, 3), 128, np.uint8)
    assert cv2.imdecode(np.frombuffer(_thumbnail(small), np.uint8), 1).shape == (40, 30, 3)
