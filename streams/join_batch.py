"""A partition batch's share of the join tables, as plain dicts, and what the batch changed.

The ingest reads the entries of every event_id in a batch with one lookup per table, lets the
pure `LabelJoiner` work on plain dicts (its fast path), and writes back only what changed, in
one write and one changelog journal per table (`streams.journal_table`).

>>> before = {"e-1": [5, "m", None, 1, None, None], "e-2": [6, "m", None, 0, None, None]}
>>> after = dict(before)
>>> after["e-1"] = [5]          # joined: only its time stays, to spot duplicate labels
>>> del after["e-2"]
>>> after["e-3"] = [7, "m", None, 1, None, None]
>>> changes_of(before, after)
{b'e-1': b'[5]', b'e-3': b'[7,"m",null,1,null,null]', b'e-2': None}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from streams import json_read, json_write

__all__ = [
    "BatchStore",
    "changes_of",
    "deletes_of",
    "entries_of",
    "expiry_stubs",
    "join_keys",
    "stubs_of",
]


class BatchStore(Protocol):
    """What the ingest needs of a join table (a `JournalTable`)."""

    def read_many(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes]: ...

    def items_in(self, partition: int) -> Iterable[tuple[bytes, bytes]]: ...

    def holds_any(self, partition: int) -> bool: ...


def entries_of(table: BatchStore, partition: int, keys: list[bytes]) -> dict[str, Any]:
    """The join entries ``table`` holds for ``keys`` (`join_keys`) in ``partition`` (decoded);
    no lookup at all when the partition is empty."""
    if not keys or not table.holds_any(partition):
        return {}
    return {
        key.decode(): json_read.loads(raw) for key, raw in table.read_many(partition, keys).items()
    }


def join_keys(event_ids: Iterable[str]) -> list[bytes]:
    """The table keys of ``event_ids``, each once.

    >>> join_keys(["e-1", "e-2", "e-1"])
    [b'e-1', b'e-2']
    """
    return list(dict.fromkeys(key.encode() for key in event_ids))


def expiry_stubs(
    table: BatchStore, partition: int, older_than: int | None = None
) -> dict[str, tuple[int, ...]]:
    """The join entries of ``partition`` whose event time (epoch microseconds) is before
    ``older_than`` (every entry when None), cut down to what `LabelJoiner.expire` reads:
    their event time (the leading number) and whether they hold more than that time
    (``len > 1``: a prediction still waiting for its label, or an early label).

    An expiry scans the whole partition; parsing the leading number of each entry, not the
    whole entry, makes that scan several times cheaper, and keeping only the entries that
    expire spares the joiner a pass over the rest (``bench/join_expiry.py``). An expiry only
    deletes, so what it writes back is `deletes_of` the stubs.

    >>> class Store:
    ...     def items_in(self, partition):
    ...         return [(b"e-1", b"[5]"), (b"e-2", b'[6,"m",null,1,null,null]'), (b"e-3", b"[7.0]")]
    >>> expiry_stubs(Store(), 0)
    {'e-1': (5,), 'e-2': (6, 0), 'e-3': (7,)}
    >>> expiry_stubs(Store(), 0, older_than=6)
    {'e-1': (5,)}
    """
    return stubs_of(table.items_in(partition), older_than)


def stubs_of(
    items: Iterable[tuple[bytes, bytes]], older_than: int | None = None
) -> dict[str, tuple[int, ...]]:
    """`expiry_stubs` of raw ``items`` (a partition, or a slice of it: `streams.join_sweep`).

    >>> stubs_of([(b"e-1", b"[5]"), (b"e-2", b'[6,"m"]')], older_than=7)
    {'e-1': (5,), 'e-2': (6, 0)}
    """
    stubs: dict[str, tuple[int, ...]] = {}
    for key, raw in items:
        end = raw.find(b",")
        try:
            at = int(raw[1:end]) if end > 0 else int(raw[1:-1])
            more = end > 0
        except ValueError:  # not the joiner's own integer layout: read it whole
            entry = json_read.loads(raw)
            at, more = int(entry[0]), len(entry) > 1
        if older_than is None or at < older_than:
            stubs[key.decode()] = (at, 0) if more else (at,)
    return stubs


def deletes_of(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[bytes, None]:
    """The deletes that turn ``before`` into ``after`` when nothing was added or changed
    (an expiry): a set difference, not a look at every kept entry.

    >>> deletes_of({"a": (1,), "b": (2,)}, {"b": (2,)})
    {b'a': None}
    """
    return {key.encode(): None for key in before.keys() - after.keys()}


def changes_of(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[bytes, bytes | None]:
    """Encoded writes (None: delete) that turn ``before`` into ``after``.

    The joiner never mutates an entry in place (it stores new lists), so an entry that is not
    the very object read before is new or changed.
    """
    changed = [(key, value) for key, value in after.items() if before.get(key) is not value]
    encoded = json_write.dumps_each([value for _, value in changed])
    changes: dict[bytes, bytes | None] = {
        key.encode(): value for (key, _), value in zip(changed, encoded, strict=True)
    }
    for key in before.keys() - after.keys():
        changes[key.encode()] = None
    return changes
