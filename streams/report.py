"""A self-contained HTML report of a backtest: statistics over time, alerts, model versions.

One file, no JavaScript, no external CSS, fonts or images: charts are inline SVG drawn here.
At the top, optional facts about the input and a legend of the chart marks. Per model: the
alert episodes, the model versions (from ModelEvents), then one chart per monitored feature or
model-level statistic. A feature checked by several detectors shows the deciding one (the one
that alerted or breached most); the others fold into ``<details>``, and past ``max_charts`` the
quietest statistics fold away too. Series that never moved and never breached (a data-quality
check of a clean feature) are listed in one line instead of drawn.

Points are what ``ModelJudge`` reports through ``on_point`` (``detectors.judge.StatisticPoint``);
``write_points``/``read_points`` (``streams.report_points``) keep them as JSON lines so
``driftline report`` can redraw.

>>> html = build_report([], [])
>>> html.startswith("<!DOCTYPE html>") and "No statistics" in html
True
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, Final, cast

from schemas.events import Alert, ModelEvent
from streams.report_points import (
    PointRecord,
    ReportError,
    StatisticPoint,
    read_points,
    write_points,
)
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
_KIND_NOTES: Final = {
    "performance": "Error rate (MAE for regressors) of the predictions whose labels joined, per "
    "window; alerts when above the threshold.",
    "label_coverage": "Labels joined in each window per prediction in it (late labels of "
    "earlier predictions count too, so it can pass 1); alerts when below the threshold.",
    "prediction_drift": "How far each window's predictions (and class scores) are from the "
    "reference; alerts when above the threshold.",
    "feature_drift": "How far each feature's window is from its reference; alerts when above "
    "the threshold.",
    "data_quality": "Missing or new features, null rate, out-of-range values and type changes "
    "against the reference; alerts when above the threshold.",
}
_LEGEND: Final = (
    '<p class="legend"><span class="key"><span class="swatch stat-line"></span>statistic of '
    'each window</span><span class="key"><span class="swatch limit-line"></span>alert '
    'threshold</span><span class="key"><span class="swatch dot"></span>window beyond the '
    "threshold (an alert fires after k of the last m)</span>"
    '<span class="key"><span class="swatch fired"></span>alert fired</span>'
    '<span class="key"><span class="swatch cleared"></span>alert resolved</span>'
    '<span class="key"><span class="swatch promo"></span>model version promoted</span>'
    "<span>Times are event time, UTC; hover a dot or marker for its window.</span></p>"
)
_USUAL: Final = (
    "ks", "chi_square", "error_rate", "mae", "accuracy", "psi", "jensen_shannon", "null_rate"
)  # fmt: skip
"""Which detector's chart a quiet series shows first."""


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


def _models_table(events: Sequence[ModelEvent], switched_at: Mapping[str, datetime]) -> str:
    rows = [
        [
            _timestamp(e.timestamp), badge(e.type), escape(e.version or "-"),
            escape(", ".join(e.aliases) or "-"), escape(e.trigger_alert_id or "-"),
            escape(", ".join(f"{k}={v:.4g}" for k, v in sorted(e.metrics.items())) or "-"),
            escape(e.reason or ""),
        ] + ([_timestamp(switched_at[e.event_id]) if e.event_id in switched_at else "-"]
             if switched_at else [])
        for e in sorted(events, key=lambda e: e.timestamp)
    ]  # fmt: skip
    head = ["when", "event", "version", "aliases", "trigger alert", "metrics", "reason"]
    if switched_at:
        head.append("reference switched (event time)")
    return html_table(head, rows, "models")


_GroupKey = tuple[str, str | None, str | None]  # kind, feature, segment


def _group_key(kind: str, feature: str | None, segment: str | None) -> _GroupKey:
    return (kind, feature, segment)


def _chart(
    title: str,
    points: Sequence[StatisticPoint],
    alerts: Sequence[Alert],
    promotions: list[Marker],
    x_range: tuple[float, float] | None,
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
    chart = line_chart(title, series, markers + promotions, x_range=x_range)
    return f'<div class="chart-box">{chart}</div>'


def _group_html(
    key: _GroupKey,
    by_detector: dict[str, list[StatisticPoint]],
    alerts: list[Alert],
    promotions: list[Marker],
    x_range: tuple[float, float] | None,
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
        return _chart(title, by_detector[detector], mine, promotions, x_range)

    others = [d for d in sorted(by_detector) if d != deciding]
    folded = (
        f"<details><summary>{len(others)} more statistic(s) of {escape(name or kind)}: "
        f"{escape(', '.join(others))}</summary>{''.join(map(chart, others))}</details>"
    )
    return f'<div class="group">{chart(deciding)}{folded if others else ""}</div>'


def _flat(by_detector: dict[str, list[StatisticPoint]]) -> str | None:
    """``"null_rate, out_of_range = 0"`` when no detector's statistic ever moved or breached."""
    values: dict[str, float] = {}
    for detector, series in sorted(by_detector.items()):
        if any(p.breached for p in series) or len({p.statistic for p in series}) > 1:
            return None
        values[detector] = series[0].statistic
    if len(set(values.values())) == 1:
        return f"{', '.join(values)} = {_fmt_value(next(iter(values.values())))}"
    return ", ".join(f"{d} = {_fmt_value(v)}" for d, v in values.items())


def _fmt_value(value: float) -> str:
    return f"{value:.4g}"


def _model_section(
    model: str,
    points: Sequence[StatisticPoint],
    alerts: Sequence[Alert],
    events: Sequence[ModelEvent],
    max_charts: int,
    switched_at: Mapping[str, datetime],
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
        Marker(
            switched_at.get(e.event_id, e.timestamp).timestamp(),
            "promoted",
            f"{e.type} version {e.version}"
            + (" (reference switched here)" if e.event_id in switched_at else ""),
        )
        for e in events
        if e.type in ("promoted", "rolled_back")
    ]
    flat = {
        key: text
        for key, by_detector in groups.items()
        if not alerts_by_group[key] and (text := _flat(by_detector)) is not None
    }

    def rank(key: _GroupKey) -> tuple[int, int, str]:
        breaches = sum(p.breached for series in groups[key].values() for p in series)
        return (-len(alerts_by_group[key]), -breaches, key[1] or "")

    def kind_rank(kind: str) -> int:
        return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)

    ends = [point.window_end.timestamp() for point in points]
    x_range = (min(ends), max(ends)) if ends else None  # one time axis for all the model's charts
    drawn = [key for key in groups if key not in flat]
    chosen = set(sorted(drawn, key=rank)[:max_charts])
    shown: dict[str, list[str]] = defaultdict(list)
    folded: list[str] = []
    for key in sorted(drawn, key=lambda k: (kind_rank(k[0]), rank(k))):
        html = _group_html(key, groups[key], alerts_by_group[key], promotions, x_range)
        (shown[key[0]] if key in chosen else folded).append(html)
    constant: dict[str, list[str]] = defaultdict(list)
    for key in sorted(flat, key=lambda k: (k[1] or "", k[2] or "")):
        name = " / ".join(part for part in (key[1], key[2]) if part) or key[0]
        constant[key[0]].append(f"{escape(name)} ({escape(flat[key])})")
    body = [
        f'<section id="model-{escape(model)}"><h2>{escape(model)}</h2>',
        f"<p>{len(points)} judged statistics, {len(groups)} monitored series, "
        f"{sum(a.status == 'firing' for a in alerts)} alert(s) fired.</p>",
        "<h3>Alert episodes</h3>",
        _episodes_table(alerts),
    ]
    if events:
        body += ["<h3>Model versions</h3>", _models_table(events, switched_at)]
    for kind in sorted(set(shown) | set(constant), key=kind_rank):
        title = _KIND_TITLES.get(kind, kind.replace("_", " ").capitalize())
        body.append(f"<h3>{escape(title)}</h3>")
        if kind in _KIND_NOTES:
            body.append(f'<p class="quiet">{escape(_KIND_NOTES[kind])}</p>')
        if shown[kind]:
            body += ['<div class="grid">', *shown[kind], "</div>"]
        if constant[kind]:
            body.append(
                f'<p class="quiet">Constant and never breached, not drawn: '
                f"{'; '.join(constant[kind])}.</p>"
            )
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
    facts: Sequence[tuple[str, str]] = (),
    switched_at: Mapping[str, datetime] | None = None,
) -> str:
    """The report as one HTML document (UTF-8 text).

    ``facts`` are (label, text) rows shown at the top (where the data came from, counts).
    ``switched_at`` maps a ModelEvent id to the event time its reference switch applied at:
    its promotion marker goes there rather than at the event's (wall clock) timestamp.
    """
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
        _model_section(
            m, by_model[m], alerts_by_model[m], events_by_model[m], max_charts, switched_at or {}
        )
        for m in models
    ]
    about = "".join(
        f'<tr><th scope="row">{escape(label)}</th><td>{escape(text)}</td></tr>'
        for label, text in facts
    )
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
            f'<table class="facts"><tbody>{about}</tbody></table>' if facts else "",
            _LEGEND if by_model else "",
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
