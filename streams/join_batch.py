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

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams import json_read, json_write
from streams.ingest_native import NATIVE

_ENTRY_TIMES: Callable[[list[bytes], int | None], EntryTimes | None] | None = getattr(
    NATIVE, "entry_times", None
)
"""The native lane's scan of join entries' leading times (None: not built, or older)."""

__all__ = [
    "BatchJoin",
    "BatchStore",
    "ScannedStore",
    "changes_of",
    "deletes_of",
    "entries_of",
    "expiry_stubs",
    "fresh_entries",
    "stubs_of",
]


EntryTimes = tuple[list[int], list[int], list[bool]]
"""Indices, leading times and "holds more" of the join entries before a horizon."""


class ScannedStore(Protocol):
    """What an expiry scan reads of a join table (`expiry_stubs`)."""

    def items_in(self, partition: int) -> Iterable[tuple[bytes, bytes]]: ...


class BatchStore(ScannedStore, Protocol):
    """What the ingest needs of a join table (a `JournalTable`)."""

    def read_many(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes]: ...

    def write_many(self, partition: int, changes: dict[bytes, bytes | None]) -> None: ...

    def holds_any(self, partition: int) -> bool: ...


@dataclass
class BatchJoin:
    """One partition batch's share of the join tables (``pending``, ``early``): read before
    the batch is joined, written back after.

    The joiner works on ``pending_now`` and ``early_now`` (plain dicts, its fast path).
    ``pended``: when set, the batch's predictions meet nothing in the join
    (`fresh_entries`): the joiner is not to see them (``fold_columns(...,
    join_predictions=False)``) and their entries, as parsed, are written with its changes.
    """

    pending_before: dict[str, Any]
    early_before: dict[str, Any]
    pended: dict[bytes, bytes] | None
    pending_now: dict[str, Any] = field(init=False)
    early_now: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.pending_now = dict(self.pending_before)
        self.early_now = dict(self.early_before)

    @classmethod
    def read(
        cls,
        pending: BatchStore,
        early: BatchStore,
        partition: int,
        prediction_ids: list[str],
        label_ids: list[str],
        entries: list[list[bytes]] | None = None,
    ) -> BatchJoin:
        """The entries of the batch's event_ids (``entries``: each prediction's, encoded by
        the parse; None: the joiner builds them)."""
        # Each id is encoded once: the table keys serve every lookup (a key twice in one
        # lookup is harmless) and the entries' writes.
        prediction_keys = [event_id.encode() for event_id in prediction_ids]
        label_keys = [event_id.encode() for event_id in label_ids]
        early_before = entries_of(early, partition, prediction_keys + label_keys)
        pended = fresh_entries(
            pending, partition, prediction_keys, prediction_ids, label_ids, entries, early_before
        )
        looked_up = label_keys if pended is not None else prediction_keys + label_keys
        return cls(entries_of(pending, partition, looked_up), early_before, pended)

    def write(self, pending: BatchStore, early: BatchStore, partition: int) -> None:
        """Write back what the batch changed, one write per table."""
        changes = changes_of(self.pending_before, self.pending_now)
        if self.pended is not None:  # disjoint from what the labels changed
            changes.update(self.pended)
        pending.write_many(partition, changes)
        early.write_many(partition, changes_of(self.early_before, self.early_now))


def entries_of(table: BatchStore, partition: int, keys: list[bytes]) -> dict[str, Any]:
    """The join entries ``table`` holds for ``keys`` in ``partition`` (decoded; a key given
    twice is harmless); no lookup at all when the partition is empty."""
    if not keys or not table.holds_any(partition):
        return {}
    return {
        key.decode(): json_read.loads(raw) for key, raw in table.read_many(partition, keys).items()
    }


def fresh_entries(
    table: BatchStore,
    partition: int,
    keys: list[bytes],
    prediction_ids: list[str],
    label_ids: list[str],
    entries: list[list[bytes]] | None,
    early: Mapping[str, Any],
) -> dict[bytes, bytes] | None:
    """The writes that pend a batch's predictions (``keys``: their ``prediction_ids``
    encoded; ``entries``: each row's entry, encoded by the parse, in the same order) when no
    prediction meets anything in the
    join: no event_id twice, none labelled in the batch (``label_ids``) or before it
    (``early``: the batch's entries of the early labels), none already in ``table`` (a
    duplicate). Then the joiner has nothing to do for them and each entry is written as
    parsed. None when any meets something (or ``entries`` is None): the joiner must see them.

    >>> class Store:
    ...     held = {b"e-9": b"[1]"}
    ...     def holds_any(self, partition): return True
    ...     def read_many(self, partition, keys):
    ...         return {key: self.held[key] for key in keys if key in self.held}
    >>> def fresh(ids, label_ids, entries):
    ...     keys = [i.encode() for i in ids]
    ...     return fresh_entries(Store(), 0, keys, ids, label_ids, entries, {})
    >>> fresh(["e-1", "e-2"], [], [[b"[5]"], [b"[6]"]])
    {b'e-1': b'[5]', b'e-2': b'[6]'}
    >>> fresh(["e-1", "e-9"], [], [[b"[5]", b"[6]"]]) is None
    True
    >>> fresh(["e-1"], ["e-1"], [[b"[5]"]]) is None
    True
    """
    if entries is None or not prediction_ids:
        return None
    writes = dict(zip(keys, itertools.chain.from_iterable(entries), strict=True))
    if len(writes) != len(keys):  # an event_id twice: which pends depends on the order
        return None
    if early and not early.keys().isdisjoint(prediction_ids):
        return None
    if label_ids and not set(label_ids).isdisjoint(prediction_ids):
        return None
    if table.holds_any(partition) and table.read_many(partition, keys):
        return None  # a duplicate of a prediction waiting or joined
    return writes


def expiry_stubs(
    table: ScannedStore, partition: int, older_than: int | None = None
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
    if isinstance(items, list) and _ENTRY_TIMES is not None:
        # A sweep's slice: the native scan reads each leading time without a Python step
        # per entry (~0.3 us each here; most entries of a slice do not expire).
        found = _ENTRY_TIMES([raw for _, raw in items], older_than)
        if found is not None:
            indices, times, holding = found
            return {
                items[index][0].decode(): (at, 0) if holds_more else (at,)
                for index, at, holds_more in zip(indices, times, holding, strict=True)
            }
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
