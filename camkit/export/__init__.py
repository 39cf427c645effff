"""Batch heatmap export: folders of images → overlays, raw maps, a manifest, a gallery.

Decoding and resizing run in DataLoader workers, the Explainer on batches in the main thread,
PNG / NPZ encoding and the manifest in a writer thread (a bounded queue keeps memory flat). Files
are renamed into place, records appended once their files exist, reruns resume, and changed
settings are refused unless ``overwrite``. Shards: ``shard=(K, N)`` takes the inputs
``K, K+N, K+2N …`` and writes ``manifests/part-K-of-N.jsonl``; :func:`merge` joins the parts into
``manifest.jsonl``, ``summary.csv`` and ``index.html``, and refuses while a shard is missing.

Modules, one job each:

- :mod:`~camkit.export.inputs`: inputs (folder, glob, list file), output names, shards
- :mod:`~camkit.export.manifest`: settings (``export.json``), inputs file, manifest records
- :mod:`~camkit.export.files`: atomic writes contained in OUT, temporaries of killed runs
- :mod:`~camkit.export.runner`: :class:`ExportConfig` and the run loop :func:`export`
- :mod:`~camkit.export.writer`: the writer thread (renders, writes, appends records)
- :mod:`~camkit.export.merging`: the merge, missing shards, ``summary.csv``
- :mod:`~camkit.export.gallery`: ``index.html`` from the ``gallery.html`` template
- :mod:`~camkit.export.distributed`: torchrun barrier; who merges once a shard is done
"""

from __future__ import annotations

from camkit.export.distributed import ShardOutcome, finish_shard, local_device, torchrun_barrier
from camkit.export.errors import ExportError, IncompleteExportError
from camkit.export.files import TEMP_SUFFIX
from camkit.export.gallery import gallery_html
from camkit.export.inputs import (
    ExportInput,
    collect_inputs,
    output_names,
    parse_shard,
    shard_of,
    torchrun_shard,
)
from camkit.export.manifest import (
    IDENTITY_KEYS,
    current_records,
    describe_model,
    manifest_files,
    read_manifest,
    settings_id,
)
from camkit.export.merging import merge
from camkit.export.runner import FORMATS, ExportConfig, export
from camkit.export.writer import THUMB_SIDE

_describe_model = describe_model  # the name camkit.cli used; kept until the CLI moves over

__all__ = [
    "FORMATS",
    "IDENTITY_KEYS",
    "TEMP_SUFFIX",
    "THUMB_SIDE",
    "ExportConfig",
    "ExportError",
    "ExportInput",
    "IncompleteExportError",
    "ShardOutcome",
    "collect_inputs",
    "current_records",
    "describe_model",
    "export",
    "finish_shard",
    "gallery_html",
    "local_device",
    "manifest_files",
    "merge",
    "output_names",
    "parse_shard",
    "read_manifest",
    "settings_id",
    "shard_of",
    "torchrun_barrier",
    "torchrun_shard",
]
