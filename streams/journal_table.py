"""A Faust table whose changelog carries one message per batch of writes instead of one per key.

The label join writes a key per prediction and per label: with Faust's `Table` that was one
changelog message per event, the ingest's largest cost. A `JournalTable` keeps every key in its
store as usual (RocksDB or memory) but collects the writes of each partition in a *journal*;
`flush_journal` sends it as one changelog message. Recovery (and standby replicas) expand each
journal back into its keys before they reach the store, so the store looks exactly as if every
key had been logged one by one.

Journal keys are unique, so compaction could never drop one: the changelog uses time retention
instead (``retention`` seconds, twice the join TTL by default). Kafka deletes the oldest
segments first, and a journal that old only holds entries the TTL expired long ago; the later
journals that overwrote or deleted them are still there, so nothing comes back to life.

>>> journal = {b"e-1": b'[1,"m"]', b"e-2": None, b"e-3": b""}
>>> decode_journal(encode_journal(journal)) == journal
True
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import islice
from typing import Any, Final, cast

import numpy as np
from faust import Table
from faust.types import TP, EventT

from streams import json_read
from streams.ingest_native import NATIVE
from streams.rocksdb_memory import scan_reads

__all__ = [
    "JOURNAL_FORMAT",
    "JOURNAL_MAGIC",
    "JournalTable",
    "decode_journal",
    "encode_journal",
    "partition_items",
    "put_in_partition",
]

JOURNAL_FORMAT: Final = 2
JOURNAL_MAGIC: Final = b"DLJ\x02"
"""A format 2 journal starts so; format 1 journals (JSON objects, before the 22nd session)
still decode."""
JOURNAL_KEY: Final = b"\x00journal"
"""Changelog key of every journal (the topic is not compacted: any constant does)."""
MAX_JOURNAL_BYTES: Final = 4 << 20
"""A partition's journal is sent once it holds about this much, even within a batch."""
_COUNT = struct.Struct("<I")
_SCAN_READS: Final = cache(scan_reads)
"""One set of read options for every sweep (rocksdict copies them per call)."""
_NATIVE_ENCODE: Final[Callable[[dict[bytes, bytes | None], bytes], bytes | None] | None] = getattr(
    NATIVE, "encode_journal", None
)
"""``native/src/journal.rs``: the same bytes, ~4x faster (None without the native build, or
with one older than it)."""


def encode_journal(changes: dict[bytes, bytes | None]) -> bytes:
    """Keys and values as they are, framed by their lengths (-1: a delete).

    Layout: `JOURNAL_MAGIC`, the count (uint32), the keys' lengths (uint32 each), the values'
    lengths (int64 each, -1 for a delete), the keys, the values; little-endian. Format 1
    wrote JSON with every value re-escaped as a string: ~9 % of the ingest of SDK envelopes.
    """
    if _NATIVE_ENCODE is not None:
        framed = _NATIVE_ENCODE(changes, JOURNAL_MAGIC)
        if framed is not None:
            return framed
    keys = list(changes)
    values = list(changes.values())
    count = len(keys)
    key_lengths = np.fromiter(map(len, keys), dtype="<u4", count=count)
    value_lengths = np.fromiter((-1 if v is None else len(v) for v in values), "<i8", count)
    parts = (key_lengths.tobytes(), value_lengths.tobytes(), *keys, *filter(None, values))
    return b"".join((JOURNAL_MAGIC, _COUNT.pack(count), *parts))


def decode_journal(raw: bytes) -> dict[bytes, bytes | None]:
    """The changes of one journal message, in the order they were made."""
    if raw[:1] == b"{":
        return _decode_json_journal(raw)
    if not raw.startswith(JOURNAL_MAGIC) or len(raw) < 8:
        raise ValueError(_NOT_A_JOURNAL)
    (count,) = _COUNT.unpack_from(raw, 4)
    body = 8 + 12 * count
    if len(raw) < body:
        raise ValueError(f"a driftline join journal cut short: {_NOT_A_JOURNAL}")
    key_lengths = np.frombuffer(raw, "<u4", count, 8).astype(np.int64)
    value_lengths = np.frombuffer(raw, "<i8", count, 8 + 4 * count)
    lengths = np.concatenate([key_lengths, np.maximum(value_lengths, 0)])
    ends = (body + np.cumsum(lengths)).tolist()
    if (ends[-1] if ends else body) != len(raw) or bool((value_lengths < -1).any()):
        raise ValueError(f"a driftline join journal of the wrong length: {_NOT_A_JOURNAL}")
    starts = [body, *ends[:-1]] if ends else []
    pieces = [raw[start:end] for start, end in zip(starts, ends, strict=True)]
    deleted = (value_lengths == -1).tolist()
    values = [None if gone else piece for piece, gone in zip(pieces[count:], deleted, strict=True)]
    return dict(zip(pieces[:count], values, strict=True))


_NOT_A_JOURNAL = (
    f"not a driftline join journal (format {JOURNAL_FORMAT}): the changelog holds other data; "
    f"delete the changelog topic or use a new topic prefix"
)


def _decode_json_journal(raw: bytes) -> dict[bytes, bytes | None]:
    """A format 1 journal: ``{"format": 1, "changes": [[key, value or null], ...]}``, keys
    and values as text (``surrogateescape`` kept any bytes)."""
    data = json_read.loads_own(raw)
    if not isinstance(data, dict) or data.get("format") != 1:
        raise ValueError(_NOT_A_JOURNAL)
    return {
        key.encode("utf-8", "surrogateescape"): (
            None if value is None else value.encode("utf-8", "surrogateescape")
        )
        for key, value in data["changes"]
    }


@dataclass(frozen=True)
class _Message:
    """The parts of a changelog message a Faust store's ``apply_changelog_batch`` reads."""

    tp: TP
    partition: int
    offset: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True)
class _KeyEvent:
    """One key of a journal, shaped like the changelog event of a per-key write."""

    message: _Message

    @property
    def key(self) -> bytes:
        return self.message.key

    @property
    def value(self) -> bytes | None:
        return self.message.value


def expand_journals(batch: Iterable[EventT[Any]]) -> Iterator[_KeyEvent]:
    """Every key write of every journal in ``batch``, at its journal's partition and offset."""
    for event in batch:
        message = event.message
        if message.value is None:
            continue  # nothing deletes a journal; a tombstone would carry no changes
        for key, value in decode_journal(message.value).items():
            yield _KeyEvent(_Message(message.tp, message.partition, message.offset, key, value))


class JournalTable(Table[bytes, bytes]):
    """A raw-bytes `Table` whose writes are logged per partition batch (see module doc)."""

    def __init__(self, *args: Any, retention_seconds: float, **kwargs: Any) -> None:
        self._retention_seconds = retention_seconds
        self._journals: dict[int, dict[bytes, bytes | None]] = {}
        self._journal_bytes: dict[int, int] = {}
        super().__init__(*args, **kwargs)

    def _new_changelog_topic(self, **kwargs: Any) -> Any:
        return super()._new_changelog_topic(
            retention=self._retention_seconds, compacting=False, deleting=True
        )

    def on_key_set(self, key: bytes, value: bytes) -> None:
        self._note(self._current_partition(key), key, value)
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: bytes) -> None:
        self._note(self._current_partition(key), key, None)
        self._sensor_on_del(self, key)

    def _current_partition(self, key: bytes) -> int:
        partition = self.partition_for_key(key)
        assert partition is not None  # tables here never use the partitioner
        return int(partition)

    def read_many(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes]:
        """The values of those ``keys`` that ``partition``'s store holds, in one lookup."""
        store = self.data
        if hasattr(store, "_db_for_partition"):  # RocksDB: one multi-get
            values = store._db_for_partition(partition)[keys]
            found = zip(keys, values, strict=True)
            return {key: value for key, value in found if value is not None}
        held = store.data  # the memory store's dict (all partitions)
        return {key: held[key] for key in keys if held.get(key) is not None}

    def holds_any(self, partition: int) -> bool:
        """Whether ``partition``'s store may hold a key (False: certainly none).

        One iterator step in RocksDB (~1 us, more over many fresh deletes), against ~0.4 us
        per key of a lookup: the table of early labels is empty while labels come after
        their predictions, and the ingest then skips looking every prediction up in it.
        The memory store answers True (it would have to scan every partition's keys).
        """
        store = self.data
        if not hasattr(store, "_db_for_partition"):
            return True
        offset_key = cast(Any, store).offset_key  # Faust keeps its changelog offset there
        first = islice(store._db_for_partition(partition).keys(), 2)
        return any(key != offset_key for key in first)

    def items_after(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` keys and values of ``partition``'s store, in key order, from the
        first key after ``after`` (from the start when None): a slice of `streams.join_sweep`.

        The memory store keeps no order: it answers the whole partition at once (and nothing
        after that).
        """
        store = self.data
        if not hasattr(store, "_db_for_partition"):
            return [] if after is not None else list(partition_items(self, partition))
        offset_key = cast(Any, store).offset_key
        db = store._db_for_partition(partition)
        items = db.items(from_key=after, read_opt=_SCAN_READS())
        # At most two keys to skip (``after`` itself, the offset key): islice reads in C.
        read: list[tuple[bytes, bytes]] = list(islice(items, limit + 2))
        found = [item for item in read if item[0] != after and item[0] != offset_key]
        return found[:limit]

    def items_in(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value ``partition``'s store holds, whatever partitioner placed them
        (read as the caller goes: a partition may hold millions).

        The join is local to a partition: a producer that keys predictions and labels by
        ``event_id`` with any one partitioner (librdkafka's default CRC32 as well as Kafka's
        murmur2) puts both halves of a pair on the same partition, and so in its store.
        """
        return partition_items(self, partition)

    def write_many(self, partition: int, changes: dict[bytes, bytes | None]) -> None:
        """Write (None: delete) ``changes`` to ``partition``'s store and journal at once.

        Bypasses the per-key `Table` machinery (current event, sensors, key index) that cost
        more than the join itself; reads through the table still see every write.
        """
        store = self.data
        if hasattr(store, "_db_for_partition"):
            from rocksdict import WriteBatch

            batch = WriteBatch(raw_mode=True)
            if None in changes.values():
                for key, value in changes.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
            else:  # only puts (new predictions): the loop runs in C
                deque(map(batch.put, changes.keys(), changes.values()), maxlen=0)
            store._db_for_partition(partition).write(batch)
        else:
            # The memory store keeps every partition in one dict and knows each key's
            # partition only from recovery: `items_in` and rebalances need it for ours too.
            held, placed = store.data, _key_partitions(store)
            for key, value in changes.items():
                if value is None:
                    held.pop(key, None)
                    placed.pop(key, None)
                else:
                    held[key] = value
                    placed[key] = partition
        self._note_many(partition, changes)

    def _note(self, partition: int, key: bytes, value: bytes | None) -> None:
        self._note_many(partition, {key: value})

    def _note_many(self, partition: int, changes: dict[bytes, bytes | None]) -> None:
        """Add ``changes`` to ``partition``'s journal, sent whenever it reaches
        `MAX_JOURNAL_BYTES` (a batch's changes are cut where needed)."""
        journal = self._journals.setdefault(partition, {})
        size = self._journal_bytes.get(partition, 0)
        more = sum(map(len, changes)) + sum(map(len, filter(None, changes.values())))
        if size + more < MAX_JOURNAL_BYTES:
            journal.update(changes)
            self._journal_bytes[partition] = size + more
            return
        for key, value in changes.items():  # rare: one change at a time up to the limit
            journal = self._journals.setdefault(partition, {})
            journal[key] = value
            size = self._journal_bytes.get(partition, 0) + len(key) + len(value or b"")
            self._journal_bytes[partition] = size
            if size >= MAX_JOURNAL_BYTES:
                self.flush_journal(partition)

    def flush_journal(self, partition: int) -> bool:
        """Send ``partition``'s journal to the changelog (False: nothing was written)."""
        changes = self._journals.pop(partition, None)
        self._journal_bytes.pop(partition, None)
        if not changes:
            return False
        self.send_changelog(partition, JOURNAL_KEY, encode_journal(changes))
        return True

    def flush_journals(self) -> int:
        """Send every partition's journal; the number sent."""
        return sum(self.flush_journal(partition) for partition in list(self._journals))

    def apply_changelog_batch(self, batch: Iterable[EventT[Any]]) -> None:
        # The store reads only ``.message`` (and ``.key``/``.value``) of each event.
        keys: list[Any] = list(expand_journals(batch))
        self.data.apply_changelog_batch(keys, to_key=self._to_key, to_value=self._to_value)


def partition_items(table: Table[bytes, bytes], partition: int) -> Iterator[tuple[bytes, bytes]]:
    """The keys and values of a raw-bytes table that ``partition``'s store holds, read as the
    caller goes (a join partition may hold millions: a list of them all was a memory spike
    at every expiry). Nothing may write to the partition until the caller is done.

    RocksDB keeps a database per partition; the memory store knows a key's partition from
    recovery (and, for join tables, from `JournalTable.write_many`).
    """
    store = table.data
    if hasattr(store, "_db_for_partition"):
        offset_key = cast(Any, store).offset_key  # Faust keeps its changelog offset there
        items = store._db_for_partition(partition).items()
        return ((key, value) for key, value in items if key != offset_key)
    held, placed = store.data, _key_partitions(store)
    return ((key, held[key]) for key, where in placed.items() if where == partition and key in held)


def _key_partitions(memory_store: Any) -> dict[bytes, int]:
    """The memory store's key -> partition map (Faust fills it only on recovery)."""
    placed: dict[bytes, int] = memory_store._key_partition
    return placed


def put_in_partition(table: Table[bytes, bytes], partition: int, key: bytes, value: bytes) -> None:
    """Write ``key`` of a raw-bytes table in ``partition``, with no current event (a timer).

    `Table.__setitem__` takes the partition from the event being processed; a timer has none.
    """
    store = table.data
    if hasattr(store, "_db_for_partition"):
        store._db_for_partition(partition).put(key, value)
    else:
        store.data[key] = value
    table.send_changelog(partition, key, value)
