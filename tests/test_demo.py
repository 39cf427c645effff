"""The demo's promises, with the demo's own settings (slow: trains a ResNet-50 for one epoch)."""

import json

import pytest

from camkit.cli import main
from camkit.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_meets_its_targets_and_reuses_the_model(demo_dir, capsys):
    config = DemoConfig(out=str(demo_dir))
    summary = run_demo(config, quiet=True)
    assert summary["training"]["val_accuracy"] >= 0.95
    dense = summary["localisation"]["output stride 16"]
    assert dense["accuracy"] >= 0.95
    assert dense["pointing_game"] >= 0.90
    assert dense["two_object_own_max"] >= 0.85
    assert "output stride 32" in summary["localisation"]  # the native network is reported too
    segmenter = summary["segmentation"]["unet"]
    assert segmenter["images"] == 200 and segmenter["iou"] >= 0.85
    report = demo_dir / "report"
    assert (report / "index.html").exists() and (report / "pairs.png").exists()
    assert len(list((report / "panels").glob("*.png"))) == config.panels
    assert (
        json.loads((report / "metrics.json").read_text())["localisation"] == summary["localisation"]
    )
    checkpoints = {p: p.stat().st_mtime_ns for p in demo_dir.glob("*.ckpt")}
    assert main(["demo", "--out", str(demo_dir)]) == 0  # cached: no retraining
    assert checkpoints and {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    out, err = capsys.readouterr()
    assert "reusing the trained classifier" in err and "reusing the trained segmenter" in err
    assert "pointing" in out and "ResUNet unet" in out and "report:" in out


def test_demo_root_finds_the_demo_from_a_subfolder(tmp_path, monkeypatch):
    from camkit.demo import demo_root

    monkeypatch.delenv("CAMKIT_DEMO_DIR", raising=False)
    (tmp_path / "camkit-demo").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert demo_root() == tmp_path / "notebooks" / "camkit-demo"  # nothing trained yet
    (tmp_path / "camkit-demo" / "classifier.ckpt").write_bytes(b"")
    assert demo_root() == tmp_path / "camkit-demo"
    monkeypatch.setenv("CAMKIT_DEMO_DIR", str(tmp_path / "elsewhere"))
    assert demo_root() == tmp_path / "elsewhere"
