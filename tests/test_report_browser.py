"""The backtest report as a browser draws it: headless Chromium takes a screenshot, and the
pixels must show charts (the statistic line, thresholds and markers in report_svg's colours)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.events import ModelEvent, PredictionEvent
from streams.report_svg import STYLE

pytestmark = pytest.mark.timeout(120)
WIDTH, HEIGHT = 1280, 2000
SHIFT_AT = 6000
# report_svg.STYLE: statistic line, threshold / breach / firing marker, promotion marker.
COLOURS = {"blue": "#2f6fd0", "red": "#d03b2f", "purple": "#7b3fc4"}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is missing: run `make tools` (deploy/ensure-tools.sh installs it)")


def _report(tmp_path: Path) -> Path:
    """A backtest report of a stream whose ``amount`` shifts, then a promotion resolves it."""
    from detectors.profile_builder import profile_from_events
    from schemas.monitor_config import MonitorConfig
    from streams.cli_backtest import run_backtest
    from streams.report import write_report
    from streams.synthetic import generate_stream, write_stream

    predictions, labels = generate_stream(
        seed=21, n_events=9000, shift_at=SHIFT_AT, shift_feature="amount", shift_sigma=1.0,
        label_delay_seconds=600,
    )  # fmt: skip
    pred_path, label_path = write_stream(tmp_path, predictions, labels)
    after = [PredictionEvent.model_validate(p) for p in predictions[SHIFT_AT + 500 :]]
    profile = profile_from_events(after, model="fraud-scorer", profile_id="post-shift")
    promoted = ModelEvent(
        event_id="m1", type="promoted", model="fraud-scorer", version="2", aliases=["champion"],
        run_id=None, trigger_alert_id=None, metrics={"accuracy": 0.9},
        timestamp=after[1500].timestamp, reference=None,
    )  # fmt: skip
    points: list[Any] = []
    result = run_backtest(
        pred_path, label_path, MonitorConfig(), io.BytesIO(), on_point=points.append,
        switches=[(promoted.timestamp, "fraud-scorer", profile)],
    )  # fmt: skip
    statuses = [a.status for a in result.alerts if a.feature == "amount"]
    assert statuses[:2] == ["firing", "resolved"], statuses
    return write_report(tmp_path / "report.html", points, result.alerts, [promoted])


def _screenshot(html: Path, tmp_path: Path) -> Path:
    png = tmp_path / "report.png"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}", html.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, timeout=90, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert done.returncode == 0 and png.is_file(), done.stderr.decode(errors="replace")[-3000:]
    return png


def _near(pixels: np.ndarray, colour: str, tolerance: int = 10) -> np.ndarray:
    """Pixels within ``tolerance`` of ``#rrggbb`` in every channel."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    near: np.ndarray = np.all(np.abs(pixels - rgb) <= tolerance, axis=-1)
    return near


def test_the_report_renders_charts_in_chromium(tmp_path: Path) -> None:
    from PIL import Image  # in the venv through mlflow -> matplotlib

    png = _screenshot(_report(tmp_path), tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    inked = float(np.any(pixels < 235, axis=-1).mean())
    assert 0.02 < inked < 0.5, f"{inked:.1%} of the page is not white"
    assert "fill:#fbfcfd" in STYLE and all(f"stroke:{c}" in STYLE for c in COLOURS.values())
    # Rows that cross a chart's plot area (its #fbfcfd background), away from tables and text.
    plot_rows = _near(pixels, "#fbfcfd", tolerance=1).sum(axis=1) > 200
    in_plots = {
        name: _near(pixels, colour) & plot_rows[:, None] for name, colour in COLOURS.items()
    }
    counts = {name: int(mask.sum()) for name, mask in in_plots.items()}
    assert counts["blue"] > 1000 and counts["red"] > 300, counts  # statistic, threshold, breaches
    assert counts["purple"] > 100, counts  # promotion markers (the resolved one hides under them)
    bands = {int(row) // 150 for row in np.nonzero(in_plots["blue"].any(axis=1))[0]}
    assert len(bands) >= 5, sorted(bands)  # statistic lines all down the page: many charts
