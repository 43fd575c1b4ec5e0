"""One join expiry of a large partition: whole entries decoded vs leading-number stubs.

An expiry reads every join entry its partition holds (once per quarter of the TTL of event
time) and stalls that partition's ingest meanwhile. This times what the worker does with the
entries once its store returned them (both rows read the same list of raw bytes): decode,
`LabelJoiner.expire`, and the writes back. Baseline: the whole JSON entry decoded and the
writes found by `changes_of` (the worker before `streams.join_batch.expiry_stubs`); then stubs
of every entry, then stubs of the expiring entries only (``older_than``). Every row must
delete the same keys; the script checks that before it prints.

A second table reads the pending entries from a real RocksDB partition (rocksdict, as the
worker's store) and times the scan with its peak Python memory (tracemalloc): every item in a
list first (the worker before) vs items streamed to `expiry_stubs` (the worker's).

A third table sweeps the same partition as the live worker does, in slices of `EXPIRY_SLICE`
(`streams.join_sweep`): a Python loop per item and per leading time (the worker before
61ec5c9) vs `JournalTable.items_after` (islice) and `stubs_of`'s native leading times.

    .venv/bin/python bench/join_expiry.py  # --entries 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.monitor_config import MonitorConfig
from streams import json_read, json_write
from streams.agents_monitor import MonitorKit
from streams.join_batch import changes_of, deletes_of, expiry_stubs, stubs_of
from streams.join_sweep import EXPIRY_SLICE
from streams.journal_table import JournalTable
from streams.metrics import WorkerMetrics

NOW = datetime(2024, 5, 1, tzinfo=UTC)
TTL_SECONDS = 7 * 24 * 3600


class RawStore:
    """What a partition's store returns to a scan: (key, encoded entry) pairs."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def read_many(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes]:
        raise NotImplementedError("an expiry scans the partition")

    def items_in(self, partition: int) -> list[tuple[bytes, bytes]]:
        return self.raw


def _stores(entries: int, seed: int) -> tuple[RawStore, RawStore]:
    """Pending predictions over two TTLs of event time (the older half expires), 30% of them
    already labelled (``[time]``), and an early label per 100 predictions."""
    rng = random.Random(seed)
    start_us = int((NOW - timedelta(seconds=2 * TTL_SECONDS)).timestamp() * 1e6)
    step_us = 2 * TTL_SECONDS * 1_000_000 // entries
    pending = []
    for i in range(entries):
        at = start_us + i * step_us
        if rng.random() < 0.3:
            entry: list[Any] = [at]
        else:
            entry = [at, "churn", "v3", round(rng.random(), 6), None, {"plan": "pro"}]
        pending.append((f"evt-{i:09d}".encode(), json_write.dumps(entry)))
    early = [
        (f"lbl-{i:09d}".encode(), json_write.dumps([start_us + i * step_us * 100, "churn", 1]))
        for i in range(entries // 100)
    ]
    return RawStore(pending), RawStore(early)


def _whole(store: RawStore, partition: int) -> dict[str, Any]:
    return {key.decode(): json_read.loads(raw) for key, raw in store.items_in(partition)}


def _expiring(store: RawStore, partition: int) -> dict[str, Any]:
    kit = MonitorKit(MonitorConfig.model_validate({"join": {"ttl_seconds": TTL_SECONDS}}))
    return expiry_stubs(store, partition, older_than=kit.expiry_horizon_us(NOW))


Reader = Callable[[RawStore, int], dict[str, Any]]
Writer = Callable[[dict[str, Any], dict[str, Any]], dict[bytes, Any]]


def _expire(
    read: Reader, write: Writer, stores: tuple[RawStore, RawStore]
) -> tuple[float, set[bytes]]:
    kit = MonitorKit(MonitorConfig.model_validate({"join": {"ttl_seconds": TTL_SECONDS}}))
    started = time.perf_counter()
    pending_before, early_before = read(stores[0], 0), read(stores[1], 0)
    pending_now, early_now = dict(pending_before), dict(early_before)
    kit.expire(pending_now, early_now, NOW, WorkerMetrics())
    writes = {**write(pending_before, pending_now), **write(early_before, early_now)}
    elapsed = time.perf_counter() - started
    if any(value is not None for value in writes.values()):
        raise AssertionError("an expiry only deletes")
    return elapsed, set(writes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="pending predictions")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (best is shown)")
    args = parser.parse_args()
    console = Console()
    with console.status(f"encoding {args.entries:,} join entries"):
        stores = _stores(args.entries, seed=7)
    rows: dict[str, float] = {}
    deleted: dict[str, set[bytes]] = {}
    paths: dict[str, tuple[Reader, Writer]] = {
        "whole entries, changes_of (baseline)": (_whole, changes_of),
        "stubs of every entry, deletes_of (the worker before)": (expiry_stubs, deletes_of),
        "stubs of the expiring entries only, deletes_of (the worker's)": (_expiring, deletes_of),
    }
    for name, (read, write) in paths.items():
        with console.status(f"{name}: {args.repeat} runs"):
            runs = [_expire(read, write, stores) for _ in range(args.repeat)]
        rows[name] = min(seconds for seconds, _ in runs)
        deleted[name] = runs[0][1]
    if len({frozenset(keys) for keys in deleted.values()}) != 1:
        raise AssertionError("the rows deleted different keys")
    total = len(stores[0].raw) + len(stores[1].raw)
    expired = len(next(iter(deleted.values())))
    baseline = next(iter(rows.values()))
    table = Table(title=f"one expiry of {total:,} join entries ({expired:,} expire)")
    for column in ("path", "seconds", "entries/s", "vs baseline"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, seconds in rows.items():
        ratio = f"{baseline / seconds:.1f}x"
        table.add_row(name, f"{seconds:.2f}", f"{total / seconds:,.0f}", ratio)
    console.print(table)
    _scan_rocksdb(console, stores[0], NOW)


def _scan_rocksdb(console: Console, pending: RawStore, now: datetime) -> None:
    """One partition's scan out of RocksDB: listed first vs streamed; seconds and peak."""
    import tempfile
    import tracemalloc

    from rocksdict import Options, Rdict, WriteBatch

    kit = MonitorKit(MonitorConfig.model_validate({"join": {"ttl_seconds": TTL_SECONDS}}))
    horizon = kit.expiry_horizon_us(now)
    with tempfile.TemporaryDirectory() as where, console.status("writing a RocksDB partition"):
        db = Rdict(where, options=Options(raw_mode=True))
        batch = WriteBatch(raw_mode=True)
        for key, value in pending.raw:
            batch.put(key, value)
        db.write(batch)

        class Listed:
            def items_in(self, partition: int) -> list[tuple[bytes, bytes]]:
                # A raw-mode store: every key and value is bytes.
                return [(cast(bytes, key), value) for key, value in db.items()]

        class Streamed:
            def items_in(self, partition: int) -> Any:
                return ((key, value) for key, value in db.items())

        table = Table(title=f"the scan of {len(pending.raw):,} entries out of RocksDB")
        for column in ("path", "seconds", "peak MiB (tracemalloc)"):
            table.add_column(column, justify="left" if column == "path" else "right")
        for name, store in (("listed first (the worker before)", Listed()),
                            ("streamed (the worker's)", Streamed())):  # fmt: skip
            tracemalloc.start()
            started = time.perf_counter()
            expiry_stubs(store, 0, older_than=horizon)
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            table.add_row(name, f"{seconds:.2f}", f"{peak / 2**20:,.0f}")
        console.print(table)
        _sweep_rocksdb(console, db, horizon, len(pending.raw))
        db.close()


def _sweep_rocksdb(console: Console, db: Any, horizon: int, entries: int, repeat: int = 3) -> None:
    """A whole sweep in slices: the Python loops before vs islice and native leading times."""

    class Store:
        offset_key = b"__offset__"  # never written here; skipped as the worker skips Faust's

        def _db_for_partition(self, partition: int) -> Any:
            return db

    class Tables:
        data = Store()

    def slice_before(after: bytes | None) -> list[tuple[bytes, bytes]]:
        items = db.items() if after is None else db.items(from_key=after)
        found: list[tuple[bytes, bytes]] = []
        for key, value in items:
            if key in (after, Store.offset_key):
                continue
            found.append((key, value))
            if len(found) >= EXPIRY_SLICE:
                break
        return found

    def slice_now(after: bytes | None) -> list[tuple[bytes, bytes]]:
        return JournalTable.items_after(Tables(), 0, after, EXPIRY_SLICE)  # type: ignore[arg-type]

    def stubs_before(items: list[tuple[bytes, bytes]]) -> dict[str, tuple[int, ...]]:
        return stubs_of(iter(items), horizon)  # not a list: the Python loop

    def stubs_now(items: list[tuple[bytes, bytes]]) -> dict[str, tuple[int, ...]]:
        return stubs_of(items, horizon)  # a list: the native scan

    Slicer = Callable[[bytes | None], list[tuple[bytes, bytes]]]
    Stubber = Callable[[list[tuple[bytes, bytes]]], dict[str, tuple[int, ...]]]
    paths: dict[str, tuple[Slicer, Stubber]] = {
        "Python loops (the worker before)": (slice_before, stubs_before),
        "islice + native leading times (the worker's)": (slice_now, stubs_now),
    }
    table = Table(
        title=f"a sweep of {entries:,} entries in slices of {EXPIRY_SLICE:,}, best of {repeat}"
    )
    for column in ("path", "scan s", "leading times s", "us per entry", "expiring"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, (take, stubs_for) in paths.items():
        best: tuple[float, float, int] | None = None
        for _ in range(repeat):
            scan = parse = 0.0
            expiring, after = 0, None
            while True:
                started = time.perf_counter()
                items = take(after)
                scan += time.perf_counter() - started
                started = time.perf_counter()
                stubs = stubs_for(items)
                parse += time.perf_counter() - started
                expiring += len(stubs)
                if len(items) < EXPIRY_SLICE:
                    break
                after = items[-1][0]
            if best is None or scan + parse < best[0] + best[1]:
                best = (scan, parse, expiring)
        assert best is not None
        scan, parse, expiring = best
        per_entry = (scan + parse) / entries * 1e6
        table.add_row(name, f"{scan:.2f}", f"{parse:.2f}", f"{per_entry:.2f}", f"{expiring:,}")
    console.print(table)


if __name__ == "__main__":
    main()
