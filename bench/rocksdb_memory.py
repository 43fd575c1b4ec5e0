"""RocksDB memory of a worker's stores: Faust's per-database options vs one shared budget.

A worker opens one RocksDB database per table and partition it holds (5 tables). Each child
process here opens ``--partitions`` x 5 databases the way the worker does (Faust's
``RocksDBOptions`` with the worker's ``ROCKSDB_OPTIONS``), writes join-like entries (random
event ids, ~300-byte values) interleaved across the databases, then looks up ids it never
wrote (most of the join's lookups miss). It prints its resident memory (VmRSS) after opening
and at the end. Rows:

a. baseline: Faust's options, a block cache and memtables per database;
b. one cache and write buffer budget, with the table files' index and filter blocks held
   beside the cache (as before the 23rd session);
c. the same budget, index and filter blocks in the cache as one block per file;
d. ``streams.rocksdb_memory.share_rocksdb_memory()``: the same, in 4 KiB partitions (the
   worker's).
Column "outside": RocksDB's estimate of the table readers' memory (index and filter blocks)
outside any cache, which grows with the data written. "hit" and "miss": microseconds per
lookup of a written key (one in 1,000, shuffled) and of an absent one, after the writes.
``--cache-mib`` shrinks the shared cache to mimic a join whose index and filters outgrow it
(a 7-day TTL at 1,000 predictions/s is ~600 million entries).

    .venv/bin/python bench/rocksdb_memory.py  # --partitions 3,12 --megabytes 24 --cache-mib 128
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.malloc_trim import status_kib  # after the path
from streams.rocksdb_memory import IndexPlacement

TABLES = 5
PLACEMENTS: dict[str, IndexPlacement] = {"b": "beside", "c": "whole", "d": "partitioned"}


def rss_mib() -> float:
    kib = status_kib("VmRSS")
    return float("nan") if kib is None else kib / 1024


def child(partitions: int, megabytes: int, row: str, cache_mib: int) -> dict[str, float]:
    """Open, fill and read the databases of ``partitions``; memory and time as a dict."""
    import faust.stores.rocksdb as faust_rocksdb

    from streams.app import ROCKSDB_OPTIONS

    if row in PLACEMENTS:
        from streams.rocksdb_memory import share_rocksdb_memory

        share_rocksdb_memory(cache_mib << 20, (cache_mib << 20) // 2,
                             index_placement=PLACEMENTS[row])  # fmt: skip
    before = rss_mib()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        options = faust_rocksdb.RocksDBOptions(**dict(ROCKSDB_OPTIONS), use_rocksdict=True)
        dbs = [options.open(Path(directory) / f"db{i}") for i in range(partitions * TABLES)]
        opened = rss_mib()
        rng = random.Random(7)
        value = b'{"ts":1714550400000000,"features":' + b"x" * 260 + b"}"
        per_db = megabytes * (1 << 20) // len(value) // len(dbs)
        written: list[tuple[int, bytes]] = []
        for round_ in range(4):  # writes interleaved across databases, as partitions run
            for i, db in enumerate(dbs):
                for k in range(per_db // 4):
                    key = f"evt-{round_}-{k}-{rng.random()}".encode()
                    db[key] = value
                    if k % 1_000 == 0:
                        written.append((i, key))
        rng.shuffle(written)
        looked_up = time.perf_counter()
        assert all(dbs[i].get(key) is not None for i, key in written)
        hit_us = (time.perf_counter() - looked_up) / len(written) * 1e6
        looked_up = time.perf_counter()
        for db in dbs:  # the join looks ids up: most of them are not there
            for k in range(2_000):
                db.get(f"evt-3-{k}-x".encode())
        miss_us = (time.perf_counter() - looked_up) / (2_000 * len(dbs)) * 1e6
        end = rss_mib()
        outside = sum(db.property_int_value("rocksdb.estimate-table-readers-mem") for db in dbs)
        for db in dbs:
            db.close()
    return {
        "before": before,
        "opened": opened,
        "end": end,
        "hit_us": hit_us,
        "miss_us": miss_us,
        "outside_mib": outside / (1 << 20),
        "seconds": time.perf_counter() - started,
        "written_mib": per_db * len(dbs) * len(value) / (1 << 20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", default="3,12", help="comma-separated partition counts")
    parser.add_argument("--megabytes", type=int, default=24, help="written per partition")
    parser.add_argument("--cache-mib", type=int, default=128, help="shared cache (rows b-d)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        partitions, row = args.child.split(":")
        print(json.dumps(child(int(partitions), args.megabytes * int(partitions), row,
                               args.cache_mib)))  # fmt: skip
        return
    table = Table(title="RocksDB memory of one worker's stores (5 tables x partitions)")
    for column in ("partitions", "row", "databases", "written", "RSS opened -> end", "growth",
                   "outside", "hit", "miss", "time"):  # fmt: skip
        table.add_column(column)
    console = Console(width=160)
    for partitions in (int(p) for p in args.partitions.split(",")):
        budget = f"{args.cache_mib} MiB, memtables {args.cache_mib // 2}"
        for key, row in (("a", "a. Faust: cache + memtables per database"),
                         ("b", f"b. one shared budget ({budget})"),
                         ("c", "c. b + index and filters in the cache, whole"),
                         ("d", "d. b + index and filters in the cache, partitioned")):  # fmt: skip
            console.log(f"{partitions} partitions, {row}")
            out = subprocess.run(
                [sys.executable, __file__, "--megabytes", str(args.megabytes),
                 "--cache-mib", str(args.cache_mib),
                 "--child", f"{partitions}:{key}"],
                check=True, capture_output=True, text=True, env={**os.environ},
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            table.add_row(
                str(partitions), row, str(partitions * TABLES),
                f"{result['written_mib']:.0f} MiB",
                f"{result['opened']:.0f} -> {result['end']:.0f} MiB",
                f"+{result['end'] - result['opened']:.0f} MiB",
                f"{result['outside_mib']:.1f} MiB", f"{result['hit_us']:.1f} us",
                f"{result['miss_us']:.1f} us", f"{result['seconds']:.1f} s",
            )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
