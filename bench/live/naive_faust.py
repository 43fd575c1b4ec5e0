"""Faust baselines: ``--mode naive`` (per-event monitor), ``--mode count`` (count only) or
``--mode drain`` (count what the agent's channel queue holds, without Faust's stream: the
ceiling of any ingest that keeps Faust's consumer).

    .venv/bin/python bench/live/naive_faust.py --bootstrap 127.0.0.1:9092 \\
        --topic driftline.predictions --group bench-faust --events 100000 --mode naive

A Faust app with a raw-bytes topic and one agent iterating event by event. Prints JSON lines:
``first`` (wall time of the first message), ``progress`` every 2 s, and ``done`` once
``--events`` predictions were handled (then it idles until stopped by SIGTERM).
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import faust
from naive_logic import NaiveMonitor, Reporter


def build_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        datadir=args.datadir or tempfile.mkdtemp(prefix="bench-faust-"),
    )
    topic = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    reporter = Reporter(args.events)
    monitor = NaiveMonitor() if args.mode == "naive" else None

    @app.agent(topic, name=f"bench-{args.mode}")
    async def consume(stream: Any) -> None:
        if args.mode == "drain":
            await drain(stream.channel.queue, reporter)
            return
        async for value in stream:
            reporter.start()
            if monitor is None:
                reporter.add(1)
            else:
                reporter.add(
                    monitor.process(value), {"tests": monitor.tests, "drifts": monitor.drifts}
                )

    return app


async def drain(queue: Any, reporter: Reporter) -> None:
    """Take every event the conductor queued, count them, ack them (so offsets commit)."""
    while True:
        events = [await queue.get()]
        while not queue.empty():
            events.append(queue.get_nowait())
        reporter.start()
        reporter.add(len(events))
        for event in events:
            event.ack()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True, help="Faust app id (the consumer group)")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--mode", choices=("naive", "count", "drain"), default="naive")
    parser.add_argument("--datadir", default=None, help="Faust data directory (default: temp)")
    args = parser.parse_args()
    app = build_app(args)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
