"""Loading a trained ResUNet segmenter from its checkpoint."""

from __future__ import annotations

import os

from camkit.io.checkpoint import load_checkpoint
from camkit.models.resunet import ResUNet

__all__ = ["load_segmenter"]


def load_segmenter(path: str | os.PathLike) -> tuple[ResUNet, dict]:
    """A ResUNet from a ``train_segmenter`` checkpoint (eval mode) and its metadata."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != "segmenter":
        classifier = "fc.weight" in checkpoint.get("state_dict", {})
        raise ValueError(
            f"{path} is not a camkit segmenter checkpoint (no kind='segmenter')"
            + ("; it is a classifier's" if classifier else "")
            + ": a segmenter comes from `camkit train-seg`"
            + (" (a classifier is explain's or compare's --weights)" if classifier else "")
        )
    model = ResUNet(
        checkpoint["arch"],
        int(checkpoint["classes"]),
        encoder_channels=int(checkpoint["encoder_channels"]),
    )
    model.load_state_dict(checkpoint["state_dict"])
    info = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer", "schedule")}
    return model.eval(), info
