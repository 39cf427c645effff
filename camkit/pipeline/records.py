"""The one record schema: what ``explain`` prints and writes and ``export`` keeps in its
manifest, for one image (JSON), and the raw maps beside it (NPZ).

JSON record (``record``)::

    key, input, status ("ok" | "error"), error (only on errors)
    model                       the weights: "imagenet", "none", or a checkpoint path
    layer, method, path         what was computed, and on which path ("closed-form", ...)
    fusion, smoothing, autocast, output_stride, targets_spec, seed
                                every setting that changes a map (None where unused; the
                                seed only changes SS-CAM's and Smooth Grad-CAM++'s)
    input_size, image_size      [H, W] of the model input and of the image maps are drawn on
    align                       how maps are put on the image: "rf" (each cell at its
                                receptive-field centre) or "grid" (the peers' convention)
    geometry                    the layer's cells in the model input (None with "grid"):
                                cell i of an axis is centred on pixel offset + stride·i;
                                stride, offset, receptive_field ([y, x]), source
                                ("derived" from the layer's path, or "measured")
    predictions                 the five most probable classes: class_id, name, probability
    targets                     the explained classes (by decreasing score when all are
                                explained; at most 50): class_id, name, score, probability
    metrics                     heatmap-vs-mask metrics of the first target (only with a mask)
    outputs                     files written for this image, relative to the output folder

NPZ (``raw_arrays``): ``maps`` float32 ``(K, h, w)`` raw maps at the layer's resolution (all
targets, in ``class_ids`` order), ``class_ids``, ``scores``, ``probabilities``, and ``key``,
``layer``, ``method``, ``path``, ``fusion``, ``smoothing``, ``autocast``, ``output_stride``,
``input_size``, ``image_size``, ``align``, and with ``"rf"`` ``cell_stride`` and ``cell_offset``
(``[y, x]``), so ``camkit.to_image`` can put the raw maps on the image again.
"""

from __future__ import annotations

import io

import numpy as np

from camkit.pipeline.run import Result
from camkit.pipeline.settings import Settings

__all__ = ["MAX_TARGETS", "ROW_COLUMNS", "flat_row", "npz_bytes", "raw_arrays", "record"]

MAX_TARGETS = 50  # targets listed in a record ("all" on ImageNet would be 1,000)


def _setting_fields(result: Result, settings: Settings) -> dict:
    heatmaps = result.heatmaps
    targets = settings.describe()["targets"]
    return {
        "layer": heatmaps.layer,
        "method": heatmaps.method,
        "path": heatmaps.path,
        "fusion": heatmaps.fusion,
        "smoothing": heatmaps.extra.get("smoothing"),
        "autocast": heatmaps.extra.get("autocast"),
        "output_stride": settings.output_stride,
        "targets_spec": targets,
        "seed": settings.seed,
        "input_size": list(heatmaps.input_size),
        "image_size": list(result.image.shape[:2]),
        "align": heatmaps.alignment,
        "geometry": heatmaps.geometry.describe() if heatmaps.alignment == "rf" else None,
    }


def record(result: Result, info, settings: Settings, outputs: dict | None = None) -> dict:
    """The JSON record of one result (see the module docstring for the fields)."""
    base = {"key": result.key, "input": result.path, "status": "ok" if result.ok else "error"}
    if not result.ok:
        return {**base, "error": result.error, "outputs": outputs or {}}
    heatmaps = result.heatmaps
    probabilities = heatmaps.logits[0].softmax(dim=0)
    top = probabilities.topk(min(5, len(probabilities)))
    class_ids = heatmaps.class_ids[0]
    entry = {
        **base,
        "model": info.weights,
        **_setting_fields(result, settings),
        "predictions": [
            {"class_id": int(c), "name": info.class_name(int(c)), "probability": float(p)}
            for p, c in zip(top.values, top.indices)
        ],
        "targets": [
            {
                "class_id": int(class_ids[k]),
                "name": info.class_name(int(class_ids[k])),
                "score": float(heatmaps.scores[0, k]),
                "probability": float(heatmaps.probabilities[0, k]),
            }
            for k in result.order[:MAX_TARGETS]
        ],
    }
    if result.metrics is not None:
        entry["metrics"] = result.metrics
    entry["outputs"] = outputs or {}
    return entry


def raw_arrays(result: Result, settings: Settings) -> dict[str, np.ndarray]:
    """The NPZ arrays of one result (see the module docstring)."""
    heatmaps = result.heatmaps
    fields = _setting_fields(result, settings)
    arrays = {
        "maps": heatmaps.maps[0].numpy().astype(np.float32),
        "class_ids": heatmaps.class_ids[0].numpy(),
        "scores": heatmaps.scores[0].numpy(),
        "probabilities": heatmaps.probabilities[0].numpy(),
        "key": np.array(result.key),
    }
    for name in ("layer", "method", "path", "fusion", "smoothing", "autocast", "align"):
        arrays[name] = np.array("" if fields[name] is None else fields[name])
    arrays["output_stride"] = np.array(fields["output_stride"])
    arrays["input_size"] = np.array(fields["input_size"])
    arrays["image_size"] = np.array(fields["image_size"])
    if fields["geometry"] is not None:
        arrays["cell_stride"] = np.array(fields["geometry"]["stride"])
        arrays["cell_offset"] = np.array(fields["geometry"]["offset"])
    return arrays


def npz_bytes(result: Result, settings: Settings) -> bytes:
    """:func:`raw_arrays` as a compressed NPZ file's bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **raw_arrays(result, settings))
    return buffer.getvalue()


ROW_COLUMNS = ("key", "input", "status", "class_id", "class_name", "probability", "score",
               "top1_class_id", "top1_probability")  # fmt: skip


def flat_row(entry: dict) -> dict:
    """A record as one flat table row (``metrics.csv``, an export's ``summary.csv``): the
    first target, the top prediction, every metric, the output files, the error."""
    row = {"key": entry["key"], "input": entry.get("input"), "status": entry["status"]}
    if entry["status"] == "ok":
        # exports made before the one schema called the predictions "top"
        target, best = entry["targets"][0], (entry.get("predictions") or entry["top"])[0]
        row.update(class_id=target["class_id"], class_name=target["name"])
        row.update(probability=target["probability"], score=target["score"])
        row.update(top1_class_id=best["class_id"], top1_probability=best["probability"])
        row.update(entry.get("metrics") or {})
    row.update(entry.get("outputs") or {})
    row["error"] = entry.get("error") or ""
    return row
