"""streams.report: one self-contained HTML file with SVG charts, alert markers and tables."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from schemas.events import Alert, AlertReference, AlertWindow, ModelEvent
from streams.report import (
    PointRecord,
    ReportError,
    alert_episodes,
    build_report,
    read_points,
    write_points,
    write_report,
)
from streams.report import (
    StatisticPoint as ReportPoint,
)
from streams.report_svg import MAX_DRAWN_POINTS, Series, line_chart, nice_ticks

T0 = datetime(2024, 1, 1, tzinfo=UTC)
VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "line", "polyline", "polygon", "circle"}


class _Checker(HTMLParser):
    """Checks nesting; counts charts outside and inside <details>."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.charts_open = 0
        self.charts_folded = 0
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs
        if tag == "svg":
            if "details" in self.stack:
                self.charts_folded += 1
            else:
                self.charts_open += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def _check(html: str) -> _Checker:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def _points(
    feature: str | None,
    kind: str,
    detector: str,
    *,
    breach_from: int = 99,
    n: int = 20,
    threshold: float = 0.2,
    model: str = "fraud-scorer",
) -> list[PointRecord]:
    return [
        PointRecord(model=model, kind=kind, feature=feature, detector=detector,
                    statistic=0.05 + (0.3 if i >= breach_from else 0.0) + 0.001 * i,
                    threshold=threshold, p_value=None if detector != "ks" else 0.5,
                    breached=i >= breach_from, window_start=T0 + timedelta(minutes=10 * i),
                    window_end=T0 + timedelta(minutes=10 * (i + 1)), count=500)
        for i in range(n)
    ]  # fmt: skip


def _alert(status: str, minutes: int, feature: str = "amount", detector: str = "ks") -> Alert:
    at = T0 + timedelta(minutes=minutes)
    return Alert(
        alert_id=f"{status}-{minutes}", fingerprint=f"fp-{feature}-{detector}", status=status,  # type: ignore[arg-type]
        severity="warning", model="fraud-scorer", model_version="1", kind="feature_drift",
        feature=feature, segment=None, detector=detector, statistic=0.4, threshold=0.2,
        window=AlertWindow(start=at - timedelta(minutes=10), end=at, count=500),
        reference=AlertReference(source="warmup", model_version="1", count=2000),
        fired_at=at, emitted_at=at, summary=f"{feature} drifted <b>({status})</b>",
    )  # fmt: skip


PROMOTED = ModelEvent(
    event_id="m1", type="promoted", model="fraud-scorer", version="2", aliases=["champion"],
    run_id="r1", trigger_alert_id="firing-130", metrics={"accuracy": 0.91}, reference=None,
    timestamp=T0 + timedelta(minutes=170),
)  # fmt: skip


def test_report_is_self_contained_html_with_charts_markers_and_tables() -> None:
    points = (
        _points("amount", "feature_drift", "ks", breach_from=12)
        + _points("amount", "feature_drift", "psi")
        + _points("country", "feature_drift", "chi_square")
        + _points(None, "performance", "accuracy", threshold=0.7)
        + _points(None, "label_coverage", "coverage", threshold=0.5)
    )
    alerts = [_alert("firing", 130), _alert("resolved", 190)]
    html = build_report(points, alerts, [PROMOTED], title="t <1>")
    checker = _check(html)
    assert html.startswith("<!DOCTYPE html>") and "<title>t &lt;1&gt;</title>" in html
    assert not {"script", "link", "img", "iframe", "object"} & checker.tags
    assert not [name for name, _ in checker.attributes if name in ("src", "href") and _ != "#"]
    assert "http" not in html  # nothing to load, nowhere to go
    # 4 series shown; amount's psi folded under its deciding ks chart
    assert (checker.charts_open, checker.charts_folded) == (4, 1)
    assert 'aria-label="amount - ks"' in html and 'aria-label="amount - psi"' in html
    assert html.count('class="marker firing"') == 1 and html.count('class="marker resolved"') == 1
    assert html.count('class="marker promoted"') == 5
    assert html.count('class="breach"') == 8 and html.count('class="threshold"') == 5
    assert html.index("Quality") < html.index("Label coverage") < html.index("Feature drift")
    assert "drifted &lt;b&gt;(firing)&lt;/b&gt;" in html and "<b>" not in html
    assert "2024-01-01 02:10:00 UTC" in html and "1h00m" in html  # fired, lasted
    assert "accuracy=0.91" in html and ">promoted<" in html
    for svg in html.split("<svg")[1:]:
        ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # well-formed XML


def test_many_features_keep_at_most_max_charts_open() -> None:
    points = [p for i in range(45) for p in _points(f"f{i:02d}", "feature_drift", "ks", n=5)]
    points += _points("f44", "feature_drift", "ks", n=5, breach_from=2)[2:]
    html = build_report(points, [_alert("firing", 40, feature="f40")], max_charts=30)
    checker = _check(html)
    assert (checker.charts_open, checker.charts_folded) == (30, 15)
    assert "15 quieter series" in html
    opened = html.split("<details>")[0]
    assert 'aria-label="f40 - ks"' in opened and 'aria-label="f44 - ks"' in opened


def test_empty_and_multi_model_reports() -> None:
    _check(build_report([], []))
    html = build_report(_points("a", "feature_drift", "ks", model="m1")
                        + _points("a", "feature_drift", "ks", model="m2"), [])  # fmt: skip
    assert '<a href="#model-m1">' in html and 'id="model-m2"' in html
    assert "No alert fired." in html


def test_points_round_trip_and_bad_lines(tmp_path: Path) -> None:
    points = _points("amount", "feature_drift", "ks", breach_from=3, n=6)
    path = tmp_path / "points.jsonl"
    assert write_points(path, points) == 6
    assert read_points(path) == points
    path.write_text(path.read_text().splitlines()[0] + '\n{"model": 1}\n')
    with pytest.raises(ReportError, match=r"points.jsonl:2: not a statistic point"):
        read_points(path)


def test_alert_episodes_pair_firing_with_resolved_per_fingerprint() -> None:
    alerts = [
        _alert("resolved", 50, feature="b"),
        _alert("firing", 10), _alert("firing", 20, feature="b"), _alert("resolved", 40),
        _alert("firing", 60),
    ]  # fmt: skip
    episodes = [(a.alert_id, b.alert_id if b else None) for a, b in alert_episodes(alerts)]
    assert episodes == [
        ("firing-10", "resolved-40"), ("firing-20", "resolved-50"), ("firing-60", None),
    ]  # fmt: skip


def test_write_report_and_long_series_are_thinned(tmp_path: Path) -> None:
    points = _points("amount", "feature_drift", "ks", n=5000, breach_from=4990)
    path = write_report(tmp_path / "r.html", points, [])
    html = path.read_text(encoding="utf-8")
    drawn = html.split('class="statistic"')[0].rsplit('points="', 1)[1].split('"')[0].split()
    assert len(drawn) <= MAX_DRAWN_POINTS and html.count('class="breach"') == 10
    assert path.stat().st_size < 200_000


def test_chart_pieces() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nice_ticks(-3.0, 17.0) == [0.0, 5.0, 10.0, 15.0]
    assert nice_ticks(1.0, 1.0) == [1.0]
    svg = line_chart("x", Series([], [], [], [], []))
    ET.fromstring(svg)
    step = line_chart("s", Series([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, None],
                                  [False] * 3, ["a", "b", "c"]))  # fmt: skip
    threshold = ET.fromstring(step).find(".//polyline[@class='threshold']")
    assert threshold is not None and len(threshold.attrib["points"].split()) == 3


def test_the_judges_points_fit_the_report(tmp_path: Path) -> None:
    from detectors.judge import StatisticPoint

    point = StatisticPoint(
        model="m", kind="feature_drift", feature="amount", detector="ks", statistic=0.3,
        threshold=0.1, p_value=1e-4, breached=True, window_start=T0,
        window_end=T0 + timedelta(minutes=5), count=500, segment="country=DE",
    )  # fmt: skip
    typed: ReportPoint = point  # the type the report is drawn from
    write_points(tmp_path / "p.jsonl", [typed])
    assert read_points(tmp_path / "p.jsonl") == [PointRecord(**dataclasses.asdict(point))]
    assert 'aria-label="amount / country=DE - ks"' in build_report([point], [])
