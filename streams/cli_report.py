"""``driftline report``: the HTML report, from a backtest's files or from the live topics.

File mode (``--alerts A.jsonl --points P.jsonl [--models M.jsonl]``) redraws what a backtest
wrote. Kafka mode (``--from-kafka``) reads the predictions, labels, alerts and models topics
up to their current end and recomputes the statistics with the workers' monitor
(``streams.report_kafka``). A plain function with typer-annotated parameters, registered by
``streams.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli_backtest import _fail, _load_config, _read_jsonl

__all__ = ["report_command"]

_EITHER: str = (
    "give either --alerts and --points (a backtest's --alerts-out and --points-out, optionally "
    "--models) or --from-kafka (the live topics)"
)


def report_command(
    out: Annotated[Path, typer.Option(help="HTML file to write.")],
    alerts: Annotated[
        Path | None, typer.Option(help="Alerts JSONL written by backtest (file mode).")
    ] = None,
    points: Annotated[
        Path | None,
        typer.Option(help="Statistic points JSONL, backtest --points-out (file mode)."),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(help="ModelEvents (JSONL) to show versions and promotions (file mode)."),
    ] = None,
    from_kafka: Annotated[
        bool,
        typer.Option(
            "--from-kafka",
            help="Read the live topics (DRIFTLINE_* settings) to their current end and "
            "recompute the statistics with the workers' monitor.",
        ),
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Only this model's events (with --from-kafka).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Monitor configuration YAML (with --from-kafka; default: settings)."),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
) -> None:
    """Write the HTML report: statistics over time, alert episodes, model versions."""
    file_inputs = {"--alerts": alerts, "--points": points, "--models": models}
    given = [flag for flag, value in file_inputs.items() if value is not None]
    if from_kafka:
        if given:
            raise _fail(
                f"--from-kafka reads alerts, statistics and model events from Kafka; drop "
                f"{', '.join(given)} or drop --from-kafka"
            )
        _from_kafka(out, model, config, title or "driftline report (live topics)")
        return
    kafka_only = [flag for flag, value in (("--model", model), ("--config", config)) if value]
    if kafka_only:
        raise _fail(f"{' and '.join(kafka_only)} only apply with --from-kafka; {_EITHER}")
    if alerts is None or points is None:
        missing = " and ".join(f for f in ("--alerts", "--points") if file_inputs[f] is None)
        raise _fail(f"missing {missing}: {_EITHER}")
    _from_files(out, alerts, points, models, title or "driftline report")


def _from_files(out: Path, alerts: Path, points: Path, models: Path | None, title: str) -> None:
    from streams.report import ReportError, read_points, write_report

    alert_events = _read_jsonl(alerts, "Alert")
    model_events = _read_jsonl(models, "ModelEvent") if models is not None else []
    try:
        statistic_points = read_points(points)
    except (ReportError, OSError) as exc:
        raise _fail(str(exc)) from exc
    try:
        write_report(out, statistic_points, alert_events, model_events, title=title)
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror}") from exc
    typer.echo(
        f"wrote report to {out} ({len(statistic_points)} points, {len(alert_events)} alerts)"
    )


def _from_kafka(out: Path, model: str | None, config: Path | None, title: str) -> None:
    from schemas.monitor_config import MonitorConfigError
    from schemas.settings import Settings, SettingsError
    from streams.report_kafka import SnapshotError, report_from_topics

    monitor_config = _load_config(config) if config is not None else None
    try:
        settings = Settings()
        summary = report_from_topics(settings, out, model=model, title=title, config=monitor_config)
    except (SettingsError, SnapshotError, MonitorConfigError) as exc:
        raise _fail(str(exc)) from exc
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror}") from exc
    invalid = sum(summary.invalid.values())
    typer.echo(
        f"wrote report to {out}: {summary.predictions:,} predictions, {summary.labels:,} labels, "
        f"{summary.alerts} alert events, {summary.model_events} model events, "
        f"{summary.points:,} statistic points in {summary.seconds:.1f} s "
        f"({summary.events_per_second:,.0f} events/s)"
        + (f"; {invalid} invalid messages skipped" if invalid else "")
        + (f"; {summary.switches} reference switch(es)" if summary.switches else "")
    )
