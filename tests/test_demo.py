"""`driftline demo`, the first command a new user runs, as a real process on the real broker:
it must show an alert, a retrain and a promotion, write the report and exit 0, twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]


def _demo(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    driftline = Path(sys.executable).parent / "driftline"
    return subprocess.run(
        # The pace `make demo` uses. At --speed max the judge can end phase 1 without
        # judging the changed labels (about 1 run in 3 on a loaded box; see the issue note).
        [str(driftline), "demo"],
        cwd=cwd, env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True, text=True,
        timeout=400,
    )  # fmt: skip


def _worker_logs(cwd: Path) -> str:
    """The tail of each run's worker log: why a judge stayed silent is there, not in stdout."""
    return "".join(
        f"\n--- {log}:\n{log.read_text(errors='replace')[-4000:]}"
        for log in sorted((cwd / ".driftline" / "demo").glob("run-*/worker.log"))
    )


def test_demo_closes_the_loop_and_runs_again(kafka_env: dict[str, str], tmp_path: Path) -> None:
    first = _demo(tmp_path, kafka_env)
    output = first.stdout + first.stderr
    shown = output + _worker_logs(tmp_path)
    assert first.returncode == 0, shown[-8000:]
    assert re.search(r"alert FIRING\s+critical fraud-scorer performance", output), shown
    assert re.search(r"model REGISTERED\s+fraud-scorer version 1", output), shown
    assert re.search(r"model PROMOTED\s+fraud-scorer version 1", output), shown
    assert "alert RESOLVED fraud-scorer performance" in output, shown
    assert "the loop closed" in output and "problem:" not in output, shown
    report = tmp_path / ".driftline" / "demo" / "report.html"
    html = report.read_text(encoding="utf-8")
    assert html.count("<svg") >= 3 and "promoted" in html, html[:2000]
    assert f"report: {report.resolve()}" in output.replace("\n", ""), output[-2000:]
    runs = sorted((tmp_path / ".driftline" / "demo").glob("run-*"))
    assert len(runs) == 1 and (runs[0] / "worker.log").exists()

    second = _demo(tmp_path, kafka_env)  # fresh topics and MLflow store: the same story again
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    assert "model PROMOTED" in second.stdout and "the loop closed" in second.stdout
    assert len(sorted((tmp_path / ".driftline" / "demo").glob("run-*"))) == 2
