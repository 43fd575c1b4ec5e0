"""Evidently's own DataDriftPreset over count windows: runs inside .venv-bench, JSON in and out.

Never imported by driftline and never run in the main venv (evidently's pins conflict with
ours); the bench scripts call it as a subprocess (``make bench-venv`` creates the venv):

    .venv-bench/bin/python bench/baselines/evidently_windows.py decide WINDOWS.json
    .venv-bench/bin/python bench/baselines/evidently_windows.py time-file PREDICTIONS.jsonl \
        [--warmup 2000] [--window 500] [--windows 100]

``decide`` reads ``{"numerical": [...], "categorical": [...], "cases": [{"reference":
{column: values}, "windows": [{column: values}, ...]}, ...]}`` and prints, per window (in
order) and column, the test evidently chose, its threshold, score and drift decision.
``time-file`` reads a v1 predictions JSONL file through pandas (features flattened to
columns), takes the first ``--warmup`` rows as the reference and times one
``Report([DataDriftPreset()])`` per window of ``--window`` rows for the first ``--windows``
windows; it prints the timings as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

_started = time.perf_counter()
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently import __version__ as evidently_version  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _started


def _decisions(snapshot: Any) -> dict[str, dict[str, Any]]:
    """Per column: the test evidently picked, its threshold, score and drift decision."""
    out: dict[str, dict[str, Any]] = {}
    drifted_count = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            drifted_count = int(metric["value"]["count"])
        if not config["type"].endswith("ValueDrift"):
            continue
        method, threshold, score = config["method"], float(config["threshold"]), metric["value"]
        if "p_value" in method:  # hypothesis tests: drift when p is small (K-S uses <=)
            drift = score <= threshold if method.startswith("K-S") else score < threshold
        else:  # distances: drift when the distance reaches the threshold
            drift = score >= threshold
        out[config["column"]] = {
            "method": method, "threshold": threshold, "score": float(score), "drift": bool(drift),
        }  # fmt: skip
    flagged = sum(item["drift"] for item in out.values())
    if drifted_count is not None and drifted_count != flagged:
        raise SystemExit(f"evidently counted {drifted_count} drifted columns, we read {flagged}")
    return out


def decide(path: str) -> dict[str, Any]:
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    definition = DataDefinition(
        numerical_columns=spec["numerical"], categorical_columns=spec["categorical"]
    )
    report = Report([DataDriftPreset()])
    results, started = [], time.perf_counter()
    for case in spec["cases"]:
        frame = pd.DataFrame(case["reference"])
        reference = Dataset.from_pandas(frame, data_definition=definition)
        for window in case["windows"]:
            current = Dataset.from_pandas(pd.DataFrame(window), data_definition=definition)
            results.append(_decisions(report.run(current, reference)))
    seconds = time.perf_counter() - started
    return {
        "evidently": evidently_version, "pandas": pd.__version__, "windows": results,
        "seconds_per_window": seconds / max(len(results), 1),
    }  # fmt: skip


def time_file(path: str, warmup: int, window: int, windows: int) -> dict[str, Any]:
    started = time.perf_counter()
    frame = pd.read_json(path, lines=True, dtype=False)
    features = pd.DataFrame.from_records(frame["features"].tolist())
    read_seconds = time.perf_counter() - started
    numerical = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numerical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    started = time.perf_counter()
    reference = Dataset.from_pandas(features.iloc[:warmup], data_definition=definition)
    report = Report([DataDriftPreset()])
    setup_seconds = time.perf_counter() - started
    total = max((len(features) - warmup) // window, 0)
    timed = min(windows, total)
    per_window, drifted = [], 0
    for j in range(timed):
        started = time.perf_counter()
        part = features.iloc[warmup + j * window : warmup + (j + 1) * window]
        current = Dataset.from_pandas(part, data_definition=definition)
        decisions = _decisions(report.run(current, reference))
        per_window.append(time.perf_counter() - started)
        drifted += sum(item["drift"] for item in decisions.values())
    return {
        "evidently": evidently_version, "pandas": pd.__version__, "rows": len(features),
        "numerical": numerical, "categorical": categorical,
        "import_seconds": IMPORT_SECONDS, "read_seconds": read_seconds,
        "setup_seconds": setup_seconds, "windows_total": total, "windows_timed": timed,
        "window_seconds": per_window, "drifted_column_windows": drifted,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("decide").add_argument("input")
    timing = sub.add_parser("time-file")
    timing.add_argument("predictions")
    timing.add_argument("--warmup", type=int, default=2000)
    timing.add_argument("--window", type=int, default=500)
    timing.add_argument("--windows", type=int, default=100)
    args = parser.parse_args(argv)
    if args.command == "decide":
        result = decide(args.input)
    else:
        result = time_file(args.predictions, args.warmup, args.window, args.windows)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
