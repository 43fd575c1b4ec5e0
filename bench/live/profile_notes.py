"""Small extras of the benchmark: broker check, and a readable digest of a worker's cProfile."""

from __future__ import annotations

import io
import pstats
from pathlib import Path

__all__ = ["broker_answers", "print_profile"]

_REPO = str(Path(__file__).resolve().parents[2]) + "/"


def broker_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    except Exception:
        return False
    return True


def print_profile(path: Path, top: int = 18) -> None:
    """Top functions by own time, then driftline's own functions by cumulative time.

    Only the main (event-loop) thread is profiled: the Faust consumer thread is not included.
    """
    for title, order, restriction in (
        ("own time, all code", "tottime", ()),
        ("cumulative, driftline code", "cumulative", (r"/(streams|detectors|schemas)/",)),
    ):
        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats(order).print_stats(*restriction, top)
        lines = out.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        print(f"\n-- cProfile of row a's worker ({title}) --")
        for line in lines[start:]:
            if line.strip():
                print(line.replace(_REPO, "").replace(str(Path.home()), "~")[:160])
