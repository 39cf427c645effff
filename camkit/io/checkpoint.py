"""Checkpoints: dicts with metadata, saved atomically and read with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from camkit.io.files import atomic_path

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "camkit-checkpoint/1"


def save_checkpoint(path: str | os.PathLike, state_dict: dict, **metadata: Any) -> Path:
    """Save ``{"format", **metadata, "state_dict"}`` atomically with ``torch.save``.

    Metadata should be plain data (str, int, float, lists, dicts) so that the file loads with
    ``weights_only=True``: arch, channels, num_classes, class_names, input_size, mean, std,
    metrics, warnings. A trained model's checkpoint holds only that; the optimizer and schedule
    state of a run in progress go to its resume file (:mod:`camkit.training.resume`).
    """
    payload = {"format": FORMAT, **metadata, "state_dict": state_dict}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def _check_header(path: Path) -> None:
    """A torch file is a zip archive (``torch.save``) or a pickle (the legacy format); an image
    or any other file is named as such before ``torch.load`` misreads it."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(IMAGE_MAGIC):
        raise ValueError(
            f"{path} is an image, not a checkpoint; pass images as inputs and a checkpoint "
            "saved by camkit train (or torch.save) as --weights"
        )
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise ValueError(
            f"{path} is not a torch checkpoint (neither a torch.save zip archive nor a pickle); "
            "pass a checkpoint saved by camkit train or torch.save"
        )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely (``torch.load(weights_only=True)``) onto the CPU.

    Returns a dict with at least ``state_dict``; a plain state_dict (or one wrapped under
    ``"state_dict"`` / ``"model"``) is accepted, and a ``module.`` prefix is stripped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, corrupt or not a checkpoint, or it holds arbitrary Python objects
            (refused: loading them could run code).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path")
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a directory; pass the .pt/.ckpt file inside it")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes); re-save or re-download it")
    _check_header(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "unpickling error"
        if "weights only" in str(error).lower() or "unsupported global" in str(error).lower():
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            what = f" such as {found.group(1)}" if found else ""
            raise ValueError(
                f"refusing to load {path}: it holds arbitrary Python objects{what}, which "
                "could run code when loaded (torch.load weights_only=True). camkit only reads "
                "tensors and plain data; re-save it with torch.save(model.state_dict(), PATH) "
                "from code you trust"
            ) from None
        raise ValueError(
            f"checkpoint {path} is corrupt or not a PyTorch file ({first[:160]})"
        ) from None
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"checkpoint {path} is corrupt or not a PyTorch file ({message[:160]})"
        ) from None
    if not isinstance(payload, dict):
        raise ValueError(
            f"checkpoint {path} holds a {type(payload).__name__}, not a state_dict or a camkit "
            "checkpoint dict; save model.state_dict()"
        )
    if "state_dict" in payload and isinstance(payload["state_dict"], dict):
        checkpoint = dict(payload)
    elif "model" in payload and isinstance(payload["model"], dict):
        checkpoint = {k: v for k, v in payload.items() if k != "model"}
        checkpoint["state_dict"] = payload["model"]
    else:
        checkpoint = {"state_dict": payload}
    state = checkpoint["state_dict"]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"checkpoint {path} has no tensors; it is not a model state_dict")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    checkpoint["state_dict"] = tensors
    return checkpoint
