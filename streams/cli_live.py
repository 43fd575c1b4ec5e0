"""`driftline worker`, `driftline replay` and `driftline alerts tail` (registered by streams.cli).

Plain functions with typer-annotated parameters; heavy modules are imported inside them, so
``driftline --help`` stays quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from schemas.events import LabelEvent, PredictionEvent

__all__ = ["alerts_tail_command", "replay_command", "worker_command"]


def worker_command(
    store: Annotated[str, typer.Option(help="Table store: rocksdb:// or memory://")] = "rocksdb://",
    datadir: Annotated[
        Path | None,
        typer.Option(
            help="RocksDB directory; one per worker on a host. Default .driftline/faust/<group>."
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning or error")] = "warning",
    judge_save_seconds: Annotated[
        float,
        typer.Option(help="How long a judge's stored state may lag; read back after a crash."),
    ] = 2.0,
    event_loop: Annotated[str, typer.Option(help="uvloop (faster) or asyncio")] = "uvloop",
    batch_seconds: Annotated[
        float,
        typer.Option(help="How long the ingest waits to fill a batch; lower cuts alert latency."),
    ] = 0.1,  # streams.app.BATCH_SECONDS, without importing Faust here (a test keeps them equal)
    judge_batch_seconds: Annotated[
        float,
        typer.Option(help="How long the judge waits to fill a batch of sketches deltas."),
    ] = 0.01,  # streams.app.JUDGE_BATCH_SECONDS (the same test)
    fetch_wait_seconds: Annotated[
        float,
        typer.Option(help="How long the broker may hold a fetch that finds no data."),
    ] = 0.02,  # streams.app.FETCH_WAIT_SECONDS (the same test)
) -> None:
    """Run one live worker (start several with the same settings to split the partitions)."""
    from schemas.settings import Settings, SettingsError
    from streams.worker import WorkerOptionError, check_worker_options, run_worker

    try:
        check_worker_options(
            loglevel, event_loop, batch_seconds, fetch_wait_seconds, judge_save_seconds,
            judge_batch_seconds,
        )  # fmt: skip
    except WorkerOptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.flag) from exc
    if store not in ("rocksdb://", "memory://"):
        raise typer.BadParameter("must be rocksdb:// or memory://", param_hint="--store")
    try:
        settings = Settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    run_worker(
        settings, store=store, datadir=datadir, loglevel=loglevel,
        judge_save_seconds=judge_save_seconds, event_loop=event_loop,
        batch_seconds=batch_seconds, fetch_wait_seconds=fetch_wait_seconds,
        judge_batch_seconds=judge_batch_seconds,
    )  # fmt: skip


def replay_command(
    predictions: Annotated[Path, typer.Option(help="Predictions file: JSONL, CSV or Parquet.")],
    labels: Annotated[Path | None, typer.Option(help="Labels file: JSONL, CSV or Parquet.")] = None,
    speed: Annotated[str, typer.Option(help="'max', or N x event time (60: 1 h/min).")] = "max",
    batch: Annotated[int, typer.Option(help="Predictions per message (batch envelopes).")] = 1,
) -> None:
    """Replay recorded events into Kafka in event-time order, through the producer SDK."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from schemas.settings import Settings
    from streams.replay import parse_speed, replay_events

    try:
        pace = parse_speed(speed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--speed") from exc
    if batch < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--batch")
    for path in (predictions, labels):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--predictions/--labels")
    from streams.readers import InputFileError
    from streams.topics import TopicsError, ensure_topics

    settings = Settings()
    try:
        events = _load_events(predictions, labels)
    except InputFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:  # before producing: auto-created topics would get the broker's partition count
        ensure_topics(settings)
    except TopicsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("replaying", total=len(events))
        result = replay_events(
            settings,
            events,
            speed=pace,
            batch_size=batch,
            on_progress=lambda n: progress.advance(task, n),
        )
    typer.echo(
        f"replayed {result.predictions} predictions and {result.labels} labels in "
        f"{result.messages} messages, {result.seconds:.1f} s, "
        f"{result.events_per_second:,.0f} events/s"
        + (f"; {result.failed} NOT delivered" if result.failed else "")
    )
    if result.failed:
        raise typer.Exit(1)


def _load_events(predictions: Path, labels: Path | None) -> list[PredictionEvent | LabelEvent]:
    """All events of both files (JSONL, CSV or Parquet), merged in event-time order.

    Stable for equal timestamps, so a label never overtakes a prediction stamped the same.
    """
    from streams.readers import read_events

    loaded: list[PredictionEvent | LabelEvent] = list(read_events(predictions, kind="prediction"))
    if labels is not None:
        loaded.extend(read_events(labels, kind="label"))
    loaded.sort(key=lambda event: event.timestamp)
    return loaded


def alerts_tail_command(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON alert per line.")] = False,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    severity: Annotated[str | None, typer.Option(help="warning or critical.")] = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest alert.")] = False,
    max_alerts: Annotated[int | None, typer.Option("--max", help="Stop after N alerts.")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without messages.")
    ] = None,
) -> None:
    """Follow driftline.alerts: readable lines, or JSON lines for pipes."""
    from schemas.settings import Settings
    from streams.alerts_tail import AlertFilter, describe_alert, tail_alerts

    if severity not in (None, "warning", "critical"):
        raise typer.BadParameter("must be warning or critical", param_hint="--severity")
    selected = AlertFilter(model=model, severity=severity)
    try:
        for raw, alert in tail_alerts(
            Settings(),
            alert_filter=selected,
            from_beginning=from_beginning,
            max_alerts=max_alerts,
            idle_timeout_seconds=idle_timeout,
        ):
            line = raw.decode() if json_output else describe_alert(alert)
            typer.echo(line)
    except KeyboardInterrupt:
        return
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
