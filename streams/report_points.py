"""Statistic points of a backtest as JSON lines, so ``driftline report`` can redraw them.

Points are what ``ModelJudge`` reports through ``on_point``: ``detectors.evaluate.StatisticPoint``,
which is also what ``read_points`` returns (``PointRecord`` is another name for it);
``streams.report`` draws them (and re-exports what is here).

>>> from datetime import UTC, datetime
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> point = PointRecord("m", "feature_drift", "x", "ks", 0.3, 0.1, None, True, t, t, 500)
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "p.jsonl"
>>> write_points(path, [point]), read_points(path) == [point]
(1, True)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from detectors.evaluate import StatisticPoint

__all__ = ["PointRecord", "ReportError", "StatisticPoint", "read_points", "write_points"]

PointRecord = StatisticPoint
"""A point read back from JSON lines is the judge's own ``StatisticPoint``."""


class ReportError(ValueError):
    """A points, alerts or models file that cannot be read; the message names file and line."""


def write_points(path: Path | str, points: Iterable[StatisticPoint]) -> int:
    """Write points as JSON lines (``segment`` too, when a point has one); returns how many."""
    written = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for point in points:
            row: dict[str, Any] = dataclasses.asdict(point)
            row["window_start"] = point.window_start.isoformat()
            row["window_end"] = point.window_end.isoformat()
            handle.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
            written += 1
    return written


def read_points(path: Path | str) -> list[StatisticPoint]:
    """Points written by ``write_points``; raises ReportError naming ``file:line`` otherwise."""
    points: list[StatisticPoint] = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                start, end = row.pop("window_start"), row.pop("window_end")
                points.append(
                    StatisticPoint(
                        window_start=datetime.fromisoformat(start),
                        window_end=datetime.fromisoformat(end),
                        **row,
                    )
                )
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ReportError(
                    f"{path}:{number}: not a statistic point ({type(exc).__name__}: {exc}); "
                    f"write points with `driftline backtest --points-out`"
                ) from None
    return points
