"""The ingest's work beside the fold (`streams.ingest_prepare`): order, threads, errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from streams.ingest_columns import split_columns
from streams.ingest_prepare import Parsed, PrepareAhead, helper_thread, parsed_ahead
from streams.validation import RawMessage

# --- PrepareAhead ----------------------------------------------------------------------


def test_a_round_comes_back_in_order_with_the_later_jobs_on_the_helper_thread() -> None:
    ahead = PrepareAhead()
    ran_on: dict[int, str] = {}
    done_before_first_ended: list[int] = []
    later_done = threading.Event()

    def job(index: int) -> int:
        ran_on[index] = threading.current_thread().name
        if index == 0:  # the caller's own job: the helper works meanwhile, not after it
            later_done.wait(5)
            done_before_first_ended.extend(sorted(set(ran_on) - {0}))
        elif index == 2:
            later_done.set()
        return index * 10

    assert list(ahead.in_order([lambda i=i: job(i) for i in range(3)])) == [0, 10, 20]  # type: ignore[misc]
    assert done_before_first_ended == [1, 2]
    assert ran_on[0] == threading.current_thread().name
    assert ran_on[1].startswith("driftline-prepare") and ran_on[2] == ran_on[1]


def test_a_single_job_runs_on_the_callers_thread() -> None:
    names = list(PrepareAhead().in_order([lambda: threading.current_thread().name]))
    assert names == [threading.current_thread().name]


def test_a_jobs_error_is_raised_where_its_result_is_due() -> None:
    def fails() -> int:
        raise ValueError("bad partition")

    results = PrepareAhead().in_order([lambda: 1, fails, lambda: 3])
    assert next(results) == 1
    with pytest.raises(ValueError, match="bad partition"):
        next(results)


# --- Parsed ----------------------------------------------------------------------------


def _message(offset: int, topic: str = "p") -> RawMessage:
    value = (
        b'{"event_id": "e-%d", "model": "m", "timestamp": "2024-05-01T00:00:00Z", '
        b'"features": {"x": 1}, "prediction": 0.5}' % offset
    )
    return RawMessage("predictions", value, topic, 0, offset)


def test_a_parse_ahead_serves_exactly_the_messages_it_parsed() -> None:
    from datetime import UTC, datetime

    messages = [_message(1), _message(2), _message(3)]
    split = split_columns(messages, now=datetime.now(UTC))
    parsed = Parsed.of(messages, split)
    assert parsed.split_of(list(messages)) is split
    assert parsed.split_of(messages[1:]) is None  # a crash left fewer to fold
    assert parsed.split_of([*messages, _message(4)]) is None  # messages read back too
    assert parsed.split_of([_message(1, "q"), *messages[1:]]) is None  # another topic


# --- parsed_ahead ----------------------------------------------------------------------


async def _batches(log: list[str], count: int, fail_at: int | None = None) -> AsyncIterator[int]:
    for index in range(count):
        if index == fail_at:
            raise RuntimeError("the channel broke")
        log.append(f"collected {index}")
        yield index
        await asyncio.sleep(0)


def test_the_next_batch_is_collected_and_parsed_while_the_caller_works() -> None:
    log: list[str] = []
    helper = helper_thread("test-parse")

    def parse(batch: int) -> str:
        log.append(f"parsed {batch} on {threading.current_thread().name.split('_')[0]}")
        return f"columns of {batch}"

    async def scenario() -> list[tuple[int, str]]:
        seen = []
        async for batch, columns in parsed_ahead(_batches(log, 3), parse, helper):
            await asyncio.sleep(0.1)  # the fold of this batch
            log.append(f"folded {batch}")
            seen.append((batch, columns))
        return seen

    seen = asyncio.run(scenario())
    assert seen == [(0, "columns of 0"), (1, "columns of 1"), (2, "columns of 2")]
    assert "parsed 1 on test-parse" in log
    assert log.index("parsed 1 on test-parse") < log.index("folded 0")  # ahead of the caller
    assert log.index("parsed 2 on test-parse") < log.index("folded 1")


def test_an_error_of_the_batches_or_the_parse_is_raised_where_its_batch_is_due() -> None:
    helper = helper_thread("test-parse")

    async def run(fail_at: int | None, parse_fails_at: int | None) -> list[int]:
        def parse(batch: int) -> int:
            if batch == parse_fails_at:
                raise ValueError("parse broke")
            return batch

        seen = []
        async for batch, _ in parsed_ahead(_batches([], 4, fail_at), parse, helper):
            seen.append(batch)
        return seen

    async def scenario() -> None:
        seen: list[int] = []
        with pytest.raises(RuntimeError, match="the channel broke"):
            async for batch, _ in parsed_ahead(_batches([], 4, 2), lambda b: b, helper):
                seen.append(batch)
        assert seen == [0, 1]  # every batch before the error first
        with pytest.raises(ValueError, match="parse broke"):
            await run(None, 1)
        assert await run(None, None) == [0, 1, 2, 3]

    asyncio.run(scenario())


def test_when_the_caller_stops_the_collecting_stops() -> None:
    helper = helper_thread("test-parse")
    log: list[str] = []

    async def scenario() -> None:
        pipeline = parsed_ahead(_batches(log, 100), lambda b: b, helper)
        async for batch, _ in pipeline:
            if batch == 1:
                break
        await pipeline.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        collected = len(log)
        await asyncio.sleep(0.05)
        assert len(log) == collected <= 5  # a bounded read-ahead, then nothing more

    asyncio.run(scenario())
