import pytest
import torch

from camkit.cli import main
from camkit.data.shapes import write_dataset
from camkit.io.checkpoint import load_checkpoint
from camkit.models.resnet import load_classifier
from camkit.training.classifier import TrainConfig, train_classifier


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_dataset(root / "train", 24, 48, seed=0), write_dataset(root / "val", 8, 48, seed=1)


def test_train_writes_checkpoint_with_metadata_and_resumes(tmp_path, tiny_data):
    train, val = tiny_data
    config = TrainConfig(epochs=2, size=48, batch_size=8, workers=0, pretrained="none")
    out = tmp_path / "c.ckpt"

    def crash(metrics):
        assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["epoch"] == 1
        raise KeyboardInterrupt  # the run dies after its first epoch

    with pytest.raises(KeyboardInterrupt):
        train_classifier(train, out, config, val_data=val, progress=False, on_epoch=crash)
    checkpoint = load_checkpoint(out)
    assert checkpoint["class_names"] == ["circle", "square", "star", "triangle"]
    assert (
        checkpoint["input_size"] == 48
        and checkpoint["channels"] == 2048
        and checkpoint["epoch"] == 1
    )
    first = {k: v.clone() for k, v in checkpoint["state_dict"].items()}
    with pytest.raises(ValueError, match="pass --epochs 2"):
        train_classifier(
            train, out, TrainConfig(epochs=3, size=48, workers=0), val_data=val, resume=True
        )
    metrics = train_classifier(train, out, config, val_data=val, resume=True, progress=False)
    resumed = load_checkpoint(out)
    assert metrics["epoch"] == 2 and len(resumed["history"]) == 2
    assert not torch.equal(first["fc.weight"], resumed["state_dict"]["fc.weight"])
    _model, info = load_classifier(out)
    assert info.num_classes == 4 and info.input_size == 48


def test_train_split_and_errors(tmp_path, tiny_data):
    train, _ = tiny_data
    config = TrainConfig(epochs=1, size=48, batch_size=64, workers=0, pretrained="none")
    with pytest.raises(ValueError, match="no training batches"):
        train_classifier(train, tmp_path / "x.ckpt", config, progress=False)
    with pytest.raises(FileNotFoundError, match="not in the torch cache"):
        train_classifier(
            train,
            tmp_path / "x.ckpt",
            TrainConfig(pretrained="imagenet", workers=0),
            progress=False,
        )


def test_cli_data_and_train(tmp_path, capsys):
    assert main(["data", "shapes", "--out", str(tmp_path / "d"), "--n", "16", "--size", "48"]) == 0
    code = main(
        [
            "train",
            str(tmp_path / "d"),
            "--out",
            str(tmp_path / "m.ckpt"),
            "--size",
            "48",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--pretrained",
            "none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "validation accuracy" in out and (tmp_path / "m.ckpt").exists()
