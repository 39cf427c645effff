"""What a run reads: inputs with stable, unique names, and the output names made from them.

Inputs come from a folder (recursive), a glob pattern, a list file (one path per line), files
named one by one, or arrays. Every input has a ``key``: its path relative to the folder it was
found in (POSIX). Output names (:func:`output_names`) derive from the whole sorted key list only,
so two inputs never write the same file (``p/same.jpg`` and ``q/same.jpg`` stay apart) and every
process of a sharded export agrees on them without talking to the others.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

from camkit.data.images import IMAGE_SUFFIXES

__all__ = ["Input", "InputError", "as_inputs", "collect_inputs", "output_names"]


@dataclass(frozen=True)
class Input:
    """One input: a file (``path``) or an RGB uint8 array (``image``), and its name ``key``.

    ``targets``: class ids to explain for this input (overrides the run's targets; then every
    input of the run gives them); ``mask``: its mask in memory (bool ``H×W``), if known.
    ``list_file``: the list it was read from, if any: its relative lines are read relative to
    the list file's folder, and the key is the line as written (an absolute path without its
    leading ``/``); messages about the input say so.
    """

    key: str
    path: Path | None = None
    image: np.ndarray | None = None
    targets: tuple[int, ...] | None = None
    mask: np.ndarray | None = None
    list_file: Path | None = None


class InputError(ValueError):
    """Inputs that cannot be found or named, with the fix in the message."""


def _unique(items: list[Input]) -> list[Input]:
    seen: dict[str, int] = {}
    out = []
    for item in items:
        count = seen.get(item.key, 0) + 1
        seen[item.key] = count
        out.append(item if count == 1 else replace(item, key=f"{item.key}~{count}"))
    return out


def _files(paths: list[Path]) -> list[Input]:
    """Files named one by one: keys relative to their common folder."""
    parents = [os.path.abspath(p.parent) for p in paths]
    root = Path(os.path.commonpath(parents)) if parents else Path(".")
    return [Input(Path(os.path.relpath(os.path.abspath(p), root)).as_posix(), p) for p in paths]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _read_list(path: Path) -> list[Input]:
    base = path.parent
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        full = entry if entry.is_absolute() else base / entry
        key = PurePosixPath(*entry.parts[1:]) if entry.is_absolute() else PurePosixPath(line)
        items.append(Input(key.as_posix(), full, list_file=path))
    if not items:
        raise InputError(f"the list {path} names no images (one path per line)")
    return items


def _read_glob(text: str) -> list[Input]:
    parts = Path(text).parts
    fixed = list(parts[: next(i for i, p in enumerate(parts) if _is_glob(p))])
    root = Path(*fixed) if fixed else Path(".")
    files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    items = [Input(p.relative_to(root).as_posix(), p) for p in files]
    if not items:
        raise InputError(f"the pattern {text!r} matches no files")
    return items


def collect_inputs(source: str | os.PathLike) -> list[Input]:
    """The images of ``source``: a folder (recursive), a glob pattern, or a text file with one
    path per line (relative paths are relative to the file's folder). Sorted by key."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        from camkit.data.folders import find_images

        items = [Input(p.relative_to(path).as_posix(), p) for p in find_images(path)]
        if not items:
            raise InputError(
                f"no images under {path} (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)"
            )
    elif path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        items = _read_list(path)
    elif path.is_file():
        items = [Input(path.name, path)]
    elif _is_glob(text):
        items = _read_glob(text)
    else:
        raise InputError(
            f"{text} does not exist; pass a folder, a glob pattern ('photos/**/*.jpg') or a text "
            "file with one image path per line"
        )
    seen: dict[str, Path] = {}
    for item in items:
        if item.key in seen and seen[item.key] != item.path:
            raise InputError(
                f"two inputs have the same name {item.key!r}: {seen[item.key]} and {item.path}"
            )
        seen[item.key] = item.path
    return sorted({i.key: i for i in items}.values(), key=lambda i: i.key)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\:*?\"<>|]")


def _safe_part(part: str) -> str:
    part = unicodedata.normalize("NFC", part)
    part = _UNSAFE.sub("_", part).strip()
    if part in ("", ".", ".."):
        return "_" * max(1, len(part))
    return part[:200]


def _count_lower(stems) -> dict[str, int]:
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    return counts


def output_names(keys: Sequence[str]) -> dict[str, str]:
    """A safe, unique output stem for every key: relative, no ``..`` or absolute parts, no
    control or reserved characters, the suffix dropped unless two inputs would then share a
    name (``a.jpg``/``a.png`` → ``a.jpg``/``a.png``), and a hash where names differ only by case.
    Depends on the whole list only, so every shard derives the same names."""
    stems = {}
    for key in keys:
        parts = [_safe_part(p) for p in PurePosixPath(key).parts if p not in ("/", "")]
        stems[key] = "/".join(parts or ["_"])

    def without_suffix(stem: str) -> str:
        head, _, name = stem.rpartition("/")
        base, dot, suffix = name.rpartition(".")
        name = base if dot and base and suffix.lower() in {s[1:] for s in IMAGE_SUFFIXES} else name
        return f"{head}/{name}" if head else name

    short = {key: without_suffix(stem) for key, stem in stems.items()}
    counts = _count_lower(short.values())
    names = {key: short[key] if counts[short[key].lower()] == 1 else stems[key] for key in keys}
    counts = _count_lower(names.values())
    for key, stem in names.items():
        if counts[stem.lower()] > 1:
            names[key] = f"{stem}~{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return names


def as_inputs(source: str | os.PathLike | Iterable) -> list[Input]:
    """The inputs of ``source``.

    A string or path: a folder (recursive), a glob pattern, a list file (one path per line,
    relative to the list's folder) or one image file. A sequence: image files (keys relative
    to their common folder), :class:`Input` items, or RGB uint8 arrays (``image-0``, ...).
    """
    if isinstance(source, (str, os.PathLike)):
        return collect_inputs(source)
    if isinstance(source, np.ndarray):
        source = [source]
    items: list[Input] = []
    paths: list[Path] = []
    for index, entry in enumerate(source):
        if isinstance(entry, Input):
            items.append(entry)
        elif isinstance(entry, np.ndarray):
            items.append(Input(f"image-{index}", None, entry))
        elif isinstance(entry, (str, os.PathLike)):
            paths.append(Path(entry))
        else:
            raise TypeError(
                f"input {index} is a {type(entry).__name__}; pass image paths, RGB uint8 arrays "
                "or camkit.data.inputs.Input items"
            )
    if paths and items:
        raise TypeError("pass either image paths or arrays/Input items, not a mix")
    return _unique(_files(paths) if paths else items)
