"""Resuming a run: the resume file beside the checkpoint, and continuing from it.

The checkpoint ``OUT`` holds only what a finished model needs (weights and metadata). While a
run trains, ``OUT.resume`` (:func:`resume_path`) holds the same plus the optimizer and schedule
state, written atomically after every epoch, so the two can never disagree about where a run
stands; it is removed when the run finishes unless it is kept. Checkpoints written before
resume files existed carry their optimizer state inside and resume as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

from camkit.io.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "already_finished",
    "discard_resume",
    "finished_epochs",
    "load_resume",
    "restore",
    "resume_path",
    "save_epoch",
    "save_resume",
    "starting_state",
]

log = logging.getLogger(__name__)


def resume_path(out: str | Path) -> Path:
    """Where the resume state of checkpoint ``out`` lives: ``out`` + ``.resume``."""
    out = Path(out)
    return out.with_name(out.name + ".resume")


def load_resume(out: Path) -> dict | None:
    """What ``--resume`` continues from: ``out``'s resume file, else ``out`` itself (a finished
    run, or one saved before resume files existed); ``None`` when neither exists."""
    for path in (resume_path(out), out):
        if path.exists():
            return load_checkpoint(path)
    return None


def finished_epochs(state: dict) -> int | None:
    """The epoch count of the run that saved ``state`` if it has run them all, else ``None``."""
    done = int(state.get("epoch", 0))
    planned = int(state.get("config", {}).get("epochs", done))
    return done if done >= planned else None


def already_finished(state: dict, out: Path) -> dict | None:
    """The last metrics of the run that saved ``state`` if it has run all its epochs (nothing
    to resume, logged), else ``None``."""
    done = finished_epochs(state)
    if done is None:
        return None
    log.info("%s already finished its %d epochs; nothing to resume", out, done)
    history = state.get("history") or [state.get("metrics") or {"epoch": done}]
    return dict(history[-1])


def starting_state(out: Path, resume: bool) -> tuple[dict | None, dict | None]:
    """Where a run starts: ``(resume state or None, a finished run's last metrics or None)``.
    A new run (no ``resume``, or nothing to resume) removes an older run's resume file. An
    ``out`` that cannot become a checkpoint file is refused before anything trains."""
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a folder; name the checkpoint file, e.g. --out {out / 'model.ckpt'}"
        )
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"--out {out}: {out.parent} is a file, not a folder; choose another --out")
    state = load_resume(out) if resume else None
    if state is not None and (finished := already_finished(state, out)) is not None:
        return state, finished
    if state is None:
        discard_resume(out)  # a new run: an older run's resume state no longer applies
    return state, None


def save_epoch(out: Path, model, metadata: dict, optimizer, schedule) -> None:
    """After an epoch: the checkpoint ``out`` (``model``'s weights on the CPU and
    ``metadata``: what ``explain`` needs), then its resume file."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(out, weights, **metadata)
    save_resume(out, weights, metadata, optimizer, schedule)


def save_resume(out: Path, state_dict: dict, metadata: dict, optimizer, schedule) -> Path:
    """Write ``out``'s resume file: the checkpoint's contents plus optimizer and schedule."""
    return save_checkpoint(
        resume_path(out),
        state_dict,
        **metadata,
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
    )


def discard_resume(out: Path) -> None:
    """Remove ``out``'s resume file, if any."""
    resume_path(out).unlink(missing_ok=True)


def restore(state: dict, out: Path, epochs: int, model, optimizer, schedule) -> tuple:
    """Continue an interrupted run from its saved ``state``: load model, optimizer and schedule;
    returns (first epoch to run, history). Refuses a different epoch count (the one-cycle
    schedule depends on it) and a state without optimizer (its resume file was removed)."""
    planned = int(state.get("config", {}).get("epochs", epochs))
    if planned != epochs:
        raise ValueError(
            f"{out} belongs to a run of {planned} epochs (finished {state.get('epoch')}); "
            f"--resume continues that schedule, so pass --epochs {planned}, or start a new "
            "run to train for a different number of epochs"
        )
    if "optimizer" not in state or "schedule" not in state:
        raise ValueError(
            f"cannot resume {out}: it stopped after epoch {state.get('epoch')} of {planned} and "
            f"its resume state ({resume_path(out).name}) is gone; start the run again without "
            "--resume"
        )
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    log.info("resuming %s at epoch %d", out, int(state["epoch"]))
    return int(state["epoch"]), list(state.get("history", []))
