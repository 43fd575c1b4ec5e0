"""Run one live worker: ``python -m streams.worker`` or ``driftline worker``.

Several workers started with the same settings form one consumer group and split the
partitions; each needs its own ``--datadir`` when they share a host (RocksDB locks its files).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import sys
from pathlib import Path
from typing import Final

from schemas.settings import Settings

__all__ = ["EVENT_LOOPS", "LOG_LEVELS", "WorkerOptionError", "check_worker_options", "main",
           "run_worker"]  # fmt: skip

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# uvloop speeds up Faust's per-message consumer path (queues, futures, acks): a count-only
# Faust agent 1.5x, our worker ~10 % (bench/worker_throughput.py); "asyncio" is for debugging.
EVENT_LOOPS: Final = ("uvloop", "asyncio")
FREEZE_CHECK_SECONDS: Final = 10.0
"""How often the worker looks for newly imported modules to freeze (see `streams.gc_freeze`)."""
log = logging.getLogger("driftline.worker")


class WorkerOptionError(ValueError):
    """A worker option out of range; ``flag`` is its command-line name."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.flag = "--" + name.replace("_", "-")


def check_worker_options(
    loglevel: str,
    event_loop: str,
    batch_seconds: float | None,
    fetch_wait_seconds: float | None,
    judge_save_seconds: float | None = None,
    judge_batch_seconds: float | None = None,
) -> None:
    """Raise `WorkerOptionError` for the first option out of range (None: the default)."""
    from streams.app import BATCH_SECONDS, FETCH_WAIT_SECONDS, JUDGE_BATCH_SECONDS
    from streams.judge_agent import JUDGE_SAVE_SECONDS

    if loglevel not in LOG_LEVELS:
        raise WorkerOptionError(
            "loglevel", f"must be one of {', '.join(LOG_LEVELS)}, got {loglevel!r}"
        )
    if event_loop not in EVENT_LOOPS:
        raise WorkerOptionError(
            "event_loop", f"must be one of {', '.join(EVENT_LOOPS)}, got {event_loop!r}"
        )
    for name, value, example in (
        ("batch_seconds", batch_seconds, BATCH_SECONDS),
        ("fetch_wait_seconds", fetch_wait_seconds, FETCH_WAIT_SECONDS),
        ("judge_save_seconds", judge_save_seconds, JUDGE_SAVE_SECONDS),
        ("judge_batch_seconds", judge_batch_seconds, JUDGE_BATCH_SECONDS),
    ):
        if value is not None and value <= 0:
            raise WorkerOptionError(name, f"must be positive, e.g. {example}: {value}")


def run_worker(
    settings: Settings,
    *,
    store: str = "rocksdb://",
    datadir: Path | None = None,
    loglevel: str = "warning",
    create_topics: bool = True,
    judge_save_seconds: float | None = None,
    event_loop: str = "uvloop",
    batch_seconds: float | None = None,
    fetch_wait_seconds: float | None = None,
    judge_batch_seconds: float | None = None,
) -> None:
    """Create the topics if missing, serve ``/metrics``, and run the worker until stopped."""
    import faust
    import mode.loop

    from streams.agents_monitor import import_monitor_modules
    from streams.app import BATCH_SECONDS, FETCH_WAIT_SECONDS, JUDGE_BATCH_SECONDS, create_app
    from streams.changelog_topics import ensure_changelog_topics
    from streams.flow_report import flow_report
    from streams.gc_freeze import ModuleFreezer
    from streams.ingest_native import native_status
    from streams.ingest_prepare import helper_thread
    from streams.malloc_thresholds import fix_malloc_thresholds
    from streams.malloc_trim import heap_trimmer
    from streams.metrics import serve_metrics
    from streams.topics import TopicsError, ensure_topics

    check_worker_options(
        loglevel, event_loop, batch_seconds, fetch_wait_seconds, judge_save_seconds,
        judge_batch_seconds,
    )  # fmt: skip
    malloc_thresholds = (
        fix_malloc_thresholds() if settings.fixed_malloc_thresholds else "left as is (setting)"
    )
    if event_loop == "uvloop":
        mode.loop.use("uvloop")  # sets the policy; Faust creates its loop afterwards
    live = create_app(
        settings, store=store, datadir=datadir, judge_save_seconds=judge_save_seconds,
        take_within_seconds=BATCH_SECONDS if batch_seconds is None else batch_seconds,
        judge_within_seconds=(
            JUDGE_BATCH_SECONDS if judge_batch_seconds is None else judge_batch_seconds
        ),
        fetch_wait_seconds=FETCH_WAIT_SECONDS if fetch_wait_seconds is None else fetch_wait_seconds,
    )  # fmt: skip
    try:
        if create_topics:
            ensure_topics(settings)
        ensure_changelog_topics(live.app, settings)  # before Faust subscribes: see the module
    except TopicsError as exc:  # topics in a shape the worker cannot use: which, and the fix
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    server = serve_metrics(live.metrics, settings.metrics.host, settings.metrics.port)
    # One parseable line, so scripts (and tests) find the bound port when it was 0.
    print(
        f"driftline worker: group={live.app.conf.id} metrics=http://{server.host}:{server.port}"
        f"/metrics store={store}",
        flush=True,
    )
    freezer = ModuleFreezer()
    lane = native_status(settings.native_ingest)  # logged with the thresholds once Ready

    class Worker(faust.Worker):  # the name is in its log lines ("[^Worker]: Ready")
        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            # Here, not before: Faust sets up logging when the worker starts, and dropped
            # info lines sent earlier.
            (log.info if lane == "on" else log.warning)("native ingest lane: %s", lane)
            log.info("malloc thresholds: %s", malloc_thresholds)
            freezer.maybe_freeze(force=True)  # Faust's services, clients and tables too

        def _on_sigusr2(self) -> None:
            # mode opens pdb here, which hangs a worker without a terminal; operators get
            # the report of why input may not flow instead (streams.flow_report).
            log.warning("flow report (SIGUSR2):\n%s", flow_report(live.app))

    @live.app.timer(FREEZE_CHECK_SECONDS)  # type: ignore[untyped-decorator]
    async def freeze_new_modules() -> None:
        freezer.maybe_freeze()

    trim = heap_trimmer() if settings.malloc_trim_seconds > 0 else None
    if trim is not None:
        trim_helper = helper_thread("driftline-trim")
        trims = itertools.count()  # the first trim is logged at info, the rest at debug

        @live.app.timer(settings.malloc_trim_seconds)  # type: ignore[untyped-decorator]
        async def trim_heap() -> None:
            done = await asyncio.get_running_loop().run_in_executor(trim_helper, trim)
            live.metrics.heap_released.inc(done.released_bytes)
            (log.debug if next(trims) else log.info)(
                "heap trimmed: %d KiB back to the kernel in %.1f ms (every %g s)",
                done.released_bytes >> 10, done.seconds * 1e3, settings.malloc_trim_seconds,
            )  # fmt: skip

    worker = Worker(live.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    # Faust's terminal spinner sets the root logger to DEBUG (for levels >= warning), so every
    # debug call in aiokafka's fetch loop built a log record: ~5 % of a busy worker's CPU.
    worker.spinner = None
    import_monitor_modules()  # before "Ready": the first delta must not wait for them
    freezer.maybe_freeze()
    try:
        worker.execute_from_commandline()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__)
    parser.add_argument("--store", default="rocksdb://", help="rocksdb:// or memory://")
    parser.add_argument("--datadir", type=Path, default=None, help="RocksDB directory")
    parser.add_argument("--loglevel", default="warning", choices=LOG_LEVELS)
    parser.add_argument("--event-loop", default="uvloop", choices=EVENT_LOOPS)
    parser.add_argument(
        "--batch-seconds", type=float, default=None,
        help="how long the ingest waits to fill a batch (default 0.1); lower cuts alert latency",
    )  # fmt: skip
    parser.add_argument(
        "--judge-batch-seconds", type=float, default=None,
        help="how long the judge waits to fill a batch of sketches deltas (default 0.01)",
    )  # fmt: skip
    parser.add_argument(
        "--judge-save-seconds", type=float, default=None,
        help="how long a judge's stored state may lag (default 2; read back after a crash)",
    )  # fmt: skip
    parser.add_argument(
        "--fetch-wait-seconds", type=float, default=None,
        help="how long the broker may hold a fetch that finds no data (default 0.02)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run_worker(
        Settings(), store=args.store, datadir=args.datadir, loglevel=args.loglevel,
        judge_save_seconds=args.judge_save_seconds, event_loop=args.event_loop,
        batch_seconds=args.batch_seconds, fetch_wait_seconds=args.fetch_wait_seconds,
        judge_batch_seconds=args.judge_batch_seconds,
    )  # fmt: skip


if __name__ == "__main__":
    main()
