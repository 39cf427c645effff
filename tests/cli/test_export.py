"""camkit export: the options follow explain (methods, --size, --class, masks)."""

import json

import numpy as np
import pytest

from tests.cli.helpers import one_line_error, run, write_image


@pytest.fixture
def photos(tmp_path):
    """Two images of different sizes."""
    write_image(tmp_path / "photos" / "a.png", 64, 64, seed=1)
    write_image(tmp_path / "photos" / "b.png", 96, 80, seed=2)
    return tmp_path / "photos"


def export(capsys, photos, out, *flags):
    return run(capsys, "export", photos, "--out", out, "--workers", 0, *flags)


def records(out) -> dict:
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["key"]: r for r in map(json.loads, lines)}


def raw(out, record):
    return np.load(out / record["outputs"]["raw"])


def test_every_method_of_explain_including_fcn(capsys, tmp_path, photos, checkpoint):
    out = tmp_path / "fcn"
    code, _, err = export(capsys, photos, out, "--weights", checkpoint, "--method", "fcn")
    assert code == 0, err
    for record in records(out).values():
        assert record["status"] == "ok" and str(raw(out, record)["method"]) == "fcn"


def test_size_zero_is_each_images_own_size(capsys, tmp_path, photos, checkpoint):
    out = tmp_path / "native"
    code, _, err = export(capsys, photos, out, "--weights", checkpoint, "--size", 0)
    assert code == 0, err
    found = records(out)
    assert list(raw(out, found["a.png"])["input_size"]) == [64, 64]
    assert list(raw(out, found["b.png"])["input_size"]) == [96, 80]
    assert json.loads((out / "export.json").read_text())["size"] in (0, None)  # native


def test_default_size_is_the_models(capsys, tmp_path, photos, checkpoint):
    out = tmp_path / "default"
    code, _, err = export(capsys, photos, out, "--weights", checkpoint, "--class", 2, 5)
    assert code == 0, err
    assert json.loads((out / "export.json").read_text())["size"] == 64  # the checkpoint's
    with raw(out, records(out)["b.png"]) as arrays:
        assert list(arrays["input_size"]) == [64, 64]
        assert sorted(arrays["class_ids"].tolist()) == [2, 5]  # --class takes several ids


def test_shared_checks(capsys, tmp_path, photos, checkpoint, segmenter_checkpoint):
    common = ["--weights", checkpoint]
    code, _, err = export(capsys, photos, tmp_path / "o", *common, "--class", 10)
    one_line_error(code, err, "--class 10 is out of range", "0–9")
    code, _, err = export(capsys, photos, tmp_path / "o", *common, "--masks", photos,
                          "--segmenter", segmenter_checkpoint)  # fmt: skip
    assert code == 2 and "not allowed with" in err
    code, _, err = export(capsys, photos, tmp_path / "o", *common, "--fusion", "max")
    one_line_error(code, err, "--fusion needs several layers: --layer layer4.2,layer3.5")


def test_several_layers_fused_as_in_explain(capsys, tmp_path, photos, checkpoint):
    out = tmp_path / "fused"
    code, _, err = export(capsys, photos, out, "--weights", checkpoint, "--layer",
                          "layer4.2,layer3.5", "--fusion", "max")  # fmt: skip
    assert code == 0, err
    assert {r["status"] for r in records(out).values()} == {"ok"}


@pytest.mark.slow
def test_export_a_transformer_by_name(capsys, tmp_path, photos):
    out = tmp_path / "out"
    flags = ["--model", "swin_t", "--weights", "none", "--formats", "overlay,raw"]
    code, _, err = export(capsys, photos, out, *flags)
    assert code == 0, err
    for record in records(out).values():  # (N, h, w, C) cells at 224 px: a 7×7 map
        assert record["layer"] == "features.7.1.norm1"
        maps = raw(out, record)["maps"]
        assert maps.shape[-2:] == (7, 7) and np.ptp(maps) > 0
