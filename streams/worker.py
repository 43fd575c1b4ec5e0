"""Run one live worker: ``python -m streams.worker`` or ``driftline worker``.

Several workers started with the same settings form one consumer group and split the
partitions; each needs its own ``--datadir`` when they share a host (RocksDB locks its files).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Final

from schemas.settings import Settings

__all__ = ["LOG_LEVELS", "main", "run_worker"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
log = logging.getLogger("driftline.worker")


def run_worker(
    settings: Settings,
    *,
    store: str = "rocksdb://",
    datadir: Path | None = None,
    loglevel: str = "warning",
    create_topics: bool = True,
    judge_save_seconds: float | None = None,
) -> None:
    """Create the topics if missing, serve ``/metrics``, and run the worker until stopped."""
    import faust

    from streams.app import create_app
    from streams.metrics import serve_metrics
    from streams.topics import ensure_topics

    if loglevel not in LOG_LEVELS:
        raise ValueError(f"loglevel must be one of {', '.join(LOG_LEVELS)}, got {loglevel!r}")
    if create_topics:
        ensure_topics(settings)
    live = create_app(settings, store=store, datadir=datadir, judge_save_seconds=judge_save_seconds)
    server = serve_metrics(live.metrics, settings.metrics.host, settings.metrics.port)
    # One parseable line, so scripts (and tests) find the bound port when it was 0.
    print(
        f"driftline worker: group={live.app.conf.id} metrics=http://{server.host}:{server.port}"
        f"/metrics store={store}",
        flush=True,
    )
    worker = faust.Worker(live.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m streams.worker", description=__doc__)
    parser.add_argument("--store", default="rocksdb://", help="rocksdb:// or memory://")
    parser.add_argument("--datadir", type=Path, default=None, help="RocksDB directory")
    parser.add_argument("--loglevel", default="warning", choices=LOG_LEVELS)
    parser.add_argument(
        "--judge-save-seconds", type=float, default=None,
        help="how long a judge's stored state may lag (default 2; read back after a crash)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    run_worker(
        Settings(), store=args.store, datadir=args.datadir, loglevel=args.loglevel,
        judge_save_seconds=args.judge_save_seconds,
    )  # fmt: skip


if __name__ == "__main__":
    main()
