"""The one-cycle schedule: every run length works, and it is torch's OneCycleLR where that works."""

import math

import pytest
import torch

from camkit.training import classifier, segmenter
from camkit.training.schedule import OneCycle, one_cycle_position

MAX_LR = 2e-3


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=MAX_LR)


def _walk(optimizer, schedule, steps: int) -> list[tuple[float, float]]:
    """(lr, beta1) of each of ``steps`` optimizer steps, stepping the schedule after each."""
    seen = []
    for _ in range(steps):
        group = optimizer.param_groups[0]
        seen.append((group["lr"], group["betas"][0]))
        optimizer.step()
        schedule.step()
    return seen


@pytest.mark.parametrize("warmup", [classifier.WARMUP, segmenter.WARMUP], ids=["classifier", "seg"])
@pytest.mark.parametrize("total", range(1, 21))
def test_every_run_length_steps_through(warmup, total):
    optimizer = _optimizer()
    schedule = OneCycle(optimizer, MAX_LR, total, warmup)
    seen = _walk(optimizer, schedule, total)
    schedule.step()  # one more than the run has: stays at the end, no error
    for lr, beta1 in seen:
        assert math.isfinite(lr) and 0 < lr <= MAX_LR * (1 + 1e-12)
        assert 0.85 - 1e-12 <= beta1 <= 0.95 + 1e-12
    assert max(lr for lr, _ in seen) >= 0.9 * MAX_LR  # every run reaches (about) the peak
    assert schedule.learning_rate() == pytest.approx(MAX_LR / 25 / 1e4)


@pytest.mark.parametrize("warmup", [classifier.WARMUP, segmenter.WARMUP])
@pytest.mark.parametrize("total", range(6, 21))
def test_the_same_as_torch_one_cycle_where_that_works(warmup, total):
    ours_optimizer, torch_optimizer = _optimizer(), _optimizer()
    ours = _walk(ours_optimizer, OneCycle(ours_optimizer, MAX_LR, total, warmup), total)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        torch_optimizer, max_lr=MAX_LR, total_steps=total, pct_start=warmup
    )
    expected = _walk(torch_optimizer, reference, total)
    for (lr, beta1), (want_lr, want_beta1) in zip(ours, expected, strict=True):
        assert lr == pytest.approx(want_lr, rel=1e-9) and beta1 == pytest.approx(want_beta1)


def test_torch_breaks_where_the_warm_up_is_one_step():
    """The bug this schedule fixes: 4 steps at 25 % (5 at 20 %) divided by zero."""
    optimizer = _optimizer()
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(optimizer, MAX_LR, total_steps=4, pct_start=0.25)
    assert one_cycle_position(0, 4, 0.25) == (False, 0.0)  # no warm-up: start at the peak


def test_continues_from_its_own_and_from_torch_state():
    optimizer = _optimizer()
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, MAX_LR, total_steps=12)
    _walk(optimizer, reference, 5)
    schedule = OneCycle(_optimizer(), MAX_LR, 99, classifier.WARMUP)
    schedule.load_state_dict(reference.state_dict())  # a checkpoint from before OneCycle
    assert schedule.step_count == 5 and schedule.total_steps == 12
    assert schedule.optimizer.param_groups[0]["lr"] == pytest.approx(
        optimizer.param_groups[0]["lr"]
    )
    again = OneCycle(_optimizer(), MAX_LR, 12, classifier.WARMUP)
    again.load_state_dict(schedule.state_dict())
    assert again.learning_rate() == schedule.learning_rate()
    with pytest.raises(ValueError, match="not a one-cycle schedule state"):
        again.load_state_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="total_steps"):
        OneCycle(_optimizer(), MAX_LR, 0)
