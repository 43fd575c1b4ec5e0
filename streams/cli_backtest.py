"""``driftline backtest`` and ``driftline generate``: offline, no Kafka.

The backtest reads recorded predictions (and labels), merges them in event-time order and drives
``detectors.monitor.FleetMonitor``, the monitor the workers run, so its alerts are the ones the
live system would have sent. Plain functions with typer-annotated parameters, registered by
``streams.cli``; heavy modules are imported inside them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Final

import typer
from pydantic import BaseModel

if TYPE_CHECKING:
    from schemas.events import Alert
    from streams.readers import RowError
    from streams.report import StatisticPoint

__all__ = [
    "BacktestResult",
    "backtest_command",
    "generate_command",
    "run_backtest",
]

PROGRESS_MIN_BYTES: Final = 4 << 20
"""Smaller inputs finish before a progress bar would help."""
_SHOWN_ERRORS: Final = 10


@dataclass
class BacktestResult:
    """What a backtest read and decided."""

    predictions: int = 0
    labels: int = 0
    invalid_predictions: int = 0
    invalid_labels: int = 0
    out_of_order: int = 0
    switches: int = 0
    """Reference switches applied (``promoted`` model events)."""
    seconds: float = 0.0
    alerts: list[Alert] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return (self.predictions + self.labels) / self.seconds if self.seconds > 0 else 0.0


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def run_backtest(
    predictions: Path,
    labels: Path | None,
    config: Any,
    alerts_out: IO[bytes],
    *,
    on_point: Callable[[StatisticPoint], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] = _wall_clock,
    chunk_rows: int = 10_000,
    model: str | None = None,
    monitor_factory: Callable[..., Any] | None = None,
    switches: Sequence[tuple[datetime, str, Any]] = (),
    columnar: bool = True,
) -> BacktestResult:
    """Run the monitor over the files, writing each alert to ``alerts_out`` as it is decided.

    ``switches`` are (event time, model, ReferenceProfile) of ``promoted`` model events: the
    model's reference switches when event time reaches them, as it does live.
    ``monitor_factory(config, clock=, on_point=)`` defaults to ``FleetMonitor``. ``columnar``:
    read predictions into columns with bulk validation and feed ``process_columns`` (when the
    monitor has it and no switch needs events); the alerts are the same. Raises
    ``streams.readers.InputFileError`` for a file that cannot be read at all.
    """
    from schemas.events import to_json_bytes
    from streams.monitor_feed import ReferenceSwitch, feed_monitor
    from streams.readers import MergeStats, merge_by_event_time, read_labels, read_predictions
    from streams.readers_columns import ColumnReader, merge_rows_by_event_time

    monitor = None
    if monitor_factory is not None:  # a custom monitor reads columns if it has process_columns
        monitor = monitor_factory(config, clock=clock, on_point=on_point)
    # Columns validated in bulk, unless the monitor or reference switches need events.
    columnar = (
        columnar and not switches and (monitor is None or hasattr(monitor, "process_columns"))
    )
    prediction_reader = (
        ColumnReader(predictions, chunk_rows=chunk_rows, model=model, on_bytes=on_bytes)
        if columnar else read_predictions(
            predictions, chunk_rows=chunk_rows, model=model, on_bytes=on_bytes
        )
    )  # fmt: skip
    label_reader = (
        read_labels(labels, chunk_rows=chunk_rows, model=model, on_bytes=on_bytes)
        if labels is not None else None
    )  # fmt: skip
    if monitor is None:
        from detectors.monitor import FleetMonitor  # after the readers: bad tables fail first

        monitor = FleetMonitor(config, clock=clock, on_point=on_point)
    result, stats = BacktestResult(), MergeStats()
    started = time.perf_counter()

    def emit(alerts: list[Alert]) -> None:
        for alert in alerts:
            alerts_out.write(to_json_bytes(alert) + b"\n")
        result.alerts.extend(alerts)

    label_chunks = label_reader if label_reader is not None else ()
    if isinstance(prediction_reader, ColumnReader):
        rows = prediction_reader.row_chunks()
        for parts, batch_labels in merge_rows_by_event_time(rows, label_chunks, stats=stats):
            result.predictions += sum(map(len, parts))
            result.labels += len(batch_labels)
            emit(monitor.process_columns(parts, batch_labels))
        emit(monitor.finish())
    else:
        fed = feed_monitor(
            monitor,
            merge_by_event_time(prediction_reader, label_chunks, stats=stats),
            emit,
            [ReferenceSwitch(name, profile, at=at) for at, name, profile in switches],
        )
        result.predictions, result.labels, result.switches = (
            fed.predictions, fed.labels, len(fed.switched)
        )  # fmt: skip
    result.seconds = time.perf_counter() - started
    result.out_of_order = stats.out_of_order
    result.invalid_predictions = prediction_reader.invalid
    result.errors = list(prediction_reader.errors)
    if label_reader is not None:
        result.invalid_labels = label_reader.invalid
        result.errors += label_reader.errors
    return result


def _fail(message: str) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _load_config(path: Path | None) -> Any:
    from schemas.monitor_config import MonitorConfigError, load_monitor_config

    try:
        return load_monitor_config(path)
    except (MonitorConfigError, OSError) as exc:
        raise _fail(f"{path}: {exc}") from exc


def backtest_command(
    predictions: Annotated[
        Path, typer.Option(help="Predictions: JSONL, CSV or Parquet (.gz for JSONL and CSV).")
    ],
    alerts_out: Annotated[
        Path, typer.Option("--alerts-out", help="Write the alerts here, one v1 Alert per line.")
    ],
    labels: Annotated[Path | None, typer.Option(help="Labels: JSONL, CSV or Parquet.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Monitor configuration YAML; the defaults work without.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Also write an HTML report here.")] = None,
    points_out: Annotated[
        Path | None,
        typer.Option("--points-out", help="Write the judged statistics (JSONL) for a report."),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(
            help="ModelEvents (JSONL): promotions switch the reference; shown in the report."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name for tabular rows without a model column.")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read per chunk.")] = 10_000,
) -> None:
    """Run the monitor over recorded events, offline: same alerts as the workers would send."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from streams.readers import InputFileError, detect_format

    console = Console(soft_wrap=True)
    inputs = [path for path in (predictions, labels) if path is not None]
    try:
        for path in inputs:
            detect_format(path)
            if not path.is_file():
                raise InputFileError(f"{path}: no such file")
    except InputFileError as exc:
        raise _fail(str(exc)) from exc
    model_events = _read_jsonl(models, "ModelEvent") if models is not None else []
    switches = _reference_switches(model_events, models) if models is not None else []
    monitor_config = _load_config(config)
    points: list[StatisticPoint] = []
    keep_points = report is not None or points_out is not None
    total = sum(path.stat().st_size for path in inputs)
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        disable=total < PROGRESS_MIN_BYTES or not Console(stderr=True).is_terminal,
    )  # fmt: skip
    task = progress.add_task("backtest", total=total)
    try:
        alerts_out.parent.mkdir(parents=True, exist_ok=True)
        sink = alerts_out.open("wb")
    except OSError as exc:
        raise _fail(f"{alerts_out}: cannot write the alerts there: {exc}") from exc
    with progress, sink:
        try:
            result = run_backtest(
                predictions, labels, monitor_config, sink,
                on_point=points.append if keep_points else None,
                on_bytes=lambda n: progress.advance(task, n), chunk_rows=chunk_rows, model=model,
                switches=switches,
            )  # fmt: skip
        except InputFileError as exc:
            so_far = f"; alerts decided before that are in {alerts_out}" if sink.tell() else ""
            raise _fail(f"{exc}{so_far}") from exc
    _check_usable(result, predictions, labels)
    _print_summary(console, result, alerts_out)
    try:
        if points_out is not None:
            from streams.report import write_points

            write_points(points_out, points)
            console.print(f"wrote {len(points)} statistic points to {points_out}", markup=False)
        if report is not None:
            from streams.report import write_report

            subtitle = f"{predictions.name}" + (f" + {labels.name}" if labels else "")
            write_report(report, points, result.alerts, model_events, subtitle=subtitle)
            console.print(f"wrote report to {report}", markup=False)
    except OSError as exc:
        raise _fail(f"cannot write {exc.filename}: {exc.strerror}") from exc


def _reference_switches(events: list[Any], source: Path) -> list[tuple[datetime, str, Any]]:
    """(time, model, profile) of every ``promoted`` event that carries a reference profile."""
    from schemas.profile import ReferenceProfile
    from streams.agents_monitor import MonitorKit

    switches: list[tuple[datetime, str, Any]] = []
    for event in events:
        if event.type != "promoted" or event.reference is None:
            continue
        try:
            profile = ReferenceProfile.model_validate(MonitorKit.resolve_reference(event.reference))
        except (ValueError, OSError) as exc:
            raise _fail(
                f"{source}: model event {event.event_id}: its reference is not a usable "
                f"ReferenceProfile: {exc}"
            ) from exc
        switches.append((event.timestamp, event.model, profile))
    return switches


def _check_usable(result: BacktestResult, predictions: Path, labels: Path | None) -> None:
    """A file where every row is invalid is a wrong file, not bad rows: exit 2."""
    from rich.console import Console
    from rich.markup import escape

    for path, valid, invalid in (
        (predictions, result.predictions, result.invalid_predictions),
        (labels, result.labels, result.invalid_labels),
    ):
        if path is None or valid:
            continue
        mine = [str(error) for error in result.errors if error.path == str(path)][:3]
        problem = f"{invalid} invalid rows, e.g. " + "; ".join(mine) if invalid else "it is empty"
        raise _fail(f"{path}: no valid {'label' if path == labels else 'prediction'} event: "
                    f"{problem}")  # fmt: skip
    if result.errors:
        err = Console(stderr=True, soft_wrap=True)
        for error in result.errors[:_SHOWN_ERRORS]:
            err.print(f"[yellow]skipped[/yellow] {escape(str(error))}")
        hidden = result.invalid_predictions + result.invalid_labels - _SHOWN_ERRORS
        if hidden > 0:
            err.print(f"[yellow]... and {hidden} more invalid rows[/yellow]")


def _print_summary(console: Any, result: BacktestResult, alerts_out: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    counts: Counter[tuple[str, str, str, str]] = Counter(
        (alert.model, alert.kind, alert.feature or "-", alert.status) for alert in result.alerts
    )
    first: dict[tuple[str, str, str], datetime] = {}
    for alert in result.alerts:
        key = (alert.model, alert.kind, alert.feature or "-")
        if alert.status == "firing" and (key not in first or alert.fired_at < first[key]):
            first[key] = alert.fired_at
    table = Table("model", "kind", "feature", "firing", "resolved", "first fired (UTC)",
                  title="alerts")  # fmt: skip
    for model, kind, feature in sorted({key[:3] for key in counts}):
        firing = counts[(model, kind, feature, "firing")]
        resolved = counts[(model, kind, feature, "resolved")]
        when = first.get((model, kind, feature))
        since = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if when else "-"
        table.add_row(escape(model), kind, escape(feature), str(firing), str(resolved), since)
    if result.alerts:
        console.print(table)
    else:
        console.print("no alerts")
    invalid = result.invalid_predictions + result.invalid_labels
    console.print(
        f"{result.predictions:,} predictions, {result.labels:,} labels in {result.seconds:.1f} s "
        f"({result.events_per_second:,.0f} events/s); invalid rows: {result.invalid_predictions}"
        f" predictions, {result.invalid_labels} labels"
        + (f"; {result.out_of_order} events out of event-time order" if result.out_of_order else "")
        + (f"; {result.switches} reference switch(es) applied" if result.switches else "")
        + f"; {len(result.alerts)} alert events written to {alerts_out}"
        + ("" if not invalid else " (invalid rows skipped, see above)"),
        markup=False,
    )


def _read_jsonl(path: Path, what: str) -> list[Any]:
    """Every line of ``path`` as an Alert or ModelEvent; exit 2 naming the first bad line."""
    from schemas import events

    event_type: type[BaseModel] = getattr(events, what)
    loaded: list[Any] = []
    try:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        loaded.append(events.parse_event(line, event_type))
                    except events.InvalidEvent as exc:
                        raise _fail(f"{path}:{number}: {exc}") from exc
    except OSError as exc:
        raise _fail(f"{path}: cannot read it: {exc}") from exc
    return loaded


def generate_command(
    directory: Annotated[Path, typer.Argument(help="Folder for predictions.* and labels.*.")],
    events: Annotated[int, typer.Option(min=1, help="Predictions to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same stream).")] = 0,
    model: Annotated[str, typer.Option(help="Model name.")] = "fraud-scorer",
    features: Annotated[int, typer.Option(min=1, help="Features (~30 % categorical).")] = 10,
    shift_at: Annotated[int | None, typer.Option(help="Shift a numeric feature here.")] = None,
    shift_feature: Annotated[str | None, typer.Option(help="Feature to shift.")] = None,
    shift_sigma: Annotated[float, typer.Option(help="Shift size in standard deviations.")] = 1.0,
    categorical_shift_at: Annotated[
        int | None, typer.Option(help="Reverse a categorical feature's frequencies here.")
    ] = None,
    concept_change_at: Annotated[
        int | None, typer.Option(help="Change the true concept here (accuracy falls).")
    ] = None,
    label_delay: Annotated[float, typer.Option(help="Mean label delay, seconds.")] = 3600.0,
    label_fraction: Annotated[float, typer.Option(help="Share of predictions labelled.")] = 1.0,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, jsonl.gz, csv, csv.gz, parquet")
    ] = "jsonl",
) -> None:
    """Write a seeded example stream with known drift (for trying backtest and replay)."""
    from streams.synthetic import FORMATS, generate_stream, write_stream

    if fmt not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(FORMATS)}", param_hint="--format")
    try:
        predictions, labels = generate_stream(
            seed, events, model=model, features=features, shift_at=shift_at,
            shift_feature=shift_feature, shift_sigma=shift_sigma,
            categorical_shift_at=categorical_shift_at, concept_change_at=concept_change_at,
            label_delay_seconds=label_delay, label_fraction=label_fraction,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    written = write_stream(directory, predictions, labels, fmt)
    typer.echo(f"wrote {len(predictions)} predictions to {written[0]} and {len(labels)} labels "
               f"to {written[1]}")  # fmt: skip
