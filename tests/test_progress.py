"""camkit.progress: a bar on a terminal, a plain line now and then elsewhere, never a print."""

import io
import logging

import pytest

import camkit.progress as progress_module
from camkit.progress import progress


@pytest.fixture
def lines(caplog, monkeypatch):
    monkeypatch.setattr(progress_module, "MIN_INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="camkit.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "camkit.progress"]


def test_a_line_every_tenth_and_a_last_one(lines, capsys):
    assert list(progress(range(20), desc="work", unit="img")) == list(range(20))
    got = lines()
    assert len(got) == 11  # 10 %, 20 % … 100 %, and the closing line
    assert got[0].startswith("work: 2/20 img (10%), ") and got[-1].startswith(
        "work: 20/20 img, done in"
    )
    assert capsys.readouterr() == ("", "")  # logged, never printed


def test_short_work_stays_quiet(caplog, capsys):
    caplog.set_level(logging.INFO, logger="camkit.progress")
    for _ in progress(range(5), desc="quick"):  # MIN_INTERVAL (1 s) never passes
        pass
    assert not [r for r in caplog.records if r.name == "camkit.progress"]


def test_update_without_a_total_and_disabled(lines, monkeypatch):
    monkeypatch.setattr(progress_module, "MAX_INTERVAL", 0.0)
    with progress(desc="scan", unit="file") as bar:
        bar.update(3)
    assert lines()[0].startswith("scan: 3 file, ") and "done in" in lines()[-1]
    count = len(lines())
    with progress(total=4, desc="off", enabled=False) as bar:
        bar.update(4)
    assert len(lines()) == count


def test_no_closing_line_after_a_failure(lines):
    with pytest.raises(RuntimeError), progress(total=2, desc="boom") as bar:
        bar.update()
        raise RuntimeError
    assert lines() == [lines()[0]] and "done in" not in lines()[0]


def test_a_tqdm_bar_on_a_terminal(monkeypatch, lines):
    stream = io.StringIO()
    stream.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", stream)
    for _ in progress(range(3), desc="bar", unit="img"):
        pass
    assert "bar" in stream.getvalue() and not lines()


def test_training_epochs_report_loss_in_plain_lines(lines):
    import torch

    from camkit.training.loop import train_epoch

    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [torch.ones(4) for _ in range(10)]

    def loss_of(batch):
        return (weight * batch).square().mean(), len(batch)

    train_epoch(batches, loss_of, optimizer, schedule, "epoch 1", None)
    got = lines()
    assert got and got[0].startswith("epoch 1: 1/10 batch (10%)") and "loss " in got[0]
    assert "img_s " in got[0]
