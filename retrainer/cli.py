"""``driftline retrainer`` and ``driftline models list|show|promote|rollback``.

Registered explicitly by ``streams.cli.register_commands``; ``python -m retrainer`` runs the
service alone. Heavy modules (mlflow, sklearn) are imported inside the commands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from retrainer.config import RetrainerConfig
    from retrainer.registry import Registry
    from schemas.settings import Settings

__all__ = ["main", "models_app", "retrainer_command"]

LOG_LEVELS = ("debug", "info", "warning", "error")
models_app = typer.Typer(
    help="Registered models in MLflow: aliases champion, challenger, previous_champion.",
    no_args_is_help=True,
)


def _settings() -> tuple[Settings, RetrainerConfig]:
    from retrainer.config import RetrainerConfig
    from retrainer.errors import ConfigError
    from schemas.settings import Settings, SettingsError

    try:
        return Settings(), RetrainerConfig()
    except (SettingsError, ConfigError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def retrainer_command(
    loglevel: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Consume alerts, retrain, register in MLflow, promote when better, announce the model."""
    from retrainer.errors import TrainerLoadError
    from retrainer.service import run_retrainer

    if loglevel not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}", param_hint="--loglevel")
    settings, config = _settings()
    try:
        run_retrainer(settings, config, loglevel=loglevel)
    except TrainerLoadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _registry(settings: Settings, config: RetrainerConfig) -> Registry:
    from retrainer.registry import Registry
    from retrainer.retry import quiet_mlflow_http_retries

    quiet_mlflow_http_retries()
    return Registry.from_config(settings.mlflow.tracking_uri, config)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Every registered model with its aliases."""
    from retrainer.errors import RetrainerError

    settings, config = _settings()
    try:
        found = _registry(settings, config).models()
    except RetrainerError as exc:
        raise _fail(exc) from exc
    if as_json:
        _echo([{"model": name, "aliases": aliases, "versions": n} for name, aliases, n in found])
        return
    for name, aliases, count in found:
        held = ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())) or "-"
        typer.echo(f"{name}  versions={count}  {held}")


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """The versions of one model: aliases, trigger alert, window, metrics, decision."""
    from retrainer.errors import RetrainerError

    settings, config = _settings()
    try:
        versions = _registry(settings, config).versions(model)
    except RetrainerError as exc:
        raise _fail(exc) from exc
    if not versions:
        raise _fail(ValueError(f"no model {model!r} in {settings.mlflow.tracking_uri}"))
    if as_json:
        _echo(
            [
                {
                    "version": v.version,
                    "aliases": list(v.aliases),
                    "run_id": v.run_id,
                    "created_at": v.created_at.isoformat() if v.created_at else None,
                    "tags": v.tags,
                }
                for v in versions
            ]
        )
        return
    for v in versions:
        tags = v.tags
        aliases = ",".join(v.aliases) or "-"
        metric = tags.get("metric", "")
        typer.echo(
            f"v{v.version}  [{aliases}]  alert={tags.get('trigger_alert_id', '-')}  "
            f"window={tags.get('window_start', '?')}..{tags.get('window_end', '?')}  "
            f"{metric}: challenger={tags.get(f'challenger_{metric}', '?')} "
            f"champion={tags.get(f'champion_{metric}', '?')}  decision={tags.get('decision', '-')}"
        )


def _publisher(settings: Settings, publish: bool) -> Any:
    if not publish:
        return None
    from retrainer.publisher import ModelEventPublisher

    return ModelEventPublisher(settings)


@models_app.command("promote")
def models_promote(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make the champion.")],
    reason: Annotated[str | None, typer.Option(help="Put in the ModelEvent.")] = None,
    publish: Annotated[bool, typer.Option(help="Announce it on the models topic.")] = True,
) -> None:
    """Make VERSION the champion; the old champion becomes previous_champion."""
    from retrainer.actions import promote_version
    from retrainer.errors import RetrainerError

    settings, config = _settings()
    try:
        event = promote_version(
            _registry(settings, config), _publisher(settings, publish), model, version,
            now=datetime.now(UTC), reason=reason,
        )  # fmt: skip
    except RetrainerError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{model}: champion is version {event.version}")


@models_app.command("rollback")
def models_rollback(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    publish: Annotated[bool, typer.Option(help="Announce it on the models topic.")] = True,
) -> None:
    """Move champion back to previous_champion."""
    from retrainer.actions import rollback_model
    from retrainer.errors import RetrainerError

    settings, config = _settings()
    try:
        events = rollback_model(
            _registry(settings, config), _publisher(settings, publish), model,
            now=datetime.now(UTC),
        )  # fmt: skip
    except RetrainerError as exc:
        raise _fail(exc) from exc
    demoted, restored = events[0].version, events[1].version
    typer.echo(f"{model}: champion is version {restored} again (was {demoted})")


def main() -> None:
    """``python -m retrainer``: run the service."""
    typer.run(retrainer_command)
