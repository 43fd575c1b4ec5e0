"""The `driftline` command line. Commands import their heavy modules lazily so --help is quick."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "main"]

app = typer.Typer(
    name="driftline",
    help="Monitor ML models through Kafka: drift and quality alerts, retraining, replay, backtest.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="The v1 event contract.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")

console = Console()
err_console = Console(stderr=True)


@app.command()
def version() -> None:
    """Print driftline's version and the wire contract version."""
    from importlib.metadata import version as package_version

    console.print(f"driftline {package_version('driftline')} (events schema v1)")


@topics_app.command("create")
def topics_create() -> None:
    """Create driftline's topics (idempotent), from DRIFTLINE_TOPICS__* settings."""
    from schemas.settings import Settings
    from streams.topics import TopicsError, ensure_topics

    settings = Settings()
    try:
        outcome = ensure_topics(settings)
    except TopicsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table("topic", "state")
    for name, state in sorted(outcome.items()):
        table.add_row(name, state)
    console.print(table)


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Folder to write *.schema.json into.")],
) -> None:
    """Write one JSON Schema file per v1 event."""
    from schemas.export import export_json_schemas

    for path in export_json_schemas(directory):
        console.print(str(path))


@app.command()
def produce(
    event: Annotated[
        str | None, typer.Argument(help="Event JSON; read from stdin when omitted.")
    ] = None,
    kind: Annotated[str, typer.Option(help="prediction or label")] = "prediction",
) -> None:
    """Validate one event and publish it to its topic."""
    from schemas.events import InvalidEvent, LabelEvent, PredictionEvent
    from schemas.settings import Settings
    from streams.producer import LabelProducer, PredictionProducer

    raw = event if event is not None else sys.stdin.read()
    try:
        if kind == "prediction":
            prediction = PredictionEvent.model_validate_json(raw)
        elif kind == "label":
            label = LabelEvent.model_validate_json(raw)
        else:
            raise typer.BadParameter("must be 'prediction' or 'label'", param_hint="--kind")
    except (ValueError, InvalidEvent) as exc:
        err_console.print(f"[red]invalid {kind} event:[/red] {exc}")
        raise typer.Exit(2) from exc
    settings = Settings()
    producer: PredictionProducer | LabelProducer
    if kind == "prediction":
        producer = PredictionProducer(settings, delivery_timeout_seconds=15)
        producer.send(prediction)
        key = prediction.event_id
    else:
        producer = LabelProducer(settings, delivery_timeout_seconds=15)
        producer.send(label)
        key = label.event_id
    producer.close(timeout_seconds=20)
    if producer.stats.delivered != 1:
        err_console.print(
            f"[red]not delivered[/red] to {producer.topic} (see broker at "
            f"{settings.kafka.bootstrap_servers})"
        )
        raise typer.Exit(1)
    console.print(json.dumps({"topic": producer.topic, "key": key, "delivered": True}))


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the example stream.")] = 11,
    speed: Annotated[
        str, typer.Option(help="Replay pace: 'max' or event-time seconds per second.")
    ] = "300",
) -> None:
    """Run the whole loop on a seeded example: alert, retrain, promotion, report (make demo).

    Starts a worker and a retrainer against the configured Kafka; logs, the MLflow store and
    the report go to .driftline/demo/."""
    from retrainer.serving import rescore_with_version
    from streams.demo import DemoPlan, run_demo
    from streams.replay import parse_speed

    try:
        pace = parse_speed(speed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--speed") from exc
    plan = DemoPlan(seed=seed, speed=pace)
    outcome = run_demo(rescore=rescore_with_version, plan=plan, console=console)
    if not outcome.ok:
        raise typer.Exit(1)


alerts_app = typer.Typer(help="Alerts on driftline.alerts.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


def register_commands() -> None:
    """Commands that live in their own modules, registered explicitly (no import side effects).

    Their modules import heavy dependencies lazily inside the command bodies, so this is cheap.
    """
    from retrainer.cli import models_app, retrainer_command
    from streams.cli_alertmanager import alertmanager_bridge_command
    from streams.cli_backtest import backtest_command, generate_command
    from streams.cli_live import alerts_tail_command, replay_command, worker_command
    from streams.cli_report import report_command

    app.command("backtest")(backtest_command)
    app.command("report")(report_command)
    app.command("generate")(generate_command)

    app.command("worker")(worker_command)
    app.command("replay")(replay_command)
    alerts_app.command("tail")(alerts_tail_command)

    app.command("retrainer")(retrainer_command)
    app.add_typer(models_app, name="models")
    app.command("alertmanager-bridge")(alertmanager_bridge_command)


def main() -> None:
    register_commands()
    app()
