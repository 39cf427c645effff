"""camkit train: a line per epoch in a log file, resuming a finished run, learning nothing."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from camkit.data.shapes import write_dataset
from camkit.io.checkpoint import load_checkpoint
from camkit.models.resnet import load_classifier
from tests.cli.helpers import run

TINY = ["--size", "32", "--workers", "0", "--pretrained", "none"]


def test_a_log_file_gets_a_line_per_epoch_and_resume_says_it_is_done(tmp_path, capsys):
    train = write_dataset(tmp_path / "train", 8, 32, seed=0)
    val = write_dataset(tmp_path / "val", 4, 32, seed=1)
    out, log = tmp_path / "m.ckpt", tmp_path / "train.log"
    command = [sys.executable, "-m", "camkit.cli", "train", train, "--val", val, "--out", out]
    command += ["--epochs", "2", "--batch-size", "4", *TINY]
    root = Path(__file__).resolve().parents[2]
    with log.open("w") as stream:  # `camkit train … > log 2>&1`
        done = subprocess.run(
            [str(part) for part in command],
            stdout=stream,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            timeout=300,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    figures = r"train loss [\d.]+, val accuracy [\d.]+, val loss [\d.]+, [\d.]+ img/s, \d+ s"
    epochs = re.findall(rf"^epoch (\d)/2: {figures}, (about .+ left|done)$", text, re.MULTILINE)
    assert [epoch for epoch, _ in epochs] == ["1", "2"], text
    assert epochs[0][1].startswith("about") and epochs[1][1] == "done"
    assert text.rstrip().splitlines()[-1].startswith("epoch 2: validation accuracy")
    assert not (tmp_path / "m.ckpt.resume").exists()

    again = ["train", train, "--val", val, "--out", out, "--epochs", 2, "--batch-size", 4]
    code, printed, err = run(capsys, *again, "--resume", *TINY)
    assert code == 0, err
    assert "already finished its 2 epochs" in printed and "--epochs" in printed
    assert "validation accuracy" not in printed


def _same_image_everywhere(root: Path, per_class: int) -> Path:
    """``images/{a,b}/*.png``, all one noise image: the labels say nothing about the pixels."""
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for name in ("a", "b"):
        for index in range(per_class):
            (root / "images" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / name / f"{index}.png"), image)
    return root


def test_a_run_that_learned_nothing_says_so_and_explain_repeats_it(
    tmp_path, capsys, caplog, image_path
):
    train = _same_image_everywhere(tmp_path / "train", 8)
    val = _same_image_everywhere(tmp_path / "val", 2)
    out = tmp_path / "nothing.ckpt"
    caplog.set_level(logging.WARNING)
    command = ["train", train, "--val", val, "--out", out, "--batch-size", 8, "--keep-resume"]
    code, _, err = run(capsys, *command, *TINY)
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if "learned next to nothing" in r.message]
    assert len(warnings) == 1, caplog.text  # one warning, naming both numbers
    assert "accuracy 0.500 vs chance 0.500" in warnings[0] and "vs ln 2 = 0.693" in warnings[0]
    checkpoint = load_checkpoint(out)
    assert checkpoint["metrics"]["learned_nothing"] and len(checkpoint["warnings"]) == 1
    assert "optimizer" in load_checkpoint(tmp_path / "nothing.ckpt.resume")  # --keep-resume
    _model, info = load_classifier(out)
    assert info.learned_nothing and info.warnings == tuple(checkpoint["warnings"])

    code, _, err = run(capsys, "explain", image_path, "--weights", out, "--out", tmp_path / "x")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "learned next to nothing" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: --weights {out}: training learned")


def test_bad_out_and_values_are_refused_before_anything_trains(tmp_path, capsys):
    train = write_dataset(tmp_path / "train", 4, 32, seed=0)
    folder = tmp_path / "models"
    folder.mkdir()
    common = ["train", train, "--epochs", "1", "--batch-size", "4", *TINY]
    code, _, err = run(capsys, *common, "--out", folder)
    assert code != 0 and "is a folder" in err and "model.ckpt" in err
    assert os.listdir(folder) == [] and not list(tmp_path.glob(".*.tmp"))
    code, _, err = run(capsys, *common, "--out", train / "meta.json" / "m.ckpt")
    assert code != 0 and "is a file, not a folder" in err
    for value in ("1.5", "-1"):
        code, _, err = run(
            capsys, *common, "--out", tmp_path / "m.ckpt", "--label-smoothing", value
        )
        assert code != 0 and "label smoothing must be in [0, 1)" in err
    code, _, err = run(capsys, *common, "--out", tmp_path / "m.ckpt", "--lr", "0")
    assert code != 0 and "learning rate must be positive" in err
    assert not (tmp_path / "m.ckpt").exists()
