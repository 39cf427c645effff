"""Inputs and names: folders, globs, list files, files one by one, arrays; safe, unique output
names."""

from __future__ import annotations

import numpy as np
import pytest

from camkit.data.inputs import Input, InputError, as_inputs, collect_inputs, output_names
from camkit.data.shapes import write_dataset


def test_inputs_from_a_glob_and_a_list_file(tmp_path):
    write_dataset(tmp_path / "data", 6, size=32, seed=3)
    images = tmp_path / "data" / "images"
    flat = collect_inputs(str(images) + "/circle/*.png")  # keys relative to the fixed part
    assert flat and all("/" not in i.key and i.path.parent.name == "circle" for i in flat)
    deep = collect_inputs(str(images) + "/**/*.png")
    assert {i.key for i in deep} >= {f"circle/{i.key}" for i in flat}
    listing = tmp_path / "list.txt"
    first = sorted(images.rglob("*.png"))[0]
    listing.write_text(f"# a comment\n{first}\n\ndata/images/zero.png\n../elsewhere/x.png\n")
    keys = [i.key for i in collect_inputs(listing)]
    assert keys == sorted(
        [first.as_posix().lstrip("/"), "data/images/zero.png", "../elsewhere/x.png"]
    )
    assert {i.list_file for i in collect_inputs(listing)} == {listing}  # for error messages
    assert {i.list_file for i in deep} == {None}
    with pytest.raises(InputError, match="does not exist"):
        collect_inputs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        collect_inputs(tmp_path / "empty")


def test_output_names_stay_inside_and_never_collide():
    keys = ["../../etc/passwd.png", "a/../b.png", "/abs/x.png", "A.png", "a.png", "a.jpg",
            "x\x00y\n.png", "sub/ünï code.png", "sub/ünï code.jpg"]  # fmt: skip
    names = output_names(keys)
    assert len(set(n.lower() for n in names.values())) == len(keys)
    for name in names.values():
        parts = name.split("/")
        assert ".." not in parts and "." not in parts and not name.startswith("/")
        assert all(c >= " " for c in name)
    assert names["sub/ünï code.png"].startswith("sub/ünï code")
    assert output_names(["a.png", "b.png"]) == {"a.png": "a", "b.png": "b"}


def test_files_named_one_by_one_keep_apart_by_relative_path(tmp_path):
    for sub in ("p", "q"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.jpg").write_bytes(b"")
    items = as_inputs([tmp_path / "p" / "same.jpg", tmp_path / "q" / "same.jpg"])
    assert [i.key for i in items] == ["p/same.jpg", "q/same.jpg"]
    assert len(set(output_names([i.key for i in items]).values())) == 2
    single = as_inputs([tmp_path / "p" / "same.jpg"])
    assert [i.key for i in single] == ["same.jpg"]
    twice = as_inputs([tmp_path / "p" / "same.jpg"] * 2)
    assert len({i.key for i in twice}) == 2  # the same file twice: two names


def test_arrays_and_inputs(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    assert [i.key for i in as_inputs([image, image])] == ["image-0", "image-1"]
    assert as_inputs([Input("x", image=image)])[0].key == "x"
    with pytest.raises(TypeError, match="image paths"):
        as_inputs([3])
    with pytest.raises(TypeError, match="not a mix"):
        as_inputs([image, tmp_path / "a.png"])
