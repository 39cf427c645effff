"""The run loop: inputs → DataLoader workers (decode, resize, masks) → the Explainer on batches
in the main thread → the writer thread (:mod:`camkit.export.writer`).

Never loses work: every file is written under a temporary name, then renamed; a record is
appended only after its files exist; a rerun with the same settings skips images already in the
manifest (``retry_errors`` redoes the failed ones); changed settings are refused unless
``overwrite``; an unreadable image is recorded as an error and the run goes on. Ctrl-C finishes
the images already computed, then raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from camkit.data.inputs import Input
from camkit.export.errors import ExportError
from camkit.export.files import remove_temporaries
from camkit.export.inputs import output_names, shard_of
from camkit.export.manifest import (
    check_inputs,
    check_settings,
    make_settings,
    part_path,
    read_manifest,
    settings_id,
    shard_tag,
    write_inputs,
)
from camkit.export.writer import Writer
from camkit.pipeline.masks import MaskSource
from camkit.pipeline.run import Prepared, explain_prepared, prepare
from camkit.pipeline.settings import Settings
from camkit.progress import progress as report_progress

__all__ = ["FORMATS", "ExportConfig", "export"]

FORMATS = ("overlay", "raw", "mask", "panel")


@dataclass
class ExportConfig:
    """What ``camkit export`` does: the pipeline's :class:`~camkit.pipeline.settings.Settings`
    (layer, method, targets, size, speed options …; every map-changing one is part of the
    export's identity) and what export adds (files, workers, masks, resume, shard)."""

    settings: Settings = field(default_factory=Settings)
    workers: int = 2
    formats: tuple[str, ...] = ("overlay", "raw")
    alpha: float = 0.5
    colormap: str = "jet"
    max_side: int = 1024  # overlays and panels are drawn at the image's size, capped at this
    masks: Path | None = None
    resize_mask: bool = False
    tolerance: float = 15.0
    overwrite: bool = False
    retry_errors: bool = False
    shard: tuple[int, int] = (0, 1)
    progress: bool | None = None  # None: on a terminal only
    extra: dict = field(default_factory=dict)


class _Images(torch.utils.data.Dataset):
    """The pipeline's :func:`~camkit.pipeline.run.prepare` (decode, resize, mask file), run in
    DataLoader workers; failures become ``Prepared.error``."""

    def __init__(self, items, settings, info, masks, stride, max_side):
        self.items, self.settings, self.info, self.masks = items, settings, info, masks
        self.stride, self.max_side = stride, max_side

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared:
        item = self.items[index]
        try:
            prepared = prepare(
                item, index, self.settings, self.info, self.masks, self.stride, self.max_side
            )
        except Exception as error:  # anything else about this one file: recorded, the run goes on
            return Prepared(
                index, item.key, str(item.path), error=f"{type(error).__name__}: {error}"
            )
        return prepared


def _collate(records: list[dict]) -> list[dict]:
    return records


def _die_with_parent(_worker_id: int) -> None:
    """DataLoader worker start: on Linux, ask to be killed when the export process dies, so a
    ``kill -9`` of the export leaves no worker blocked on a full queue."""
    import contextlib
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # PR_SET_PDEATHSIG = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))


def _mask_source(config: ExportConfig, items, segmenter, model) -> MaskSource | None:
    """The run's masks: a folder scanned once for the inputs' keys, or a segmenter."""
    if config.masks is None and segmenter is None:
        return None
    if config.masks is not None and not Path(config.masks).is_dir():
        raise ExportError(f"--masks {config.masks} is not a folder")
    if config.masks is not None:
        return MaskSource(folder=Path(config.masks), resize=config.resize_mask).bound(items)
    return MaskSource(segmenter=segmenter, resize=config.resize_mask).bound(items, model)


def _explain_batch(prepared, explainer, settings, masks, writer, names, tolerance) -> None:
    """Explain the images of one loader batch (on the model's device) and hand every result,
    failed ones included, to the writer; a segmenter supplies the masks."""
    for result in explain_prepared(explainer, settings, prepared, masks, tolerance):
        writer.put(result, names[result.key])


def _check_config(out: Path, config: ExportConfig, segmenter) -> None:
    unknown = [f for f in config.formats if f not in FORMATS]
    if unknown or not config.formats:
        raise ExportError(f"--formats {','.join(config.formats)}: choose from {', '.join(FORMATS)}")
    if "mask" in config.formats and segmenter is None and config.masks is None:
        raise ExportError("--formats mask needs --segmenter CKPT or --masks DIR")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; pass a folder")


def export(
    model: torch.nn.Module,
    info,
    inputs: Sequence[Input],
    out: str | os.PathLike,
    config: ExportConfig,
    segmenter: tuple | None = None,
    model_id: str | None = None,
) -> dict:
    """Explain ``inputs`` into ``out`` (see the module docstring). Returns counts for this
    process's shard: ``{"done", "skipped", "failed", "total", "manifest", "errors"}``, where
    ``errors`` lists ``(key, reason)`` for the first failures of this run (at most
    ``ERRORS_KEPT``; ``failed`` counts them all).
    """
    out = Path(out)
    _check_config(out, config, segmenter)
    config = replace(config, settings=config.settings.resolved(model, info))
    out.mkdir(parents=True, exist_ok=True)
    explainer = config.settings.explainer(model)
    segmenter_id = str(segmenter[1].get("path", "segmenter")) if segmenter is not None else None
    settings = make_settings(config, model_id or f"{info.arch}:{info.weights}", segmenter_id)
    tag = shard_tag(config.shard)
    mine = shard_of(inputs, config.shard)
    check_settings(out, settings, config.overwrite, tag)
    check_inputs(out, [i.key for i in inputs], config.shard[1], config.overwrite)
    write_inputs(out, [i.key for i in inputs], config.shard[1], tag)
    remove_temporaries(out, tag)

    names = output_names([i.key for i in inputs])
    finished = {
        r["key"]
        for r in read_manifest(out, settings_id(settings))
        if r["status"] == "ok" or (r["status"] == "error" and not config.retry_errors)
    }
    todo = [i for i in mine if i.key not in finished]
    masks = _mask_source(config, todo, segmenter, model)
    manifest_path = part_path(out, config.shard)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"done": 0, "skipped": len(mine) - len(todo), "failed": 0, "total": len(mine)}
    counts.update(manifest=str(manifest_path), errors=[])
    if not todo:
        return counts

    files_only = masks if masks is None or masks.segmenter is None else None
    stride = explainer.stride if config.settings.size == 0 else 1
    dataset = _Images(todo, config.settings, info, files_only, stride, config.max_side)
    workers = max(0, int(config.workers))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.settings.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_die_with_parent if workers else None,
        persistent_workers=False,
    )
    writer = Writer(out, manifest_path, config, info, tag, settings)
    bar = report_progress(total=len(todo), desc="export", unit="img", enabled=config.progress)
    interrupted = False
    try:
        with bar:  # a run cut short (interrupted, or failed) writes no "done" line
            for prepared in loader:
                _explain_batch(
                    prepared, explainer, config.settings, masks, writer, names, config.tolerance
                )
                writer.raise_if_failed()
                bar.update(len(prepared))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        writer.close()
    counts.update(done=writer.done, failed=writer.failed, errors=list(writer.errors))
    if interrupted:
        raise KeyboardInterrupt
    return counts
