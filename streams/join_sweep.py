"""The join's expiry as a sweep: a slice of each join table per ingest batch, not all at once.

An expiry visits every entry of a partition (an entry's age is in its value, not its key).
Done at once, that was one stall of the event loop per partition and expiry: ~0.6 us per
entry (``bench/join_expiry.py``), so a partition holding a week of predictions at 1,000/s
(600 million entries) would stop the worker for minutes, with alerts waiting behind it. A
`Sweeps` goes through each table in key order, `EXPIRY_SLICE` entries per ingest batch of the
partition, from where the last slice stopped; the expiry of each slice is the same as before
(`streams.join_batch.stubs_of`, then ``MonitorKit.expire``). An entry may outlive the TTL by
up to one sweep; a sweep in progress is not restarted, so every entry is visited.

>>> class Table:
...     def __init__(self, keys):
...         self.keys = keys
...     def items_after(self, partition, after, limit):
...         later = [k for k in self.keys if after is None or k > after]
...         return [(k, b"[1]") for k in later[:limit]]
>>> sweeps = Sweeps([Table([b"a", b"b", b"c"]), Table([])], slice_entries=2)
>>> sweeps.start(0)
>>> [[key for key, _ in items] for items in sweeps.next_slices(0)]
[[b'a', b'b'], []]
>>> sweeps.in_progress(0), [[key for key, _ in items] for items in sweeps.next_slices(0)]
(True, [[b'c'], []])
>>> sweeps.in_progress(0)
False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

__all__ = ["EXPIRY_SLICE", "Sweeps", "SweptTable"]

EXPIRY_SLICE: Final = 20_000
"""Entries of each join table one ingest batch of a partition expires at most (~12 ms)."""

Items = list[tuple[bytes, bytes]]


class SweptTable(Protocol):
    """What a sweep needs of a join table (a `streams.journal_table.JournalTable`)."""

    def items_after(self, partition: int, after: bytes | None, limit: int) -> Items: ...


@dataclass
class _Sweep:
    after: list[bytes | None]
    """Per table: the last key visited (None: none yet)."""
    done: list[bool] = field(default_factory=list)


class Sweeps:
    """The sweeps in progress, per partition, through the same tables."""

    def __init__(self, tables: Sequence[SweptTable], *, slice_entries: int = EXPIRY_SLICE):
        self.tables = list(tables)
        self.slice_entries = slice_entries
        self._sweeps: dict[int, _Sweep] = {}

    def in_progress(self, partition: int) -> bool:
        return partition in self._sweeps

    def start(self, partition: int) -> None:
        """Begin a sweep of ``partition`` (one in progress goes on from where it is)."""
        if partition not in self._sweeps:
            count = len(self.tables)
            self._sweeps[partition] = _Sweep([None] * count, [False] * count)

    def next_slices(self, partition: int) -> list[Items]:
        """The next slice of each table (empty for a table swept to its end); the sweep ends
        once every table is."""
        sweep = self._sweeps[partition]
        slices: list[Items] = []
        for index, table in enumerate(self.tables):
            if sweep.done[index]:
                slices.append([])
                continue
            items = table.items_after(partition, sweep.after[index], self.slice_entries)
            if items:
                sweep.after[index] = items[-1][0]
            sweep.done[index] = len(items) < self.slice_entries
            slices.append(items)
        if all(sweep.done):
            del self._sweeps[partition]
        return slices
