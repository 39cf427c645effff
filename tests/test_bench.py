"""The Score-CAM engine benchmark runs end to end on a small input and writes what the README
quotes (the engines' timings themselves are never asserted)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_bench_forward_writes_engines_and_ceiling(tmp_path, capsys):
    import bench_forward

    out = tmp_path / "forward.json"
    argv = ["--size", "64", "--batch", "8", "--images", "1", "--repeats", "1", "--no-spread"]
    assert bench_forward.main([*argv, "--engines", "camkit", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["engine"]: row for row in result["rows"]}
    assert set(rows) == {"eager", "camkit"}
    # camkit's engine is the same function as the model: logits equal to float rounding
    assert rows["camkit"]["max_abs_logit_difference"] < 1e-3
    assert rows["eager"]["vs_eager"] == 1.0
    assert result["channels"] == 2048 and 1 <= result["distinct_masks"][0] <= 2048
    assert "ceiling of one-class Score-CAM" in capsys.readouterr().out


def test_weight_spread_on_a_few_channels():
    import bench_forward
    from bench_methods import load_model, make_images

    model = load_model(None, torch.device("cpu"))
    images = make_images("noise", 1, 64, torch.device("cpu"))
    activations, masks = bench_forward.score_cam_masks(model, images)
    spread = bench_forward.weight_spread(model, images[0], activations[0, :24], masks[0, :24], 8)
    assert 1 <= spread["channels_for_90_percent"] <= spread["channels_for_99_percent"] <= 24
    assert 0 <= spread["bfloat16_max_map_change"] <= 1
    assert spread["bfloat16_max_score_error"] >= 0


def test_bench_alignment_table_json_and_figure(tmp_path, capsys):
    import bench_alignment

    out, picture = tmp_path / "alignment.json", tmp_path / "alignment.png"
    argv = ["--weights", "none", "--n-test", "4", "--n-pairs", "2", "--difficulties", "hard"]
    argv += ["--flips"]
    assert bench_alignment.main([*argv, "--out", str(out), "--figure", str(picture)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    for flip in result["flips"]:  # the two parts add up to each mean offset
        parts = np.array(flip["object_tied"]), np.array(flip["frame_tied"])
        np.testing.assert_allclose(parts[0] + parts[1], flip["plain"])
        np.testing.assert_allclose(parts[0] - parts[1], flip["flipped_back"])
    assert len(result["flips"]) == 4
    assert [(r["output_stride"], r["align"]) for r in rows] == [
        (32, "grid"), (32, "rf"), (16, "grid"), (16, "rf")
    ]  # fmt: skip
    assert all(r["difficulty"] == "hard" and r["n_test"] == 4 for r in rows)
    table = capsys.readouterr().out
    assert table.count("| hard |") == 8 and "centroid dx" in table and "frame-tied" in table
    import cv2

    assert cv2.imread(str(picture)).shape[0] > 2 * 192


def test_bench_alignment_size_resizes_for_the_network_only(tmp_path):
    import bench_alignment

    out = tmp_path / "alignment.json"
    argv = ["--weights", "none", "--n-test", "2", "--n-pairs", "1", "--difficulties", "hard"]
    assert bench_alignment.main([*argv, "--size", "129", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["size"] == 129
    cells = {r["output_stride"]: r["map_size"] for r in result["rows"]}
    assert cells == {32: [5, 5], 16: [9, 9]}  # 129 px in: cell centres 0 … 128
    assert all(r["input_size"] == 129 for r in result["rows"])


def test_bench_turn_average_rows_for_both_strides(tmp_path, capsys):
    import bench_turn_average

    out = tmp_path / "turn.json"
    argv = ["--weights", "none", "--n-test", "3", "--n-pairs", "2", "--out", str(out)]
    assert bench_turn_average.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["output_stride"], r["maps"]) for r in rows] == [
        (32, "plain"), (32, "turn-averaged"), (16, "plain"), (16, "turn-averaged")
    ]  # fmt: skip
    assert all(0 <= r["pointing_game"] <= 1 and 0 <= r["two_object_own_max"] <= 1 for r in rows)
    assert capsys.readouterr().out.count("| 16 |") == 2


def test_bench_two_object_places_every_maximum(tmp_path, capsys):
    import bench_two_object

    out = tmp_path / "two.json"
    assert bench_two_object.main(["--weights", "none", "--n-pairs", "3", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["output_stride"], r["align"]) for r in rows] == [
        (32, "rf"), (32, "grid"), (16, "rf"), (16, "grid")
    ]  # fmt: skip
    for row in rows:
        assert abs(row["own"] + row["other"] + row["neither"] - 1) < 1e-9
        assert row["own"] <= row["a_cell_could"] <= 1
        assert sum(band["maps"] for band in row["bands"].values()) == 6  # 3 pairs, 2 classes
    assert capsys.readouterr().out.count("| 32 |") == 2


def test_sweep_models_reports_each_model_and_refusals(tmp_path, capsys):
    import sweep_models

    out = tmp_path / "models.json"
    argv = ["--models", "resnet18,squeezenet1_1,vit_b_16", "--size", "64", "--repeats", "1"]
    assert sweep_models.main([*argv, "--out", str(out)]) == 0
    rows = {row["model"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["resnet18"]["status"] == "ok" and rows["resnet18"]["path"] == "closed-form"
    assert rows["resnet18"]["align"] == "rf 0+32·i (derived)"
    assert rows["squeezenet1_1"]["status"] == "ok" and rows["squeezenet1_1"]["grid"] == "3×3"
    vit = rows["vit_b_16"]  # tokens (N, 1 + 14·14, C) at its one input size, 224
    assert vit["status"] == "ok" and vit["grid"] == "14×14" and vit["path"] == "activation-grad"
    assert vit["layer"] == "encoder.layers.encoder_layer_11.ln_1"
    assert vit["align"] == "rf 7.5+16·i (patch)"
    assert "| resnet18 | `layer4.1` |" in capsys.readouterr().out


def test_bench_segmenter_maps_table_and_json(tmp_path, capsys, checkpoint):
    import bench_segmenter_maps

    from camkit.data.shapes import write_dataset
    from camkit.io.checkpoint import save_checkpoint
    from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
    from camkit.models.resunet import ResUNet

    torch.manual_seed(0)
    segmenter = ResUNet("unet", 1, encoder_channels=256, prior=0.5)
    seg = save_checkpoint(tmp_path / "seg.ckpt", segmenter.state_dict(), kind="segmenter",
                          arch="unet", classes=1, encoder_channels=256, input_size=64,
                          mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))  # fmt: skip
    data = write_dataset(tmp_path / "data", 3, 64, seed=3)
    out = tmp_path / "maps.json"
    argv = ["--classifier", str(checkpoint), "--segmenter", str(seg), "--data", str(data)]
    argv += ["--n", "3", "--segmenter-maps", "gradcam:layer4,layercam:layer3", "--out", str(out)]
    assert bench_segmenter_maps.main(argv) == 0
    result = json.loads(out.read_text())
    assert [(c["method"], c["layer"]) for c in result["configs"]] == [
        ("gradcam", "layer4"), ("layercam", "layer3")
    ]  # fmt: skip
    assert result["n"] == 3 and result["configs"][1]["map_size"] == [4, 4]
    table = capsys.readouterr().out
    assert table.count("| segmenter |") == 2 and table.count("| classifier |") == 1
    per_image = result["configs"][0]["per_image"]
    assert len(per_image["key"]) == 3 and len(per_image["segmenter_energy_in_mask@true"]) == 3


def test_bench_seg_training_times_each_setting(tmp_path, capsys):
    import bench_seg_training

    out = tmp_path / "seg.json"
    argv = ["--size", "64", "--batch-size", "2", "--steps", "1", "--out", str(out)]
    assert bench_seg_training.main(argv) == 0
    rates = json.loads(out.read_text())["images_per_s"]
    assert set(rates) == set(bench_seg_training.SETTINGS) and min(rates.values()) > 0
    assert "bf16 + channels-last" in capsys.readouterr().out


def test_bench_training_records_the_run_it_made(tmp_path):
    import bench_training

    out, ckpt = tmp_path / "training.json", tmp_path / "stream.ckpt"
    argv = ["stream", "--images", "64", "--size", "64", "--seed", "3"]
    assert bench_training.main([*argv, "--ckpt", str(ckpt), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["runs"]["stream"]
    assert row["command"] == "bench_training.py stream --images 64 --size 64 --seed 3"
    assert row["images_seen"] == 64 and row["recipe"]["seed"] == 3 and row["val_count"] == 300
    with pytest.raises(SystemExit):  # camkit train has no seed to pass on
        bench_training.main(["folder", str(tmp_path), "--seed", "1"])


def test_bench_training_times_the_optimizers_beside_the_other_runs(tmp_path):
    import bench_training

    out = tmp_path / "training.json"
    out.write_text(json.dumps({"runs": {"stream": {"seconds": 1.0}}}))
    assert bench_training.main(["optimizer", "--steps", "1", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert runs["stream"] == {"seconds": 1.0}  # kept
    row = runs["optimizer"]
    assert set(row["step_ms"]) == {"default", "foreach", "fused"} and row["tensors"] == 161
    assert min(row["step_ms"].values()) > 0 and row["fused_speedup"] > 0
