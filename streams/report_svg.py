"""Drawing for the HTML report: inline SVG line charts, tables, the style sheet.

Nothing here loads anything: no JavaScript, no external CSS, fonts or images.

A chart shows one statistic over window end time, its threshold as a dashed step line, the
windows that breached as red dots, and vertical markers where alerts fired or resolved and
where a model version was promoted. Hovering a dot or marker shows its ``<title>``.

>>> from datetime import UTC, datetime
>>> svg = line_chart("amount / ks", Series([0.0, 60.0], [0.1, 0.4], [0.3, 0.3], [False, True],
...                  ["w1", "w2"]), [Marker(60.0, "firing", "fired")])
>>> svg.startswith("<svg") and 'class="breach"' in svg and 'class="marker firing"' in svg
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Final, Literal

__all__ = [
    "MAX_DRAWN_POINTS",
    "STYLE",
    "Marker",
    "Series",
    "badge",
    "html_table",
    "line_chart",
    "nice_ticks",
]

MAX_DRAWN_POINTS: Final = 600
"""Longer series are thinned to the min and max of each bucket (peaks survive)."""
_MAX_DOTS: Final = 300
_WIDTH, _HEIGHT = 600, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 14, 26, 30


@dataclass(frozen=True)
class Series:
    """Parallel lists: x (epoch seconds of the window end), statistic, threshold, breach, tip."""

    xs: Sequence[float]
    ys: Sequence[float]
    thresholds: Sequence[float | None]
    breached: Sequence[bool]
    tips: Sequence[str]


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` (epoch seconds): an alert state change or a promotion."""

    x: float
    kind: Literal["firing", "resolved", "promoted"]
    label: str


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high].

    >>> nice_ticks(0.0, 0.37)
    [0.0, 0.1, 0.2, 0.3]
    """
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks: list[float] = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _thin(indices: list[int], ys: Sequence[float]) -> list[int]:
    if len(indices) <= MAX_DRAWN_POINTS:
        return indices
    buckets = MAX_DRAWN_POINTS // 2
    kept: list[int] = []
    for b in range(buckets):
        part = indices[b * len(indices) // buckets : (b + 1) * len(indices) // buckets]
        if part:
            low, high = min(part, key=lambda i: ys[i]), max(part, key=lambda i: ys[i])
            kept.extend(sorted({low, high}))
    return kept


def line_chart(
    title: str,
    series: Series,
    markers: Sequence[Marker] = (),
    *,
    width: int = _WIDTH,
    height: int = _HEIGHT,
    x_range: tuple[float, float] | None = None,
) -> str:
    """One chart as an ``<svg>`` element (text, safe to inline in HTML).

    ``x_range`` (epoch seconds) gives several charts the same time axis; by default the
    chart spans its own series.
    """
    n = len(series.xs)
    values = [y for y in series.ys if math.isfinite(y)]
    limits = [t for t in series.thresholds if t is not None and math.isfinite(t)]
    x0, x1 = (min(series.xs), max(series.xs)) if n else (0.0, 1.0)
    if x_range is not None:
        x0, x1 = min(x_range[0], x0), max(x_range[1], x1)
    if x1 <= x0:
        x0, x1 = x0 - 30.0, x1 + 30.0
    y0 = min([0.0, *values, *limits])
    y1 = max([*values, *limits, y0 + 1e-9])
    y1 += (y1 - y0) * 0.08 or 1.0
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return _TOP + (1.0 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{_LEFT}" y="16" class="chart-title">{escape(title)}</text>',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for tick in nice_ticks(y0, y1):
        y = sy(tick)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{_fmt(tick)}</text>"
        )
    short = (x1 - x0) < 2 * 86400
    for k in range(5):
        x = x0 + (x1 - x0) * k / 4
        stamp = datetime.fromtimestamp(x, UTC).strftime("%m-%d %H:%M" if short else "%Y-%m-%d")
        anchor = ("start", "middle", "middle", "middle", "end")[k]
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - 10}" class="tick" text-anchor="{anchor}">'
            f"{stamp}</text>"
        )
    drawn = _thin([i for i in range(n) if math.isfinite(series.ys[i])], series.ys)
    if drawn:
        path = " ".join(f"{sx(series.xs[i]):.1f},{sy(series.ys[i]):.1f}" for i in drawn)
        parts.append(f'<polyline points="{path}" class="statistic"/>')
    steps: list[str] = []
    previous: float | None = None
    for i in range(n):
        limit = series.thresholds[i]
        if limit is None or not math.isfinite(limit):
            continue
        if previous is not None and limit != previous:  # a step, not a slope
            steps.append(f"{sx(series.xs[i]):.1f},{sy(previous):.1f}")
        steps.append(f"{sx(series.xs[i]):.1f},{sy(limit):.1f}")
        previous = limit
    if steps:
        parts.append(f'<polyline points="{" ".join(steps)}" class="threshold"/>')
    breaches = [i for i in range(n) if series.breached[i] and math.isfinite(series.ys[i])]
    for i in breaches[:_MAX_DOTS]:
        parts.append(
            f'<circle cx="{sx(series.xs[i]):.1f}" cy="{sy(series.ys[i]):.1f}" r="2.8" '
            f'class="breach"><title>{escape(series.tips[i])}</title></circle>'
        )
    for marker in markers:
        if not x0 <= marker.x <= x1:
            continue
        x = sx(marker.x)
        head = (
            f"{x - 5:.1f},{_TOP} {x + 5:.1f},{_TOP} {x:.1f},{_TOP + 8}"
            if marker.kind != "resolved"
            else f"{x - 5:.1f},{_TOP + 8} {x + 5:.1f},{_TOP + 8} {x:.1f},{_TOP}"
        )
        parts.append(
            f'<g class="marker {marker.kind}"><title>{escape(marker.label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_TOP + plot_h}"/>'
            f'<polygon points="{head}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def badge(state: str) -> str:
    """A coloured label for an alert state or a model event type."""
    return f'<span class="badge {escape(state)}">{escape(state)}</span>'


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], css_class: str) -> str:
    """A table of already escaped HTML cells."""
    header = "".join(f"<th>{escape(title)}</th>" for title in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<table class="{css_class}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'
    )


STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330}
h1{font-size:22px}h2{border-bottom:2px solid #d0d5de;padding-bottom:4px;margin-top:36px}
h3{margin:22px 0 8px}.quiet{color:#687082}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #d0d5de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f7}.grid{display:flex;flex-wrap:wrap;gap:8px}
.group{width:602px;max-width:100%}
.chart-box{border:1px solid #e1e5ec;border-radius:4px;background:#fff}
svg.chart{display:block;max-width:100%;height:auto}
.chart-title{font-size:13px;font-weight:600;fill:#1d2330}.tick{font-size:10px;fill:#687082}
.plot{fill:#fbfcfd;stroke:#d0d5de}line.grid{stroke:#eceff4}
.statistic{fill:none;stroke:#2f6fd0;stroke-width:1.5}
.threshold{fill:none;stroke:#d03b2f;stroke-width:1.2;stroke-dasharray:5 3}
.breach{fill:#d03b2f}.marker line{stroke-width:1.3}
.marker.firing line{stroke:#d03b2f}.marker.firing polygon{fill:#d03b2f}
.marker.resolved line{stroke:#2c9a4b;stroke-dasharray:3 2}.marker.resolved polygon{fill:#2c9a4b}
.marker.promoted line{stroke:#7b3fc4;stroke-dasharray:6 3}.marker.promoted polygon{fill:#7b3fc4}
.badge{border-radius:3px;padding:0 5px;color:#fff;background:#687082}
.badge.firing,.badge.rejected,.badge.rolled_back{background:#d03b2f}
.badge.resolved,.badge.promoted{background:#2c9a4b}
details{margin:6px 0}summary{cursor:pointer;color:#2f6fd0}
table.facts th{width:12em;background:#f7f8fa;font-weight:600}
.legend{font-size:12px;color:#4a5263;display:flex;flex-wrap:wrap;gap:4px 16px;align-items:center}
.key{white-space:nowrap}.swatch{display:inline-block;vertical-align:middle;margin-right:5px}
.stat-line{width:22px;border-top:2px solid #2f6fd0}
.limit-line{width:22px;border-top:2px dashed #d03b2f}
.dot{width:7px;height:7px;border-radius:50%;background:#d03b2f}
.fired,.cleared,.promo{width:0;height:14px;border-left:2px solid #d03b2f}
.cleared{border-left:2px dashed #2c9a4b}.promo{border-left:2px dashed #7b3fc4}
"""
