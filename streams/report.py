"""A self-contained HTML report of a backtest: statistics over time, alerts, model versions.

One file, no JavaScript, no external CSS, fonts or images: charts are inline SVG drawn here.
Per model: the alert episodes, the model versions (from ModelEvents), then one chart per
monitored feature or model-level statistic. A feature checked by several detectors shows the
deciding one (the one that alerted or breached most); the others fold into ``<details>``, and
past ``max_charts`` the quietest statistics fold away too.

Points are what ``ModelJudge`` reports through ``on_point`` (``detectors.judge.StatisticPoint``);
``write_points``/``read_points`` keep them as JSON lines so ``driftline report`` can redraw.

>>> html = build_report([], [])
>>> html.startswith("<!DOCTYPE html>") and "No statistics" in html
True
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, Final, Protocol, cast

from schemas.events import Alert, ModelEvent
from streams.report_svg import STYLE, Marker, Series, badge, html_table, line_chart

__all__ = [
    "KIND_ORDER",
    "PointRecord",
    "ReportError",
    "StatisticPoint",
    "alert_episodes",
    "build_report",
    "read_points",
    "write_points",
    "write_report",
]

KIND_ORDER: Final = (
    "performance",
    "label_coverage",
    "prediction_drift",
    "feature_drift",
    "data_quality",
    "traffic",
)
_KIND_TITLES: Final = {
    "performance": "Quality (once labels joined)",
    "label_coverage": "Label coverage",
    "prediction_drift": "Prediction drift",
    "feature_drift": "Feature drift",
    "data_quality": "Data quality",
    "traffic": "Traffic",
}
_USUAL: Final = ("ks", "chi_square", "error_rate", "accuracy", "psi", "jensen_shannon")
"""Which detector's chart a quiet series shows first."""
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


def alert_episodes(alerts: Iterable[Alert]) -> list[tuple[Alert, Alert | None]]:
    """(firing, resolved or None) per fingerprint, by firing time.

    A ``resolved`` alert without an earlier ``firing`` one is an episode of its own.
    """
    still_open: dict[str, list[Alert | None]] = {}
    episodes: list[list[Alert | None]] = []
    for alert in sorted(alerts, key=lambda a: a.fired_at):
        if alert.status == "firing":
            still_open[alert.fingerprint] = [alert, None]
            episodes.append(still_open[alert.fingerprint])
        elif (episode := still_open.pop(alert.fingerprint, None)) is not None:
            episode[1] = alert
        else:
            episodes.append([alert, alert])
    return [(cast(Alert, first), resolved) for first, resolved in episodes]


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _duration(start: datetime, end: datetime) -> str:
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _episodes_table(alerts: Sequence[Alert]) -> str:
    rows = []
    for first, resolved in alert_episodes(alerts):
        state = "resolved" if resolved is not None else "firing"
        until = "still firing" if resolved is None else _timestamp(resolved.fired_at)
        took = "" if resolved is None else _duration(first.fired_at, resolved.fired_at)
        rows.append([
            badge(state), escape(first.kind), escape(first.feature or "-"),
            escape(first.segment or "-"), escape(first.detector), escape(first.severity),
            _timestamp(first.fired_at), until, took,
            f"{first.statistic:.4g} / {first.threshold:.4g}", escape(first.summary),
        ])  # fmt: skip
    if not rows:
        return '<p class="quiet">No alert fired.</p>'
    head = "state|kind|feature|segment|detector|severity|fired (event time)|resolved|lasted|"
    return html_table((head + "statistic / threshold|summary").split("|"), rows, "alerts")


def _models_table(events: Sequence[ModelEvent]) -> str:
    rows = [
        [
            _timestamp(e.timestamp), badge(e.type), escape(e.version or "-"),
            escape(", ".join(e.aliases) or "-"), escape(e.trigger_alert_id or "-"),
            escape(", ".join(f"{k}={v:.4g}" for k, v in sorted(e.metrics.items())) or "-"),
            escape(e.reason or ""),
        ]
        for e in sorted(events, key=lambda e: e.timestamp)
    ]  # fmt: skip
    head = ["when", "event", "version", "aliases", "trigger alert", "metrics", "reason"]
    return html_table(head, rows, "models")


_GroupKey = tuple[str, str | None, str | None]  # kind, feature, segment


def _group_key(kind: str, feature: str | None, segment: str | None) -> _GroupKey:
    return (kind, feature, segment)


def _chart(
    title: str, points: Sequence[StatisticPoint], alerts: Sequence[Alert], promotions: list[Marker]
) -> str:
    ordered = sorted(points, key=lambda p: p.window_end)
    tips = [
        f"window {_timestamp(p.window_start)} .. {_timestamp(p.window_end)} ({p.count} events): "
        f"{p.statistic:.4g} vs threshold {p.threshold:.4g}"
        + (f", p={p.p_value:.3g}" if p.p_value is not None else "")
        for p in ordered
    ]
    series = Series(
        [p.window_end.timestamp() for p in ordered],
        [p.statistic for p in ordered],
        [p.threshold for p in ordered],
        [p.breached for p in ordered],
        tips,
    )
    markers = [
        Marker(
            a.fired_at.timestamp(),
            a.status,
            f"{a.status} {_timestamp(a.fired_at)} ({a.severity}): {a.summary}",
        )
        for a in alerts
    ]
    return f'<div class="chart-box">{line_chart(title, series, markers + promotions)}</div>'


def _group_html(
    key: _GroupKey,
    by_detector: dict[str, list[StatisticPoint]],
    alerts: list[Alert],
    promotions: list[Marker],
) -> str:
    """The deciding detector's chart of one series; the other detectors folded below it."""
    kind, feature, segment = key
    fired = [a.detector for a in alerts if a.status == "firing"]
    deciding = max(  # alerted, then marked deciding by the judge, breached most, usual first
        sorted(by_detector),
        key=lambda d: (
            fired.count(d),
            any(getattr(p, "decides", False) for p in by_detector[d]),
            sum(p.breached for p in by_detector[d]),
            -_USUAL.index(d) if d in _USUAL else -len(_USUAL),
        ),
    )
    subject = feature or ("prediction" if kind == "prediction_drift" else None)
    name = " / ".join(part for part in (subject, segment) if part)

    def chart(detector: str) -> str:
        mine = [
            a for a in alerts
            if a.detector == detector or (detector == deciding and a.detector not in by_detector)
        ]  # fmt: skip
        title = f"{name} - {detector}" if name else detector
        return _chart(title, by_detector[detector], mine, promotions)

    others = [d for d in sorted(by_detector) if d != deciding]
    folded = (
        f"<details><summary>{len(others)} more statistic(s) of {escape(name or kind)}: "
        f"{escape(', '.join(others))}</summary>{''.join(map(chart, others))}</details>"
    )
    return f'<div class="group">{chart(deciding)}{folded if others else ""}</div>'


def _model_section(
    model: str,
    points: Sequence[StatisticPoint],
    alerts: Sequence[Alert],
    events: Sequence[ModelEvent],
    max_charts: int,
) -> str:
    groups: dict[_GroupKey, dict[str, list[StatisticPoint]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for point in points:
        key = _group_key(point.kind, point.feature, getattr(point, "segment", None))
        groups[key][point.detector].append(point)
    alerts_by_group: dict[_GroupKey, list[Alert]] = defaultdict(list)
    for alert in alerts:
        alerts_by_group[_group_key(alert.kind, alert.feature, alert.segment)].append(alert)
    promotions = [
        Marker(e.timestamp.timestamp(), "promoted", f"{e.type} version {e.version}")
        for e in events
        if e.type in ("promoted", "rolled_back")
    ]

    def rank(key: _GroupKey) -> tuple[int, int, str]:
        breaches = sum(p.breached for series in groups[key].values() for p in series)
        return (-len(alerts_by_group[key]), -breaches, key[1] or "")

    def kind_rank(kind: str) -> int:
        return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)

    chosen = set(sorted(groups, key=rank)[:max_charts])
    shown: dict[str, list[str]] = defaultdict(list)
    folded: list[str] = []
    for key in sorted(groups, key=lambda k: (kind_rank(k[0]), rank(k))):
        html = _group_html(key, groups[key], alerts_by_group[key], promotions)
        (shown[key[0]] if key in chosen else folded).append(html)
    body = [
        f'<section id="model-{escape(model)}"><h2>{escape(model)}</h2>',
        f"<p>{len(points)} judged statistics, {len(groups)} monitored series, "
        f"{sum(a.status == 'firing' for a in alerts)} alert(s) fired.</p>",
        "<h3>Alert episodes</h3>",
        _episodes_table(alerts),
    ]
    if events:
        body += ["<h3>Model versions</h3>", _models_table(events)]
    for kind in sorted(shown, key=kind_rank):
        title = _KIND_TITLES.get(kind, kind.replace("_", " ").capitalize())
        body += [f"<h3>{escape(title)}</h3>", '<div class="grid">', *shown[kind], "</div>"]
    if folded:
        body += [
            f"<details><summary>{len(folded)} quieter series</summary>",
            '<div class="grid">',
            *folded,
            "</div></details>",
        ]
    body.append("</section>")
    return "\n".join(body)


def build_report(
    points: Iterable[StatisticPoint],
    alerts: Iterable[Alert],
    model_events: Iterable[ModelEvent] = (),
    *,
    title: str = "driftline backtest",
    subtitle: str = "",
    max_charts: int = 30,
) -> str:
    """The report as one HTML document (UTF-8 text)."""
    by_model: dict[str, list[StatisticPoint]] = defaultdict(list)
    for point in points:
        by_model[point.model].append(point)
    alerts_by_model: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        alerts_by_model[alert.model].append(alert)
    events_by_model: dict[str, list[ModelEvent]] = defaultdict(list)
    for event in model_events:
        events_by_model[event.model].append(event)
    models = sorted(set(by_model) | set(alerts_by_model) | set(events_by_model))
    sections = [
        _model_section(m, by_model[m], alerts_by_model[m], events_by_model[m], max_charts)
        for m in models
    ]
    nav = " | ".join(f'<a href="#model-{escape(m)}">{escape(m)}</a>' for m in models)
    empty = "" if by_model else '<p class="quiet">No statistics were judged.</p>'
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="quiet">{escape(subtitle)}</p>' if subtitle else "",
            f"<nav>{nav}</nav>" if len(models) > 1 else "",
            empty,
            *sections,
            "</body></html>",
        ]
    )


def write_report(
    path: Path | str,
    points: Iterable[StatisticPoint],
    alerts: Iterable[Alert],
    model_events: Iterable[ModelEvent] = (),
    **options: Any,
) -> Path:
    """Write ``build_report(...)`` to ``path``; returns the path."""
    target = Path(path)
    target.write_text(build_report(points, alerts, model_events, **options), encoding="utf-8")
    return target
