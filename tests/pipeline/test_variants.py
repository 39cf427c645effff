import csv
import json
import shutil

import pytest
import torch

from camkit.cli import main
from camkit.core.probe import LayerProbe
from camkit.data.shapes import write_dataset
from camkit.explainer import Explainer
from camkit.io.checkpoint import save_checkpoint
from camkit.models.resnet import load_classifier, rank_channels, resnet50_variant, variant_from
from camkit.pipeline.variants import compare_variants
from camkit.training.variants import make_variant
from tests.conftest import perturb


@pytest.fixture(scope="module")
def parent():
    torch.manual_seed(0)
    return perturb(resnet50_variant(2048, num_classes=4))


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))


def run(model, images, layer="layer4.2"):
    with LayerProbe(model, layer) as probe, torch.no_grad():
        logits = model(images)
    return logits, probe.activations[layer]


@pytest.mark.parametrize("channels", [64, 512, 2048, 3072])
def test_surgery_keeps_each_kept_channel_exactly(parent, x, channels):
    variant, kept = variant_from(parent, channels)
    assert variant.layer4[2].conv3.out_channels == channels and variant.fc.in_features == channels
    parent_logits, parent_maps = run(parent, x)
    logits, maps = run(variant, x)
    count = len(kept)
    torch.testing.assert_close(maps[:, :count], parent_maps[:, kept], rtol=1e-5, atol=1e-5)
    if channels >= 2048:  # every parent channel kept: the parent's logits
        scale = parent_logits.abs().max()
        assert (logits - parent_logits).abs().max() / scale <= 1e-5
    else:  # the best-C approximation: the kept channels are those with the largest head weights
        assert set(kept) == set(rank_channels(parent)[:channels].tolist())
        assert not torch.allclose(logits, parent_logits)


def test_explicit_keep_reorder_and_variant_of_variant(parent, x):
    reordered, _kept = variant_from(parent, 2048, keep=list(range(2047, -1, -1)))
    parent_logits, _ = run(parent, x)
    logits, _ = run(reordered, x)
    assert (logits - parent_logits).abs().max() / parent_logits.abs().max() <= 1e-5
    small, _ = variant_from(parent, 512)
    grown, _ = variant_from(small, 700)  # a parent with a projection shortcut
    torch.testing.assert_close(run(grown, x)[0], run(small, x)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="distinct channels"):
        variant_from(parent, 10, keep=[1, 1])
    with pytest.raises(ValueError, match="distinct channels"):
        variant_from(parent, 10, keep=[5000])
    with pytest.raises(ValueError, match="only 2"):
        variant_from(parent, 2, keep=[1, 2, 3])


@pytest.mark.parametrize("channels", [64, 2048])
def test_variant_explains_on_every_path(parent, x, channels):
    variant, _ = variant_from(
        parent, channels, keep=None if channels != 2048 else [*list(range(1, 2048)), 0]
    )
    closed = Explainer(variant, "layer4.2")(x, "all")
    activation = Explainer(variant, "layer4.2", path="activation-grad")(x, "all")
    reference = Explainer(variant, "layer4.2", path="autograd")(x, "all")
    assert closed.path == "closed-form"
    scale = reference.maps.abs().max()
    assert (closed.maps - reference.maps).abs().max() / scale <= 1e-5
    assert (activation.maps - reference.maps).abs().max() / scale <= 1e-5
    assert Explainer(variant, "layer3.5")(x).path == "activation-grad"


def test_variant_checkpoint_round_trip_and_wrong_channels(tmp_path, parent, x):
    variant, _ = variant_from(parent, 300)
    path = save_checkpoint(
        tmp_path / "v.ckpt", variant.state_dict(), arch="resnet50", channels=300, num_classes=4
    )
    loaded, info = load_classifier(path)
    assert info.channels == 300
    torch.testing.assert_close(run(loaded, x)[0], run(variant, x)[0])
    wrong = save_checkpoint(
        tmp_path / "w.ckpt", variant.state_dict(), arch="resnet50", channels=512, num_classes=4
    )
    with pytest.raises(
        ValueError, match=r"has shape \(300, 512, 1, 1\), expected \(512, 512, 1, 1\)"
    ):
        load_classifier(wrong)
    plain = tmp_path / "plain.pt"
    torch.save(variant.state_dict(), plain)  # no metadata: C is read from the weights
    assert load_classifier(plain)[1].channels == 300


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    train = write_dataset(root / "train", 24, 48, seed=0)
    val = write_dataset(root / "val", 8, 48, seed=1)
    torch.manual_seed(0)
    model = perturb(resnet50_variant(2048, 4))
    parent_path = save_checkpoint(
        root / "parent.ckpt",
        model.state_dict(),
        arch="resnet50",
        channels=2048,
        num_classes=4,
        class_names=["circle", "square", "star", "triangle"],
        input_size=48,
    )
    return root, train, val, parent_path


def test_make_variant_trains_only_what_changed(study):
    root, train, val, parent_path = study
    from camkit.training.classifier import TrainConfig

    report = make_variant(
        parent_path,
        64,
        train,
        root / "v64.ckpt",
        epochs=1,
        val_data=val,
        config=TrainConfig(size=48, batch_size=8, workers=0),
        progress=False,
    )
    assert report.channels == 64 and report.before["count"] == 8
    assert 0 <= report.before["prediction_agreement"] <= 1
    parent, _ = load_classifier(parent_path)
    tuned, info = load_classifier(root / "v64.ckpt")
    assert info.channels == 64
    frozen = (
        "conv1.weight",
        "layer1.0.bn1.running_mean",
        "layer4.1.conv2.weight",
        "layer4.2.conv1.weight",
    )
    parent_state = parent.state_dict()
    for key in frozen[:3]:
        assert torch.equal(tuned.state_dict()[key], parent_state[key]), key
    assert not torch.equal(
        tuned.state_dict()["layer4.2.conv1.weight"], parent_state["layer4.2.conv1.weight"]
    )


def test_make_variant_keeps_the_parents_class_order(study):
    root, train, val, _ = study
    from camkit.training.classifier import TrainConfig

    order = ["triangle", "star", "square", "circle"]  # not the folder's sorted order
    torch.manual_seed(0)
    parent = save_checkpoint(root / "reversed.ckpt", perturb(resnet50_variant(2048, 4)).state_dict(),
                             arch="resnet50", channels=2048, num_classes=4, class_names=order,
                             input_size=48)  # fmt: skip
    config = TrainConfig(size=48, batch_size=8, workers=0)
    make_variant(parent, 64, train, root / "r64.ckpt", epochs=1, val_data=val, config=config,
                 progress=False)  # fmt: skip
    assert list(load_classifier(root / "r64.ckpt")[1].class_names) == order


def test_compare_variants_tables_and_figure(study, tmp_path):
    root, train, val, parent_path = study
    make_variant(parent_path, 128, train, root / "v128.ckpt", epochs=0, val_data=val)
    result = compare_variants(
        [parent_path, parent_path, root / "v128.ckpt"], val, tmp_path / "cmp", limit=8
    )
    assert [row["channels"] for row in result["variants"]] == [2048, 2048, 128]
    same = result["agreement"][0]
    assert same["spearman"] == pytest.approx(1.0) and same["iou_top20"] == pytest.approx(1.0)
    assert all(0 <= row["pointing_game"] <= 1 for row in result["variants"])
    rows = list(csv.DictReader((tmp_path / "cmp" / "variants.csv").read_text().splitlines()))
    assert len(rows) == 3 and (tmp_path / "cmp" / "agreement.csv").exists()
    assert (tmp_path / "cmp" / "variants.png").exists()


def test_variant_cli(study, tmp_path, capsys):
    _root, train, val, parent_path = study
    code = main(
        [
            "variant",
            "--channels",
            "32",
            "--from",
            str(parent_path),
            "--data",
            str(train),
            "--val",
            str(val),
            "--out",
            str(tmp_path / "v32.ckpt"),
            "--epochs",
            "0",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "surgery 2048→32" in out and "max |Δlogit|" in out
    code = main(
        [
            "variants",
            "compare",
            str(parent_path),
            str(tmp_path / "v32.ckpt"),
            "--data",
            str(val),
            "--out",
            str(tmp_path / "cmp"),
            "--n",
            "8",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "C=32" in out and "Spearman" in out
    shutil.copytree(val / "images", tmp_path / "unmasked" / "images")  # no masks/: n/a, not NaN
    code = main(["variants", "compare", str(parent_path), str(tmp_path / "unmasked"), "--n", "4",
                 "--json", "--out", str(tmp_path / "u")])  # fmt: skip
    out, err = capsys.readouterr()
    rows = json.loads(out, parse_constant=lambda token: pytest.fail(f"{token} in JSON"))
    assert code == 0 and rows["variants"][0]["pointing_game"] is None, err
    assert main(["variant", "--channels", "32", "--from", str(parent_path), "--data", str(train),
                 "--out", str(tmp_path / "v.ckpt"), "--epochs", "-1"]) == 2  # fmt: skip
    assert "expected a whole number ≥ 0" in capsys.readouterr().err
    assert main(["layers", "--weights", str(tmp_path / "v32.ckpt"), "--size", "64"]) == 0
    assert "32×2×2" in capsys.readouterr().out
    assert (
        main(
            [
                "explain",
                str(next((val / "images" / "circle").iterdir())),
                "--weights",
                str(tmp_path / "v32.ckpt"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
