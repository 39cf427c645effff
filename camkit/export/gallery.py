"""The export's gallery: one self-contained ``index.html`` from the manifest records.

The page is ``gallery.html`` (package data beside this module) with its ``__NAME__`` placeholders
filled in one pass: thumbnails linking to the full overlays, sortable by score, probability, name
or any metric, errors listed. It opens from disk (relative links, no server). A merge that lacks
shards passes a ``notice``, shown above the grid, so a partial gallery never passes for complete.
"""

from __future__ import annotations

import functools
import html
import json
import re
from importlib import resources

from camkit.export.manifest import IDENTITY_KEYS

__all__ = ["gallery_html", "template"]

_PLACEHOLDER = re.compile(r"__(TITLE|NOTICE|SETTINGS|OPTIONS|DATA)__")


@functools.cache
def template() -> str:
    """The page template, read from the installed package (``camkit/export/gallery.html``)."""
    return resources.files(__package__).joinpath("gallery.html").read_text(encoding="utf-8")


def _item(record: dict) -> dict:
    item = {"key": record["key"], "status": record["status"]}
    if record["status"] != "ok":
        item["error"] = record.get("error", "")
        return item
    outputs, target = record["outputs"], record["targets"][0]
    item.update(
        # exports made before thumbnails: the overlay
        src=outputs.get("thumb") or outputs.get("overlay") or outputs.get("panel"),
        full=outputs.get("overlay") or outputs.get("panel"),
        cls=target["name"],
        score=target["score"],
        probability=target["probability"],
        metrics={k: v for k, v in (record.get("metrics") or {}).items() if v is not None},
    )
    return item


def gallery_html(records: list[dict], settings: dict, notice: str | None = None) -> str:
    """The gallery page of ``records`` made with ``settings``; ``notice`` (plain text), if
    given, is shown in a red box above the grid (``id="incomplete"``)."""
    items = [_item(record) for record in records]
    metric_names = sorted({m for i in items for m in i.get("metrics", {})})
    choices = [("score", "score ↓"), ("probability", "probability ↓"), ("key", "name"),
               *[(f"metric:{m}", f"{m} ↓") for m in metric_names], ("status", "errors first")]  # fmt: skip
    values = {
        "TITLE": html.escape(
            f"camkit export — {settings.get('method')} at {settings.get('layer')}"
        ),
        "NOTICE": f'<p id="incomplete">{html.escape(notice)}</p>' if notice else "",
        "SETTINGS": html.escape(json.dumps({k: settings.get(k) for k in IDENTITY_KEYS})),
        "OPTIONS": "".join(
            f'<option value="{html.escape(v)}">{html.escape(label)}</option>'
            for v, label in choices
        ),
        # inside <script type="application/json">: "</" would end the element early and "<!--"
        # would change how the parser reads the rest, so no "<" is left (a JSON escape)
        "DATA": json.dumps(items, ensure_ascii=False).replace("<", "\\u003c"),
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template())
