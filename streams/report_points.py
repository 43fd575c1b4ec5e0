"""Statistic points of a backtest as JSON lines, so ``driftline report`` can redraw them.

Points are what ``ModelJudge`` reports through ``on_point`` (``detectors.judge.StatisticPoint``);
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

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

__all__ = ["PointRecord", "ReportError", "StatisticPoint", "read_points", "write_points"]

_POINT_FIELDS: Final = (
    "model",
    "kind",
    "feature",
    "detector",
    "statistic",
    "threshold",
    "p_value",
    "breached",
    "window_start",
    "window_end",
    "count",
)


class ReportError(ValueError):
    """A points, alerts or models file that cannot be read; the message names file and line."""


class StatisticPoint(Protocol):
    """One judged statistic of one window (the attributes of ``detectors.judge.StatisticPoint``)."""

    @property
    def model(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def feature(self) -> str | None: ...
    @property
    def detector(self) -> str: ...
    @property
    def statistic(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def p_value(self) -> float | None: ...
    @property
    def breached(self) -> bool: ...
    @property
    def window_start(self) -> datetime: ...
    @property
    def window_end(self) -> datetime: ...
    @property
    def count(self) -> int: ...


@dataclass(frozen=True)
class PointRecord:
    """A StatisticPoint read back from JSON lines (``segment`` kept when the judge had one)."""

    model: str
    kind: str
    feature: str | None
    detector: str
    statistic: float
    threshold: float
    p_value: float | None
    breached: bool
    window_start: datetime
    window_end: datetime
    count: int
    segment: str | None = None


def write_points(path: Path | str, points: Iterable[StatisticPoint]) -> int:
    """Write points as JSON lines (``segment`` too, when a point has one); returns how many."""
    written = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for point in points:
            row: dict[str, Any] = {name: getattr(point, name) for name in _POINT_FIELDS}
            row["window_start"] = point.window_start.isoformat()
            row["window_end"] = point.window_end.isoformat()
            row["segment"] = getattr(point, "segment", None)
            handle.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
            written += 1
    return written


def read_points(path: Path | str) -> list[PointRecord]:
    """Points written by ``write_points``; raises ReportError naming ``file:line`` otherwise."""
    points: list[PointRecord] = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                start, end = row.pop("window_start"), row.pop("window_end")
                points.append(
                    PointRecord(
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
