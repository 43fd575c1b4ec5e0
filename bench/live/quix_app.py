"""Quix Streams baselines: ``--mode naive`` (per-event monitor) or ``--mode count``.

Runs in the baseline venv (quixstreams) with the repository on PYTHONPATH, for ``schemas`` and
``detectors`` (pydantic, numpy, scipy only)::

    PYTHONPATH=. .venv-bench/bin/python bench/live/quix_app.py --bootstrap 127.0.0.1:9092 \\
        --topic driftline.predictions --group bench-quix --events 100000 --mode naive

Same output lines as ``naive_faust.py``; the app stops itself once ``--events`` are handled.
``--check-imports`` only imports everything and prints the versions.
"""

from __future__ import annotations

import argparse
import tempfile

from naive_logic import NaiveMonitor, Reporter, emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--group")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--mode", choices=("naive", "count"), default="naive")
    parser.add_argument("--datadir", default=None, help="Quix state directory (default: temp)")
    parser.add_argument("--check-imports", action="store_true")
    args = parser.parse_args()

    import quixstreams
    from quixstreams import Application

    if args.check_imports:
        import pydantic
        import scipy

        emit(
            {
                "event": "imports",
                "quixstreams": quixstreams.__version__,
                "pydantic": pydantic.__version__,
                "scipy": scipy.__version__,
            }
        )
        return
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.datadir or tempfile.mkdtemp(prefix="bench-quix-"),
        loglevel="WARNING",
        use_changelog_topics=False,
    )
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(topic)
    reporter = Reporter(args.events)
    monitor = NaiveMonitor() if args.mode == "naive" else None

    def handle(value: bytes) -> None:
        reporter.start()
        if monitor is None:
            done = reporter.add(1)
        else:
            count = monitor.process(value)
            done = reporter.add(count, {"tests": monitor.tests, "drifts": monitor.drifts})
        if done:
            app.stop()

    sdf.update(handle)
    app.run()


if __name__ == "__main__":
    main()
