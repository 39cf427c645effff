"""The writer thread: renders each image's files, writes them, then appends its record.

The main thread puts each image's pipeline result (:class:`camkit.pipeline.run.Result`, also
for an image that failed to load) on a bounded queue, so a slow disk slows the model instead of filling memory.
A record is appended, and flushed, only after the image's files exist. A problem with one
image's maps or mask is recorded as that image's error; an ``OSError`` (disk full, permissions)
stops the run: the main thread raises it at the next batch.
"""

from __future__ import annotations

import json
import os
import queue
import threading

import numpy as np

from camkit.export.errors import ExportError
from camkit.export.files import write_inside
from camkit.export.manifest import settings_id
from camkit.io.encoding import encode_png, thumbnail

__all__ = ["ERRORS_KEPT", "THUMB_SIDE", "Writer"]

THUMB_SIDE = 256  # the gallery's thumbnails: JPEG, at most this many pixels a side
ERRORS_KEPT = 20  # the first failures (key, reason) kept for the caller to show


class Writer:
    """A thread that renders and writes each image's files, then appends its manifest record.

    ``done`` / ``failed`` count this run's records; ``errors`` holds ``(key, reason)`` for the
    first ``ERRORS_KEPT`` failures.
    """

    def __init__(self, out, manifest_path, config, info, tag, settings, depth: int = 64):
        self.out, self.config, self.info, self.tag = out, config, info, tag
        self.settings_id = settings_id(settings)
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.done = self.failed = 0
        self.errors: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self.manifest = open(manifest_path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._end_line()
        self.thread = threading.Thread(target=self._run, name="camkit-export-writer", daemon=True)
        self.thread.start()

    def _end_line(self) -> None:
        """A kill during an append can leave half a line: start the next record on a new one."""
        self.manifest.seek(0, os.SEEK_END)
        if self.manifest.tell():
            self.manifest.seek(self.manifest.tell() - 1)
            if self.manifest.read(1) != "\n":
                self.manifest.write("\n")
        self.manifest.flush()

    def put(self, result, name: str) -> None:
        """Queue one :class:`~camkit.pipeline.run.Result` to be written under ``name``."""
        self.queue.put((result, name))

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.manifest.close()
        self.raise_if_failed()

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.error is not None:
                continue
            result, name = job
            try:
                entry = self._entry(result, name)
            except ExportError as error:  # e.g. an output path that leads outside OUT
                entry = self._failure(result, str(error))
            except OSError as error:  # disk full, permissions: stop the run (main thread raises)
                self.error = error
                continue
            except Exception as error:  # a problem with this image's maps or mask: recorded
                entry = self._failure(result, f"{type(error).__name__}: {error}")
            self.manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.manifest.flush()
            if entry["status"] == "ok":
                self.done += 1
            else:
                self.failed += 1
                if len(self.errors) < ERRORS_KEPT:
                    self.errors.append((entry["key"], entry["error"]))

    def _failure(self, result, message: str) -> dict:
        return {
            "key": result.key,
            "input": result.path,
            "status": "error",
            "error": message,
            "outputs": {},
            "shard": self.tag,
            "settings": self.settings_id,
        }

    def _write(self, relative: str, data: bytes) -> str:
        return write_inside(self.out, relative, data, self.tag)

    def _entry(self, result, name: str) -> dict:
        """Render and write one result's files; its record (:mod:`camkit.pipeline.records`)."""
        from camkit.cam import normalize
        from camkit.pipeline.records import npz_bytes, record
        from camkit.viz.overlay import comparison_panel, overlay, panel

        if not result.ok:
            return self._failure(result, result.error)
        config, settings = self.config, self.config.settings
        image, mask, metrics = result.image, result.mask, result.metrics
        shown = normalize(result.maps[result.order[:8]]).numpy()  # (K', H, W) in [0, 1]
        outputs = {}
        if "overlay" in config.formats:
            picture = overlay(image, shown[0], config.alpha, colormap=config.colormap, mask=mask)
            outputs["overlay"] = self._write(f"overlays/{name}.png", encode_png(picture))
            outputs["thumb"] = self._write(f"thumbs/{name}.jpg", thumbnail(picture, THUMB_SIDE))
        if "raw" in config.formats:
            outputs["raw"] = self._write(f"raw/{name}.npz", npz_bytes(result, settings))
        if "mask" in config.formats and mask is not None:
            picture = np.repeat(mask[..., None] * 255, 3, 2).astype(np.uint8)
            outputs["mask"] = self._write(f"masks/{name}.png", encode_png(picture))
        entry = record(result, self.info, settings, outputs)
        if "panel" in config.formats:
            targets = entry["targets"]
            if mask is not None:
                picture = comparison_panel(
                    image, shown[0], mask, metrics, targets[0]["name"], config.alpha,
                    config.colormap,
                )  # fmt: skip
            else:
                titles = [f"{t['name']} p={t['probability']:.2f}" for t in targets[:8]]
                picture = panel(
                    image, list(shown), titles, config.alpha, config.colormap, image_title=name
                )
            outputs["panel"] = self._write(f"panels/{name}.png", encode_png(picture))
        entry.update(shard=self.tag, settings=self.settings_id)
        return entry
