"""Shards: disjoint, deterministic, covering every input."""

from __future__ import annotations

import pytest

from camkit.export import ExportError, parse_shard, shard_of


def test_shards_are_disjoint_deterministic_and_cover_every_input():
    items = list(range(11))
    shards = [shard_of(items, (k, 3)) for k in range(3)]
    assert shards[1] == [1, 4, 7, 10] and sorted(i for shard in shards for i in shard) == items
    assert parse_shard(" 2 / 4 ") == (2, 4)
    for text, message in [("4/4", "not valid"), ("1/0", "not valid"), ("a/b", "not K/N")]:
        with pytest.raises(ExportError, match=message):
            parse_shard(text)
