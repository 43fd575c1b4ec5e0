"""`driftline alertmanager-bridge` (registered by streams.cli); heavy imports stay inside."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["alertmanager_bridge_command"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def alertmanager_bridge_command(
    url: Annotated[str, typer.Option(help="Alertmanager base URL, e.g. http://127.0.0.1:9093.")],
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group. Default: <topic prefix>alertmanager-bridge."),
    ] = None,
    resend_seconds: Annotated[
        float, typer.Option(help="Re-post firing alerts this often; they expire after 4x.")
    ] = 60.0,
    from_beginning: Annotated[
        bool,
        typer.Option(
            help="A group without committed offsets starts at the oldest alert (or at new ones)."
        ),
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.")] = 10.0,
    generator_url: Annotated[
        str | None, typer.Option(help="Link shown as each alert's source (e.g. a dashboard).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Forward firing and resolved alerts from driftline.alerts to Alertmanager (API v2)."""
    from schemas.settings import Settings, SettingsError
    from streams.alertmanager_bridge import BridgeConfig, run_bridge
    from streams.alertmanager_client import BridgeError, alerts_endpoint

    try:
        alerts_endpoint(url)
    except BridgeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from exc
    if resend_seconds <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--resend-seconds")
    if timeout <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--timeout")
    if loglevel not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}", param_hint="--loglevel")
    if group is not None and not group.strip():
        raise typer.BadParameter("must not be empty", param_hint="--group")
    try:
        settings = Settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    config = BridgeConfig(
        url=url,
        group=group,
        resend_seconds=resend_seconds,
        from_beginning=from_beginning,
        timeout_seconds=timeout,
        generator_url=generator_url,
    )
    try:
        run_bridge(settings, config, loglevel=loglevel)
    except BridgeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
