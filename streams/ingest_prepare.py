"""The ingest's work that can run beside the fold, on helper threads: parsing the next batch,
and reading the join entries of a round's next partitions.

Both spend most of their time outside the GIL: the native lane parses envelopes in Rust
without it (`streams.ingest_native`) and rocksdict's multi-get releases it in RocksDB. Done in
turn on the event loop's thread they were ~40 % of its busy time in row b of
``bench/worker_throughput.py`` (py-spy), while the machine's second core idled.

- `parsed_ahead`: a batch is parsed on a helper thread as soon as it is collected, while the
  event loop's thread still folds the batch before it. Parsing reads only the messages.
- `PrepareAhead`: within a round (a batch of each partition), partition N+1's join entries are
  read while partition N is folded and written. What one partition's preparation reads - its
  own RocksDB stores - no other partition's fold touches; a partition's own reads still come
  after its previous batch's writes.

The fold itself stays on the event loop's thread, in the round's order, so what comes out is
the same as parsing, reading and folding each partition in turn: the order and the threads
are tested in ``tests/test_ingest_prepare.py``, the outcomes (alerts, counts, recovery) by the
live tests on a real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from streams.ingest_columns import ColumnSplit
from streams.join_batch import BatchJoin
from streams.validation import RawMessage

__all__ = ["Parsed", "PrepareAhead", "Prepared", "helper_thread", "parsed_ahead", "where_of"]

B = TypeVar("B")
T = TypeVar("T")


@dataclass(frozen=True)
class Parsed:
    """A partition's messages of a batch (``where``: each one's topic and offset), parsed
    ahead (``split``)."""

    where: tuple[tuple[str, int], ...]
    split: ColumnSplit

    @classmethod
    def of(cls, messages: Sequence[RawMessage], split: ColumnSplit) -> Parsed:
        return cls(where_of(messages), split)

    def split_of(self, messages: Sequence[RawMessage]) -> ColumnSplit | None:
        """The split of ``messages`` if they are the ones parsed, else None (after a crash
        the ingest folds fewer, or messages read back too)."""
        return self.split if where_of(messages) == self.where else None


def where_of(messages: Sequence[RawMessage]) -> tuple[tuple[str, int], ...]:
    """Each message's topic and offset: which messages a `Parsed` holds."""
    return tuple((message.topic, message.offset) for message in messages)


@dataclass(frozen=True)
class Prepared:
    """A partition batch, parsed (``split``) with its share of the join tables read
    (``join``)."""

    split: ColumnSplit
    join: BatchJoin


class PrepareAhead:
    """Runs a round's preparations: the first on the caller's thread, the others on one helper
    thread, ahead, in order."""

    def __init__(self) -> None:
        self._helper = helper_thread("driftline-prepare")

    def in_order(self, jobs: Sequence[Callable[[], T]]) -> Iterator[T]:
        """Each job's result, in order. Jobs after the first start at once on the helper
        thread; a job's exception is raised where its result is due. Jobs not reached when the
        caller stops early are cancelled if they have not started (a started one finishes on
        its own: a preparation only reads)."""
        if len(jobs) <= 1:  # nothing to overlap: no thread handoff
            yield from (job() for job in jobs)
            return
        ahead: list[Future[T]] = [self._helper.submit(job) for job in jobs[1:]]
        try:
            yield jobs[0]()
            for future in ahead:
                yield future.result()
        finally:
            for future in ahead:
                future.cancel()


def helper_thread(name: str) -> ThreadPoolExecutor:
    """One thread for jobs in order, started at the first job (Python joins it at exit; an
    idle helper ends at once)."""
    return ThreadPoolExecutor(1, thread_name_prefix=name)


async def parsed_ahead(
    batches: AsyncIterator[B], parse: Callable[[B], T], helper: Executor
) -> AsyncIterator[tuple[B, T]]:
    """Each of ``batches`` with ``parse`` of it, run on ``helper``: the next batch is
    collected and parsed while the caller still works on this one.

    At most two batches wait for the caller besides the one being collected (the next one
    parsed, and one held back). Ack a batch when done with it (``channel_batches(...,
    ack_when_next=False)``): the batches are asked for before the caller is done. An error of
    ``batches`` or ``parse`` is raised where its batch is due; when the caller stops, the
    collecting stops too (a batch collected but not handed out is never acked: Kafka delivers
    it again).
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[tuple[B, asyncio.Future[T]]] = asyncio.Queue(maxsize=1)

    async def collect() -> None:
        async for batch in batches:
            await ready.put((batch, loop.run_in_executor(helper, parse, batch)))

    collector = asyncio.ensure_future(collect())
    try:
        while True:
            if ready.empty() and collector.done():
                collector.result()  # the batches' error, if any
                return
            taking = asyncio.ensure_future(ready.get())
            await asyncio.wait({taking, collector}, return_when=asyncio.FIRST_COMPLETED)
            if not taking.done():
                taking.cancel()  # the collector ended: what it left is looked at above
                continue
            batch, parsing = taking.result()
            yield batch, await parsing
    finally:
        collector.cancel()
