import collections

import pytest
import torch

from camkit.io.checkpoint import load_checkpoint, save_checkpoint
from camkit.models.resnet import load_classifier


def test_round_trip_with_metadata(tmp_path, model):
    path = save_checkpoint(
        tmp_path / "m.ckpt",
        model.state_dict(),
        arch="resnet50",
        channels=2048,
        num_classes=10,
        class_names=[f"c{i}" for i in range(10)],
        input_size=96,
        metrics={"accuracy": 0.5},
    )
    loaded, info = load_classifier(path)
    assert info.class_names[3] == "c3" and info.input_size == 96 and info.metrics["accuracy"] == 0.5
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_plain_and_wrapped_state_dicts(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    prefixed = collections.OrderedDict((f"module.{k}", v) for k, v in model.state_dict().items())
    torch.save(prefixed, tmp_path / "dp.pt")
    for name in ("plain.pt", "wrapped.pt", "dp.pt"):
        loaded, info = load_classifier(tmp_path / name)
        assert info.num_classes == 10 and info.channels == 2048
        torch.testing.assert_close(loaded.fc.weight, model.fc.weight)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_unsafe_pickles_are_refused(tmp_path, model):
    torch.save({"state_dict": model.state_dict(), "hook": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(
        ValueError, match=r"refusing to load.*arbitrary Python objects such as print\b"
    ):
        load_checkpoint(tmp_path / "evil.pt")


def test_bad_files(tmp_path, model):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="is an image, not a checkpoint"):  # was "arbitrary
        load_checkpoint(tmp_path / "photo.png")  # Python objects"
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(tmp_path / "legacy.pt")["state_dict"]["w"], torch.ones(2))
    torch.save(model.state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list"):
        load_checkpoint(tmp_path / "list.pt")
    state = model.state_dict()
    state.pop("layer1.0.conv1.weight")
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"missing keys.*layer1\.0\.conv1\.weight"):
        load_classifier(tmp_path / "partial.pt")
    with pytest.raises(FileNotFoundError, match="'imagenet', 'none'"):
        load_classifier("imagnet")


def test_a_checkpoint_with_training_state_inside_loads(tmp_path, model):
    """Checkpoints written before resume files carry AdamW and OneCycleLR state; they load."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=8)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    schedule.step()
    path = save_checkpoint(
        tmp_path / "old.ckpt",
        model.state_dict(),
        arch="resnet50",
        num_classes=10,
        class_names=[f"c{i}" for i in range(10)],
        input_size=64,
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
    )
    loaded, info = load_classifier(path)
    assert info.class_names[9] == "c9" and not info.learned_nothing and info.warnings == ()
    torch.testing.assert_close(loaded.fc.weight, model.fc.weight)
