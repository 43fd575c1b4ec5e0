"""One memory budget for all of a worker's RocksDB stores, whatever partitions it holds.

Faust opens a RocksDB database per table and partition (5 tables: 15 databases for 3
partitions, 60 for 12) and gives each its own block cache and memtables. A worker's memory
then grows with the partitions assigned to it: exactly when other workers die and it takes
theirs over. :func:`share_rocksdb_memory` makes every database this process opens use one
block cache of ``cache_bytes``, with the memtables charged to it through one write buffer
manager (once the memtables together reach ~90 % of ``memtable_bytes``, RocksDB flushes the
one of the database being written). The index and bloom filter blocks of the table files are
kept in that cache too, in partitions: RocksDB otherwise holds them beside it for every open
file, and they grow with the data (~1.2 MiB per 150 MiB of join entries,
bench/rocksdb_memory.py), which the join tables gain by the gigabyte over a TTL of days. So
RocksDB's memory stays within ``cache_bytes`` plus what is pinned while in use.

Faust builds the options of each database with ``faust.stores.rocksdb.RocksDBOptions``; this
replaces that class in Faust's module with a subclass (rocksdict driver only; a
python-rocksdb store keeps Faust's options). The same subclass opens every store without
RocksDB's write-ahead log (`without_wal`): the changelog is a store's log. The join's expiry
sweep reads with `scan_reads`, so a scan through a whole store leaves that cache to the
lookups.
"""

from __future__ import annotations

from typing import Any, Final, Literal

__all__ = [
    "CACHE_BYTES",
    "IndexPlacement",
    "SharedRocksDBMemory",
    "scan_reads",
    "share_rocksdb_memory",
    "without_wal",
]

CACHE_BYTES: Final = 128 << 20
"""Block cache shared by all stores of a worker, memtables included (the default of
``DRIFTLINE_ROCKSDB__CACHE_MIB``)."""
MEMTABLE_BLOOM_RATIO: Final = 0.1
"""Share of each memtable given to its bloom filter of whole keys."""


IndexPlacement = Literal["partitioned", "whole", "beside"]
"""Where the table files' index and filter blocks live: ``partitioned`` (the worker's): in the
cache, cut in 4 KiB partitions under a small top-level index pinned there; ``whole``: in the
cache as one block per file; ``beside``: outside the cache, RocksDB's default. The last two
are kept to measure the first against (bench/rocksdb_memory.py)."""


class SharedRocksDBMemory:
    """The cache and write buffer manager every database of the process is opened with."""

    def __init__(
        self,
        cache_bytes: int,
        memtable_bytes: int,
        *,
        index_placement: IndexPlacement = "partitioned",
    ) -> None:
        import rocksdict

        if not 0 < memtable_bytes <= cache_bytes:
            raise ValueError(
                f"memtable_bytes ({memtable_bytes}) must be positive and at most cache_bytes "
                f"({cache_bytes}): the memtables are charged to the cache"
            )
        self.cache = rocksdict.Cache(cache_bytes)
        self.cache_bytes = cache_bytes
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memtable_bytes, False, self.cache
        )
        self.index_placement = index_placement

    def apply(self, options: Any, *, bloom_bits: int) -> Any:
        """``options`` (rocksdict ``Options``) with the shared cache and write buffers."""
        import rocksdict

        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.cache)
        if self.index_placement == "partitioned":
            # Whole blocks in a cache smaller than all of them thrash: a lookup then reads a
            # file's whole index back (hits 10-40x slower, bench/rocksdb_memory.py). Partitions
            # are read one 4 KiB piece at a time.
            table.set_bloom_filter(bloom_bits, block_based=False)
            table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
            table.set_partition_filters(True)
            table.set_metadata_block_size(4096)
            table.set_pin_top_level_index_and_filter(True)
        else:
            table.set_bloom_filter(bloom_bits, block_based=True)
            table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        if self.index_placement != "beside":
            table.set_cache_index_and_filter_blocks(True)
            # Level 0 files are the newest and read by every lookup: their index and filter
            # stay in the cache (still counted in its usage) instead of being evicted by data.
            table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self.write_buffers)
        # Most join lookups miss (every prediction's event_id is looked up to spot a
        # duplicate): a whole-key bloom filter on the memtable answers a miss without walking
        # its skiplist, 0.56 -> 0.25 us per key. It takes a tenth of the memtable's budget.
        options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)
        options.set_memtable_whole_key_filtering(True)
        return options


def without_wal() -> Any:
    """Write options that skip RocksDB's write-ahead log, for every write to a store.

    A store is a cache of its changelog: Faust recovers it from the changelog offset it last
    persisted in the store itself, written after the writes that offset covers. With the log
    off, a crash (kill -9 included) loses the writes since the store's last memtable flush,
    that offset among them, in order: what is left is a prefix of the store's writes, and the
    recovery replays the changelog from an older offset. It halves a join write (0.32 -> 0.15
    us per entry, 1,500 puts a batch).
    """
    import rocksdict

    options: Any = rocksdict.WriteOptions()
    options.disable_wal = True  # a property (the stubs call it a method)
    return options


def scan_reads() -> Any:
    """Read options for a scan through a whole store (the join's expiry sweep): its blocks
    stay out of the block cache.

    A sweep reads every block of a store once per quarter TTL; cached, each evicted a block
    the join's lookups and the memtables (charged to the same cache) were using, for nothing:
    the sweep comes back to it only a quarter TTL later. Not filling the cache also makes a
    visit cheaper: ~0.39 -> ~0.35 us per entry, rocksdict included (``bench/README.md``).
    """
    import rocksdict

    options = rocksdict.ReadOptions()
    options.fill_cache(False)  # type: ignore[call-arg]  # takes a bool (the stubs say none)
    return options


_shared: SharedRocksDBMemory | None = None


def share_rocksdb_memory(
    cache_bytes: int = CACHE_BYTES,
    memtable_bytes: int | None = None,
    *,
    index_placement: IndexPlacement = "partitioned",
) -> SharedRocksDBMemory:
    """Make the RocksDB stores Faust opens from now on share one memory budget (idempotent:
    the first call's budget stays). ``memtable_bytes``: all memtables together, half the cache
    unless given (each table's own limit, ``write_buffer_size``, still applies)."""
    global _shared
    if _shared is not None:
        return _shared
    import faust.stores.rocksdb as faust_rocksdb

    memtables = cache_bytes // 2 if memtable_bytes is None else memtable_bytes
    shared = SharedRocksDBMemory(cache_bytes, memtables, index_placement=index_placement)
    base: Any = faust_rocksdb.RocksDBOptions

    class SharedMemoryOptions(base):  # type: ignore[misc,valid-type]  # Faust's class, untyped
        def as_options(self) -> Any:
            options = super().as_options()
            if not self.use_rocksdict:
                return options
            return shared.apply(options, bloom_bits=self.bloom_filter_size)

        def open(self, path: Any, *, read_only: bool = False) -> Any:
            db = super().open(path, read_only=read_only)
            if self.use_rocksdict:
                db.set_write_options(without_wal())
            return db

    faust_rocksdb.RocksDBOptions = SharedMemoryOptions  # type: ignore[misc]
    _shared = shared
    return shared
