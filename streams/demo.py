"""`driftline demo` (`make demo`): the whole loop on a seeded example, in a few minutes.

1. Fresh topics (a per-run prefix) and a fresh MLflow store under ``.driftline/demo/``.
2. A worker and a retrainer start as real processes, exactly as in production.
3. Phase 1 is replayed: a fraud scorer whose true concept changes a third of the way in.
   Labels arrive five minutes (event time) after their predictions.
4. The worker raises a performance alert; the retrainer trains a challenger on the recent
   labelled data, registers it in MLflow, compares it with the champion on a holdout and
   promotes it; the worker switches its baseline to the new model's profile.
5. Phase 2 is the same traffic scored by the new champion (what the serving layer does after a
   promotion): no new drift, the old alert resolves.
6. A report with charts is written from the topics; everything started is stopped.

The demo lives in ``streams`` and must not import MLflow, so the composition root passes in
the function that rescores events with the promoted version (``retrainer.serving``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from schemas.events import Alert, LabelEvent, ModelEvent, PredictionEvent
from schemas.settings import Settings
from streams.demo_watch import TopicWatch, describe_model_event
from streams.processes import ManagedProcess, ProcessGroup, scrape_metrics, terminate_on_sigterm

__all__ = ["DemoOutcome", "DemoPlan", "Rescorer", "run_demo"]

Rescorer = Callable[[str, str, str, Sequence[PredictionEvent]], list[PredictionEvent]]
"""``(tracking_uri, model, version, events) -> events scored by that version``."""

MODEL = "fraud-scorer"
RUNS_KEPT = 3


@dataclass(frozen=True)
class DemoPlan:
    """The example stream: ``events`` predictions, the concept changes at ``change_at``,
    phase 2 (traffic scored by the new champion) starts at ``cut_at``."""

    seed: int = 11
    events: int = 9_000
    change_at: int = 3_000
    cut_at: int = 6_000
    label_delay_seconds: float = 300.0
    promotion_timeout_seconds: float = 240.0
    resolve_timeout_seconds: float = 60.0
    speed: float | None = 300.0
    """Event-time seconds replayed per wall-clock second (None: as fast as Kafka takes them);
    300 shows each phase in about 20 s, slow enough to watch the alerts come."""


@dataclass
class DemoOutcome:
    run_dir: Path
    report: Path | None = None
    alerts: list[Alert] = field(default_factory=list)
    model_events: list[ModelEvent] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _stream(plan: DemoPlan) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    from streams.synthetic import generate_stream

    predictions, labels = generate_stream(
        seed=plan.seed, n_events=plan.events, model=MODEL, features=6,
        concept_change_at=plan.change_at, label_delay_seconds=plan.label_delay_seconds,
        model_version="0",
    )  # fmt: skip
    return (
        [PredictionEvent.model_validate(p) for p in predictions],
        [LabelEvent.model_validate(label) for label in labels],
    )


def _new_run_dir(root: Path) -> Path:
    """``root/run-<stamp>``; older runs beyond the last few are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for old in sorted(root.glob("run-*"))[: -(RUNS_KEPT - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    run_dir = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir()
    return run_dir


def _replay(
    settings: Settings,
    events: Sequence[PredictionEvent | LabelEvent],
    what: str,
    out: Console,
    speed: float | None,
) -> None:
    from streams.replay import replay_events

    ordered = sorted(events, key=lambda event: event.timestamp)
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress("{task.description}", *columns, console=out, transient=True) as progress:
        task = progress.add_task(f"replaying {what}", total=len(ordered))
        result = replay_events(
            settings,
            ordered,
            speed=speed,
            batch_size=200,
            on_progress=lambda n: progress.advance(task, n),
        )
    if result.failed:
        raise RuntimeError(f"{result.failed} events of {what} were not delivered to Kafka")
    out.print(
        f"[dim]replayed {what}: {result.predictions:,} predictions and {result.labels:,} labels "
        f"in {result.seconds:.1f} s ({result.events_per_second:,.0f} events/s)[/dim]"
    )


def _wait_for_labels(worker: ManagedProcess, expected: int, timeout: float) -> bool:
    """Until the worker has read ``expected`` labels (its own counter)."""
    url = worker.banner.group(1)
    key = 'driftline_events_received_total{source="labels"}'
    deadline = time.monotonic() + timeout
    while scrape_metrics(url).get(key, 0.0) < expected:
        if time.monotonic() > deadline or not worker.alive():
            return False
        time.sleep(0.5)
    return True


def _still_firing(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts whose latest change on the topic is ``firing``."""
    latest = {alert.fingerprint: alert for alert in alerts}
    return [alert for alert in latest.values() if alert.status == "firing"]


def _all_resolved(watch: TopicWatch) -> bool:
    # Reading every label is not the end: the judge still merges the last sketches and
    # publishes on its next round, later on a loaded machine (a fixed 5 s sleep was not enough).
    return bool(watch.alerts) and not _still_firing(watch.alerts)


def _worker_progress(worker: ManagedProcess) -> str:
    """Where the worker's pipeline stands, from its /metrics: what a stalled demo reports."""
    try:
        samples = scrape_metrics(worker.banner.group(1))
    except OSError as exc:
        return f"its metrics did not answer ({exc})"

    def total(prefix: str) -> float:
        return sum(value for key, value in samples.items() if key.startswith(prefix))

    predictions = total('driftline_events_received_total{source="predictions"')
    labels = total('driftline_events_received_total{source="labels"')
    joined = total('driftline_label_join_total{outcome="hit"')
    return (
        f"the worker read {predictions:,.0f} predictions and {labels:,.0f} labels, joined "
        f"{joined:,.0f}, published {total('driftline_sketches_published_total'):,.0f} "
        f"sketches; its judge applied {total('driftline_judged_events'):,.0f} events and "
        f"published {total('driftline_alerts_emitted_total'):,.0f} alert changes; consumer lag "
        f"{total('driftline_consumer_lag_messages'):,.0f} messages{_performance(samples)}"
    )


def _performance(samples: dict[str, float]) -> str:
    """The judge's last performance statistics against their thresholds (none: no labelled
    window judged yet, or no baseline)."""
    found = []
    for key, value in samples.items():
        if key.startswith("driftline_statistic_value{") and 'kind="performance"' in key:
            detector = key.split('detector="')[1].split('"')[0]
            threshold = samples.get(key.replace("_value{", "_threshold{"), float("nan"))
            found.append(f"{detector} {value:.3g} (threshold {threshold:.3g})")
    return f"; performance: {', '.join(found) if found else 'not judged yet'}"


def _decided(watch: TopicWatch) -> bool:
    return any(event.type in ("promoted", "rejected") for event in watch.model_events)


def run_demo(
    *,
    rescore: Rescorer,
    plan: DemoPlan | None = None,
    console: Console | None = None,
    root: Path = Path(".driftline/demo"),
) -> DemoOutcome:
    """Run the loop; the outcome says what happened and what, if anything, went wrong."""
    plan = plan or DemoPlan()
    out = console or Console()
    started = time.monotonic()
    run_dir = _new_run_dir(root)
    outcome = DemoOutcome(run_dir=run_dir)
    base = Settings()
    prefix = f"{base.topics.prefix}demo-{run_dir.name.removeprefix('run-')}."
    tracking_uri = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
    settings = base.model_copy(
        update={
            "topics": base.topics.model_copy(update={"prefix": prefix}),
            "mlflow": base.mlflow.model_copy(update={"tracking_uri": tracking_uri}),
        }
    )
    from streams.topics import ensure_topics

    ensure_topics(settings)
    out.rule("[bold]driftline demo")
    out.print(f"Kafka {settings.kafka.bootstrap_servers}, topics {prefix}*, MLflow {tracking_uri}")
    env = {
        "DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "DRIFTLINE_TOPICS__PREFIX": prefix,
        "DRIFTLINE_MLFLOW__TRACKING_URI": tracking_uri,
        "DRIFTLINE_RETRAINER__POLL_SECONDS": "0.5",
    }
    predictions, labels = _stream(plan)
    cut = predictions[plan.cut_at].timestamp
    watch = TopicWatch(
        settings,
        on_alert=lambda alert: out.print(f"[bold red]alert[/] {_alert_line(alert)}"),
        on_model_event=lambda event: out.print(
            f"[bold green]model[/] {describe_model_event(event)}"
        ),
    )
    with terminate_on_sigterm(), ProcessGroup(env=env, log_dir=run_dir) as processes:
        try:
            worker = processes.worker("worker", run_dir / "worker", "--loglevel", "info")
            out.print(f"worker started (pid {worker.pid}, metrics {worker.banner.group(1)})")
            retrainer = processes.retrainer("retrainer")
            out.print(f"retrainer started (pid {retrainer.pid})")
            watch.start()
            out.rule("phase 1: the fraud pattern changes at event 3,000")
            _replay(
                settings,
                [*predictions[: plan.cut_at], *(e for e in labels if e.timestamp < cut)],
                "phase 1",
                out,
                plan.speed,
            )
            with out.status("waiting for the alert, the retrain and the promotion"):
                decided = watch.wait_for(_decided, plan.promotion_timeout_seconds)
            promoted = next((e for e in watch.model_events if e.type == "promoted"), None)
            if not decided or promoted is None or promoted.version is None:
                outcome.problems.append(
                    f"no promotion within {plan.promotion_timeout_seconds:.0f} s: "
                    f"{_worker_progress(worker)} (see {run_dir}/*.log)"
                )
            else:
                out.rule(f"phase 2: traffic scored by the new champion, version {promoted.version}")
                rescored = rescore(
                    tracking_uri, MODEL, promoted.version, predictions[plan.cut_at :]
                )
                _replay(
                    settings, [*rescored, *(e for e in labels if e.timestamp >= cut)],
                    "phase 2", out, plan.speed,
                )  # fmt: skip
                with out.status("waiting for the worker to judge the last windows"):
                    if not _wait_for_labels(worker, len(labels), timeout=120):
                        outcome.problems.append("the worker did not read every label in time")
                    elif not watch.wait_for(_all_resolved, plan.resolve_timeout_seconds):
                        outcome.problems.append(
                            f"the alert did not resolve within {plan.resolve_timeout_seconds:.0f}"
                            f" s of the worker reading every label: {_worker_progress(worker)}"
                        )
            if not worker.alive() or not retrainer.alive():
                outcome.problems.append(f"a process died (see {run_dir}/*.log)")
        finally:
            watch.stop()
    outcome.alerts, outcome.model_events = list(watch.alerts), list(watch.model_events)
    outcome.problems += _check(outcome, cut)
    outcome.report = _write_report(settings, run_dir, root, out)
    outcome.seconds = time.monotonic() - started
    _summary(outcome, out)
    return outcome


def _alert_line(alert: Alert) -> str:
    feature = f" {alert.feature}" if alert.feature else ""
    if alert.status == "resolved":
        return f"RESOLVED {alert.model} {alert.kind}{feature} {alert.detector}: {alert.summary}"
    return (
        f"{alert.status.upper():8} {alert.severity} {alert.model} {alert.kind}{feature} "
        f"{alert.detector}={alert.statistic:.3g} (threshold {alert.threshold:.3g}) "
        f"at event time {alert.fired_at:%Y-%m-%d %H:%M}"
    )


def _check(outcome: DemoOutcome, cut: datetime) -> list[str]:
    """What a run must show: an alert, a retrain, a promotion, and quiet after it."""
    problems = []
    firing = [a for a in outcome.alerts if a.status == "firing"]
    if not firing:
        problems.append("no alert fired")
    types = [event.type for event in outcome.model_events]
    if "registered" not in types:
        problems.append("no challenger was registered")
    if "promoted" not in types:
        problems.append("the challenger was not promoted")
    late = [a for a in firing if a.fired_at >= cut]
    if late:
        problems.append(f"{len(late)} alerts fired after the promotion")
    return problems


def _write_report(settings: Settings, run_dir: Path, root: Path, out: Console) -> Path | None:
    from streams.report_kafka import report_from_topics

    try:
        with out.status("writing the report from the topics"):
            summary = report_from_topics(settings, run_dir / "report.html", progress=False)
    except Exception as exc:  # the run itself succeeded; say why the report is missing
        out.print(f"[yellow]could not write the report: {exc}[/yellow]")
        return None
    latest = root / "report.html"
    shutil.copyfile(summary.path, latest)
    return latest.resolve()


def _summary(outcome: DemoOutcome, out: Console) -> None:
    out.rule("summary")
    firing = sum(a.status == "firing" for a in outcome.alerts)
    resolved = sum(a.status == "resolved" for a in outcome.alerts)
    out.print(f"alerts: {firing} fired, {resolved} resolved")
    for event in outcome.model_events:
        out.print(f"model: {describe_model_event(event)}")
    if outcome.report is not None:
        out.print(f"report: [bold]{outcome.report}[/bold] (open file://{outcome.report})")
    out.print(f"logs and MLflow store: {outcome.run_dir}")
    out.print(f"took {outcome.seconds:.0f} s")
    for problem in outcome.problems:
        out.print(f"[bold red]problem:[/bold red] {problem}")
    if outcome.ok:
        out.print(
            "[bold green]the loop closed: alert -> retrain -> promotion -> quiet[/bold green]"
        )
