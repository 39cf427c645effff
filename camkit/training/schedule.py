"""The one-cycle learning-rate schedule (cosine warm-up, then cosine annealing), defined for
every run length from one step up.

torch's ``OneCycleLR`` divides by the length of its warm-up, which is zero when
``pct_start · total_steps == 1`` (4 steps at 25 %, 5 at 20 %): those runs died with
``ZeroDivisionError``. :class:`OneCycle` gives the same learning rates and Adam ``beta1`` as
``OneCycleLR`` wherever that works, and a run too short for a warm-up starts at the peak.
"""

from __future__ import annotations

import math

import torch

__all__ = ["OneCycle", "cosine_between", "one_cycle_position"]


def cosine_between(start: float, end: float, fraction: float) -> float:
    """``start`` at ``fraction = 0``, ``end`` at 1, along half a cosine."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1.0)


def one_cycle_position(step: int, total_steps: int, warmup: float) -> tuple[bool, float]:
    """Where ``step`` (0-based) lies in the cycle: ``(warming_up, fraction of that phase)``.

    The peak is at step ``warmup · total_steps − 1``, where ``OneCycleLR`` puts it; when that is
    not after step 0 there is no warm-up and the run starts at the peak. The fraction is
    clamped to [0, 1], so the step after the last one (the schedule's final ``step()``) is
    harmless.

    Example:
        >>> one_cycle_position(0, 4, 0.25), one_cycle_position(3, 4, 0.25)
        ((False, 0.0), (False, 1.0))
    """
    peak = warmup * total_steps - 1
    if peak > 0 and step <= peak:
        return True, step / peak
    start, end = max(peak, 0.0), total_steps - 1
    if end <= start:  # a single step: the peak, then the end
        return False, float(step > start)
    return False, min(max((step - start) / (end - start), 0.0), 1.0)


class OneCycle:
    """One-cycle schedule of an optimizer's learning rate and first momentum (Adam's ``beta1``
    or SGD's ``momentum``): from ``max_lr / div_factor`` up to ``max_lr`` over the warm-up,
    then down to ``max_lr / div_factor / final_div_factor``; the momentum moves the other way
    between ``momentum[1]`` and ``momentum[0]``. Call :meth:`step` after each optimizer step.

    Its state is the step count and the run length; :meth:`load_state_dict` also reads the
    state of torch's ``OneCycleLR`` (checkpoints written before camkit had this class).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_lr: float,
        total_steps: int,
        warmup: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        momentum: tuple[float, float] = (0.85, 0.95),
    ) -> None:
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup!r}")
        self.optimizer, self.total_steps, self.warmup = optimizer, total_steps, warmup
        self.max_lr = max_lr
        self.initial_lr = max_lr / div_factor
        self.final_lr = self.initial_lr / final_div_factor
        self.momentum = momentum
        self.step_count = 0
        self._apply()

    def learning_rate(self, step: int | None = None) -> float:
        """The learning rate at ``step`` (default: the current one)."""
        warming_up, fraction = self._position(step)
        if warming_up:
            return cosine_between(self.initial_lr, self.max_lr, fraction)
        return cosine_between(self.max_lr, self.final_lr, fraction)

    def first_momentum(self, step: int | None = None) -> float:
        """Adam's ``beta1`` (or SGD's momentum) at ``step`` (default: the current one)."""
        low, high = self.momentum
        warming_up, fraction = self._position(step)
        return (
            cosine_between(high, low, fraction)
            if warming_up
            else cosine_between(low, high, fraction)
        )

    def step(self) -> None:
        """Move to the next step (after the last one it stays at the final values)."""
        self.step_count = min(self.step_count + 1, self.total_steps)
        self._apply()

    def state_dict(self) -> dict:
        return {"step": self.step_count, "total_steps": self.total_steps, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved state: this class's, or torch ``OneCycleLR``'s (its
        ``last_epoch`` counts the steps taken; its run length and warm-up are kept)."""
        if "step" in state:
            steps = state["step"]
        elif "last_epoch" in state:
            steps = state["last_epoch"]
        else:
            raise ValueError(
                f"not a one-cycle schedule state (keys {sorted(state)[:6]}); expected 'step' "
                "or OneCycleLR's 'last_epoch'"
            )
        self.total_steps = int(state.get("total_steps", self.total_steps))
        self.warmup = float(state.get("warmup", self.warmup))
        phases = state.get("_schedule_phases")
        if "warmup" not in state and phases:  # OneCycleLR: the warm-up ends at pct · total − 1
            self.warmup = (float(phases[0]["end_step"]) + 1) / self.total_steps
        self.step_count = min(int(steps), self.total_steps)
        self._apply()

    def _position(self, step: int | None) -> tuple[bool, float]:
        return one_cycle_position(
            self.step_count if step is None else step, self.total_steps, self.warmup
        )

    def _apply(self) -> None:
        lr, beta1 = self.learning_rate(), self.first_momentum()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if "betas" in group:
                group["betas"] = (beta1, *group["betas"][1:])
            elif "momentum" in group:
                group["momentum"] = beta1
