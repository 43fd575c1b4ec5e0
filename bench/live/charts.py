"""The sustained run as a page of charts: worker memory and CPU over the run (``--chart``).

A table gives one slope; the chart shows whether memory levels off after the caches filled,
and when. Drawn with the HTML report's own SVG code, so the page needs nothing else to open.
"""

from __future__ import annotations

from html import escape
from itertools import pairwise

from live.phases import SustainedResult
from streams.report_svg import STYLE, Marker, Series, line_chart

__all__ = ["sustained_page"]


def _series(points: list[tuple[float, float]], started: float, unit: str) -> Series:
    xs = [started + t for t, _ in points]
    ys = [value for _, value in points]
    tips = [f"{value:,.2f} {unit} at {t:,.0f} s" for t, value in points]
    return Series(xs, ys, [None] * len(xs), [False] * len(xs), tips)


def _cores(cpu: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """CPU seconds per second between consecutive samples (1.0: one core busy)."""
    return [(t1, (c1 - c0) / (t1 - t0)) for (t0, c0), (t1, c1) in pairwise(cpu) if t1 > t0]


def sustained_page(result: SustainedResult, title: str) -> str:
    """An HTML page: RSS (MiB) and CPU (cores) of the worker over the sustained run, with a
    marker where every model's reference warm-up is over."""
    started = result.started_epoch
    warm = [Marker(started + result.warmup_seconds, "promoted", "reference warm-up over")]
    span = (started, started + (result.rss[-1][0] if result.rss else result.seconds))
    rss = _series(result.rss, started, "MiB")
    cores = _series(_cores(result.cpu), started, "cores")
    charts = [line_chart("worker RSS, MiB", rss, warm, x_range=span)]
    if result.rocksdb_cache:
        charts += [
            line_chart(
                "RocksDB cache usage, MiB (bounded by its capacity)",
                _series(result.rocksdb_cache, started, "MiB"), warm, x_range=span,
            ),
            line_chart(
                "worker RSS minus the RocksDB cache, MiB",
                _series(result.outside_cache(), started, "MiB"), warm, x_range=span,
            ),
        ]  # fmt: skip
    charts += [
        line_chart("worker CPU, cores", cores, warm, x_range=span),
    ]
    body = "\n".join(f"<section>{chart}</section>" for chart in charts)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )
