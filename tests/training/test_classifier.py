import logging
import math
import shutil
from dataclasses import replace

import pytest
import torch

from camkit.cli import main
from camkit.data.shapes import write_dataset
from camkit.io.checkpoint import load_checkpoint, save_checkpoint
from camkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD, load_classifier, resnet50_variant
from camkit.training.classifier import TrainConfig, train_classifier
from camkit.training.resume import resume_path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_dataset(root / "train", 24, 48, seed=0), write_dataset(root / "val", 8, 48, seed=1)


MAX_BYTES = 110e6  # a ResNet-50's weights are ~94 MiB; with AdamW's state it was ~283 MiB


def _slim(path) -> dict:
    """The checkpoint at ``path``, checked to hold weights and metadata only."""
    checkpoint = load_checkpoint(path)
    assert "optimizer" not in checkpoint and "schedule" not in checkpoint
    assert path.stat().st_size < MAX_BYTES
    return checkpoint


def test_train_writes_checkpoint_with_metadata_and_resumes(tmp_path, tiny_data, caplog):
    train, val = tiny_data
    config = TrainConfig(epochs=2, size=48, batch_size=8, workers=0, pretrained="none")
    out = tmp_path / "c.ckpt"
    caplog.set_level(logging.INFO, logger="camkit.progress")
    caplog.set_level(logging.INFO, logger="camkit.training.resume")

    def crash(metrics):
        assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["epoch"] == 1
        lines = [r.getMessage() for r in caplog.records if r.name == "camkit.progress"]
        assert [line for line in lines if line.startswith("epoch 1/2: train loss ")]
        raise KeyboardInterrupt  # the run dies after its first epoch

    with pytest.raises(KeyboardInterrupt):
        train_classifier(train, out, config, val_data=val, progress=None, on_epoch=crash)
    checkpoint = _slim(out)
    assert checkpoint["class_names"] == ["circle", "square", "star", "triangle"]
    assert (
        checkpoint["input_size"] == 48
        and checkpoint["channels"] == 2048
        and checkpoint["epoch"] == 1
    )
    state = load_checkpoint(resume_path(out))  # what --resume continues from
    assert state["epoch"] == 1 and {"optimizer", "schedule"} <= set(state)
    first = {k: v.clone() for k, v in checkpoint["state_dict"].items()}
    with pytest.raises(ValueError, match="pass --epochs 2"):
        train_classifier(
            train,
            out,
            TrainConfig(epochs=3, size=48, batch_size=8, workers=0),
            val_data=val,
            resume=True,
        )
    metrics = train_classifier(train, out, config, val_data=val, resume=True, progress=False)
    resumed = _slim(out)
    assert metrics["epoch"] == 2 and len(resumed["history"]) == 2
    assert not resume_path(out).exists()  # removed at the end
    assert not torch.equal(first["fc.weight"], resumed["state_dict"]["fc.weight"])
    _model, info = load_classifier(out)
    assert info.num_classes == 4 and info.input_size == 48
    # resuming the finished run trains nothing and says so
    again = train_classifier(
        train, out, config, val_data=val, resume=True, progress=False, on_epoch=pytest.fail
    )
    assert again == metrics
    assert "already finished its 2 epochs" in caplog.text


@pytest.mark.parametrize(("batch_size", "steps"), [(24, 1), (6, 4)])
def test_runs_of_one_and_four_steps(tmp_path, tiny_data, batch_size, steps):
    """4 steps at a 25 % warm-up divided by zero in torch's OneCycleLR."""
    train, val = tiny_data
    config = TrainConfig(epochs=1, size=48, batch_size=batch_size, workers=0, pretrained="none")
    out = tmp_path / "c.ckpt"
    keep = steps == 1
    metrics = train_classifier(train, out, config, val_data=val, progress=False, keep_resume=keep)
    assert metrics["epoch"] == 1 and math.isfinite(metrics["val_loss"])
    _slim(out)
    assert resume_path(out).exists() == keep
    if keep:
        state = load_checkpoint(resume_path(out))
        assert state["schedule"]["step"] == steps and state["schedule"]["total_steps"] == steps


def test_a_checkpoint_from_before_resume_files_resumes(tmp_path, tiny_data):
    """Checkpoints used to carry the optimizer and torch OneCycleLR state inside."""
    train, val = tiny_data
    out = _old_style_checkpoint(tmp_path / "old.ckpt", epochs=2, batches=3)
    _model, info = load_classifier(out)  # what explain does
    assert info.class_names == ("circle", "square", "star", "triangle")
    config = TrainConfig(epochs=2, size=48, batch_size=8, workers=0, pretrained="none")
    metrics = train_classifier(train, out, config, val_data=val, resume=True, progress=False)
    checkpoint = _slim(out)
    assert metrics["epoch"] == 2 and [m["epoch"] for m in checkpoint["history"]] == [1, 2]
    assert not resume_path(out).exists()


def _old_style_checkpoint(path, epochs: int, batches: int):
    """A checkpoint as train_classifier wrote it before resume files: after epoch 1 of
    ``epochs`` with ``batches`` per epoch, optimizer and OneCycleLR state inside."""
    torch.manual_seed(0)
    model = resnet50_variant(2048, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=epochs * batches, pct_start=0.25
    )
    for _ in range(batches):
        loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    metrics = {"epoch": 1, "val_accuracy": 0.25, "val_loss": 1.4}
    return save_checkpoint(
        path,
        model.state_dict(),
        arch="resnet50",
        channels=2048,
        num_classes=4,
        class_names=["circle", "square", "star", "triangle"],
        input_size=48,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        metrics=metrics,
        history=[metrics],
        epoch=1,
        origin="scratch",
        config={"epochs": epochs, "size": 48, "batch_size": 8},
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
    )


def test_train_split_and_errors(tmp_path, tiny_data):
    train, _ = tiny_data
    config = TrainConfig(epochs=1, size=48, batch_size=64, workers=0, pretrained="none")
    with pytest.raises(ValueError, match="no training batches"):
        train_classifier(train, tmp_path / "x.ckpt", config, progress=False)
    shutil.copytree(train / "images" / "star", tmp_path / "one" / "images" / "star")
    with pytest.raises(
        ValueError, match=r"has one class \(star\): a classifier needs at least two"
    ):
        train_classifier(tmp_path / "one", tmp_path / "x.ckpt", config, progress=False)
    assert not (tmp_path / "x.ckpt").exists()
    slim = save_checkpoint(  # an unfinished run whose resume file was deleted
        tmp_path / "slim.ckpt",
        resnet50_variant(2048, 4).state_dict(),
        class_names=["circle", "square", "star", "triangle"],
        epoch=1,
        config={"epochs": 2},
    )
    with pytest.raises(ValueError, match=r"slim.ckpt.resume\) is gone; start the run again"):
        train_classifier(
            train, slim, replace(config, epochs=2, batch_size=8), resume=True, progress=False
        )
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


def test_recipes_resolve_by_where_the_weights_start():
    from camkit.training.classifier import RECIPES, resolve_config
    from camkit.training.loop import native_bf16

    scratch = resolve_config(TrainConfig(pretrained="none"))
    assert scratch.recipe == "scratch" and scratch.size == 96 and scratch.batch_size == 32
    assert scratch.bf16 is native_bf16("cpu")  # float32 where the CPU would emulate bfloat16
    assert scratch.channels_last and scratch.label_smoothing == 0.1 and scratch.loss == "ce"
    tuned = resolve_config(TrainConfig(pretrained="none", size=64, bf16=False), model_given=True)
    assert tuned.recipe == "finetune" and tuned.size == 64 and tuned.bf16 is False
    assert tuned.warmup == RECIPES["finetune"].warmup == 0.25
    with pytest.raises(ValueError, match="recipe must be"):
        resolve_config(TrainConfig(recipe="fast"))
    with pytest.raises(ValueError, match="loss must be one of"):
        resolve_config(TrainConfig(loss="focal"))


@pytest.mark.parametrize(
    "options",
    [
        {"augment": True, "bf16": True, "channels_last": True},
        {"augment": False, "bf16": False, "channels_last": False, "label_smoothing": 0.0},
    ],
)
def test_trains_on_a_generated_stream(tmp_path, options):
    from camkit.data.shapes import CLASSES, ShapeStream

    config = TrainConfig(size=32, batch_size=4, workers=0, pretrained="none", **options)
    stream, val = ShapeStream(8, 0, 32, "hard"), ShapeStream(4, 1, 32, "hard")
    metrics = train_classifier(stream, tmp_path / "s.ckpt", config, val_data=val, progress=False)
    assert metrics["epoch"] == 1 and math.isfinite(metrics["val_loss"])
    assert metrics["val_count"] == 4
    checkpoint = _slim(tmp_path / "s.ckpt")
    assert checkpoint["class_names"] == sorted(CLASSES) and checkpoint["input_size"] == 32
    assert checkpoint["config"]["recipe"] == "scratch"
    assert checkpoint["config"]["bf16"] is options["bf16"]
    model, _ = load_classifier(tmp_path / "s.ckpt")
    assert model.conv1.weight.is_contiguous()


def test_trains_on_soft_targets_of_a_stream_with_pairs(tmp_path):
    from camkit.data.shapes import ShapeStream

    stream, val = ShapeStream(8, 0, 32, "hard", pairs=0.5), ShapeStream(4, 1, 32, "hard")
    for loss in ("ce", "bce"):  # soft rows, or each of a pair's classes present
        config = TrainConfig(size=32, batch_size=4, workers=0, pretrained="none", loss=loss)
        out = tmp_path / f"p-{loss}.ckpt"
        metrics = train_classifier(stream, out, config, val_data=val, progress=False)
        assert math.isfinite(metrics["train_loss"]) and metrics["train_images"] == 8
        assert metrics["val_count"] == 4 and load_checkpoint(out)["config"]["loss"] == loss
    # validated on a split of the same stream: soft targets there too
    split = TrainConfig(size=32, batch_size=4, workers=0, pretrained="none", val_fraction=0.5)
    paired = ShapeStream(16, 0, 32, "hard", pairs=0.5)
    metrics = train_classifier(paired, tmp_path / "q.ckpt", split, progress=False)
    assert metrics["val_count"] == 8 and 0.0 <= metrics["val_accuracy"] <= 1.0
    assert math.isfinite(metrics["val_loss"])


def test_a_data_set_without_class_names_is_refused(tmp_path):
    with pytest.raises(TypeError, match="class_names"):
        train_classifier([1, 2], tmp_path / "x.ckpt", TrainConfig(workers=0), progress=False)


def test_cli_recipe_options(tmp_path, capsys):
    root = write_dataset(tmp_path / "d", 8, 32, seed=0)
    out = tmp_path / "m.ckpt"
    flags = ["--size", "32", "--batch-size", "4", "--workers", "0", "--pretrained", "none"]
    flags += ["--no-augment", "--no-bf16", "--no-channels-last", "--label-smoothing", "0"]
    flags += ["--loss", "bce"]
    assert main(["train", str(root), "--out", str(out), *flags, "--warmup", "0.1"]) == 0
    config = load_checkpoint(out)["config"]
    assert config["loss"] == "bce" and config["label_smoothing"] == 0.0
    assert config["augment"] is False and config["bf16"] is False and config["warmup"] == 0.1
    assert config["recipe"] == "scratch" and "validation accuracy" in capsys.readouterr().out
