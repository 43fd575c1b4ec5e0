"""The live pipeline against naive Faust and Quix Streams consumers: same run, same broker.

    .venv/bin/python bench/worker_throughput.py [--events 100000] [--memory-minutes 2]
        [--rate N] [--only a,b,c,d,e,m,s] [--profile out.prof] [--worker-args "..."]
        [--chart run.html] [--monitor-config monitor.yaml]  (needs Kafka)

1. Throughput per process (one process each, 3 partitions, a pre-filled backlog of
   ``--events`` predictions of one model with 10 features), from the first message consumed
   until all are processed:
   a. ``python -m streams.worker`` (rocksdb), one prediction per message. Its clock starts at
      the worker's "input flowing: first message taken" log line (as the baselines' clocks
      start at their first message; before the 28th session it started at "Ready", which
      also counted the first fetch) and stops at the first
      /metrics scrape showing every prediction counted and ``sketches_published`` final; it is
      done once its group committed the predictions and sketches topics to their ends. The
      "judge" time runs until the last judge batch (every delta applied).
   b. the same with SDK batch envelopes (``send_batch``, 500 per envelope);
   m. (row a-many) row a with the backlog spread round-robin over ``--models`` (20) models:
      the maximum rate of the sustained run's workload (per-model cost is per delta);
   c. a naive Faust agent and d. a naive Quix Streams app: per event, parse + one sketch
      update per feature + KS per numeric feature every 500 events (bench/live/naive_logic.py);
   e. Faust and Quix apps that only count messages (reference ceilings), and a Faust agent
      that counts its channel queue without Faust's Stream (e-drain: the ceiling of an ingest
      fed by Faust's consumer as Faust ships it; the worker replaces its per-message
      delivery, `streams.faust_delivery`, and so can pass it).
   The baselines time themselves (first message -> last processed) and read the backlog of a.
   A row still running after ``--row-timeout`` seconds reports its rate so far ("partial").
2+3. One sustained paced run (``--memory-minutes``, default 2) at ``--rate`` (default half of
   a-many's rate, else half of a's): up to ``--models`` (20) models, fewer if the run is too
   short for each to get 4,500 events (warm-up, shift, decision); each shifts one feature at a
   staggered point. Event timestamps are the wall clock at produce time. Alert latency =
   alert's Kafka timestamp - ``fired_at``; the worker's VmRSS is sampled every
   ``--rss-interval`` seconds (``--chart``: RSS and CPU over the run, as an HTML page).
   Memory is flat when RSS grows less than 1 MiB/min; a run of 20 minutes or more is judged
   on its last 10, after the worker's RocksDB cache (128 MiB) has filled.
Rates also per CPU-second of the measured process (the machine may be shared). Goals are
reported, never asserted. Quix runs in ``.venv-bench`` (``make bench-venv``)
or the interpreter given with ``--baseline-python``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from live.backlog import fill_backlog
from live.charts import sustained_page
from live.phases import (
    EVENTS_PER_MODEL,
    REPO,
    SustainedResult,
    Throughput,
    baseline_throughput,
    settings_for,
    start_worker,
    sustained_run,
    worker_throughput,
)
from live.procs import ProcessGroup
from live.profile_notes import broker_answers, print_profile
from rich.console import Console
from rich.table import Table

from streams.processes import terminate_on_sigterm
from streams.topics import delete_topics_with_prefix, ensure_topics

BASELINE_VENV = REPO / ".venv-bench"
ROWS = {
    "a": "our worker, 1 prediction/message (rocksdb)",
    "a-many": "our worker, 1 prediction/message, the models of run 2 (rocksdb)",
    "b": "our worker, SDK envelopes of 500 (rocksdb)",
    "c": "naive Faust agent (per-event parse + sketches + KS)",
    "d": "naive Quix Streams app (same per-event logic)",
    "e-faust": "Faust agent that only counts",
    "e-drain": "Faust agent that counts its channel queue (no Stream)",
    "e-quix": "Quix Streams app that only counts",
}


def baseline_python(explicit: str | None) -> tuple[Path | None, str]:
    if explicit:
        return Path(explicit), "--baseline-python"
    if (BASELINE_VENV / "bin" / "python").exists():
        return BASELINE_VENV / "bin" / "python", str(BASELINE_VENV)
    return None, "no baseline venv found (make bench-venv)"


def check_quix(python: Path) -> str | None:
    """None when quixstreams, schemas and detectors import in the baseline venv, else why not."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [str(python), str(REPO / "bench/live/quix_app.py"), "--check-imports"]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    return None if '"imports"' in done.stdout else (done.stdout + done.stderr)[-600:]


def note_load(result: Throughput | None) -> None:
    if result is not None:
        result.notes.append(f"load avg {os.getloadavg()[0]:.1f}")


def fmt_rate(result: Throughput | None) -> tuple[str, str]:
    if result is None:
        return "skipped", ""
    rate = f"{result.rate:,.0f} /s" + (" (partial)" if result.partial else "")
    per_cpu = f"{result.per_cpu:,.0f}" if result.per_cpu else "?"
    return rate, per_cpu


def goal_text(key: str, result: Throughput | None, rows: dict[str, Throughput | None]) -> str:
    naive = [r.rate for k, r in rows.items() if k in ("c", "d") and r is not None]
    if key == "a-many" and result is not None:
        return "the maximum rate of run 2's workload (its rate: half of this)"
    if result is None or key not in ("a", "b"):
        return {"c": "baseline", "d": "baseline", "e-faust": "issue: ~14k/s",
                "e-drain": "ceiling with Faust's own delivery",
                "e-quix": "issue: ~120k/s"}.get(key, "")  # fmt: skip
    parts = []
    if naive:
        times = result.rate / max(naive)
        parts.append(f">=2x faster naive ({2 * max(naive):,.0f}/s): "
                     f"{'met' if times >= 2 else 'NOT met'} ({times:.2f}x)")  # fmt: skip
    if key == "b":
        parts.append(f">=200,000/s: {'met' if result.rate >= 200_000 else 'NOT met'}")
    return "; ".join(parts)


def render(
    rows: dict[str, Throughput | None], sustained: SustainedResult | None, header: str
) -> None:
    table = Table(title="driftline live pipeline vs baselines (same run, same broker)")
    for column in ("#", "measurement", "result", "per CPU-s", "goal", "notes"):
        table.add_column(column, overflow="fold")
    for key, result in rows.items():
        rate, per_cpu = fmt_rate(result)
        notes = ""
        if result is not None:
            notes = f"{result.predictions:,} in {result.seconds:.1f} s"
            if result.judge_seconds is not None:
                notes += f"; incl. judge {result.predictions / result.judge_seconds:,.0f}/s"
            notes = "; ".join([notes, *result.notes])
        table.add_row(key, ROWS[key], rate, per_cpu, goal_text(key, result, rows), notes)
    if sustained is not None:
        s = sustained
        lat = np.array(s.latencies) * 1000
        if len(lat):
            p50, p99, top = np.percentile(lat, 50), np.percentile(lat, 99), lat.max()
            text = f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, max {top:,.0f} ms"
            goal = f"p99 <= 250 ms: {'met' if p99 <= 250 else 'NOT met'}"
        else:
            text, goal = "no firing alerts", "p99 <= 250 ms: no data"
        caught = f"{s.caught_up_seconds:.0f} s" if s.caught_up_seconds is not None else "NO"
        by_target = ", ".join(f"{target} {count}" for target, count in s.alert_targets.items())
        cores = s.cores(after=s.warmup_seconds)
        per_cpu, busy = (
            (f"{s.rate / cores:,.0f}", f"; the worker used {cores:.2f} cores after the warm-up")
            if cores else ("", "")
        )  # fmt: skip
        table.add_row(
            "2", f"alert latency, {s.models} models at {s.rate:,.0f} pred/s", text, per_cpu, goal,
            f"{s.alerts} firing alerts ({by_target}; {len(s.refired)} alert identities fired "
            f"more than once{': ' if s.refired else ''}{', '.join(s.refired)}; "
            f"{s.duplicated} published twice), "
            f"{s.models_alerted}/{s.models} models alerted on their "
            f"shifted feature; {s.sent:,} sent in {s.seconds:.0f} s; worker {s.behind_at_end:,} "
            f"events behind when sending stopped, caught up after {caught}{busy}",
        )  # fmt: skip
        p50_verdict, p99_verdict = s.decision_quantile(0.5), s.decision_quantile(0.99)
        if p50_verdict is not None and p99_verdict is not None:
            verdicts = int(s.decisions[-1][1])
            table.add_row(
                "2w", "window verdict latency, same run (every judged window)",
                f"p50 {p50_verdict * 1000:,.0f} ms, p99 {p99_verdict * 1000:,.0f} ms", "",
                f"p99 <= 250 ms: {'met' if p99_verdict <= 0.25 else 'NOT met'}",
                f"{verdicts:,} verdicts (the alerts are {s.alerts} of them): a steadier p99; "
                "from the worker's histogram, linear within its buckets",
            )  # fmt: skip
        mib = [m for _, m in s.rss]
        slope, late = s.slope(), s.slope(after=s.warmup_seconds)
        # Bounded caches (RocksDB memtables and block caches) fill for a while: the second
        # half shows whether growth levels off.
        second_half = s.slope(after=s.seconds / 2)
        # The shared RocksDB cache (128 MiB) takes ~15 min to fill at 10k pred/s: a run of 20+
        # minutes judges its last 10, once the cache is full.
        last_ten = s.slope(after=s.seconds - 600) if s.seconds >= 1200 else float("nan")
        if np.isnan(late):
            verdict = "no data (run ends within warm-up)"
        elif not np.isnan(last_ten):
            verdict = (
                f"{'yes' if abs(last_ten) < 1.0 else 'NO'} over the last 10 min "
                f"({last_ten:+.1f} MiB/min; {late:+.1f} after warm-up, cache filling)"
            )
        else:
            verdict = (
                f"{'yes' if abs(late) < 1.0 else 'NO'} ({late:+.1f} MiB/min after warm-up, "
                f"{second_half:+.1f} in the second half)"
            )
        table.add_row(
            "3", f"worker RSS over {s.seconds / 60:.1f} min at {s.rate:,.0f} pred/s",
            f"start {mib[0]:.0f} / max {max(mib):.0f} / end {mib[-1]:.0f} MiB, "
            f"slope {slope:+.1f} MiB/min", "", f"flat (|slope| < 1 MiB/min): {verdict}",
            f"{len(mib)} samples every {s.rss[1][0] - s.rss[0][0]:.0f} s; warm-up of all "
            f"models over at {s.warmup_seconds:.0f} s (first sample: idle worker)",
        )  # fmt: skip
        outside = [m for _, m in s.outside_cache()]
        if len(outside) >= 3:
            cache = [m for _, m in s.rocksdb_cache]
            late_outside = s.slope(after=s.warmup_seconds, outside_cache=True)
            half_outside = s.slope(after=s.seconds / 2, outside_cache=True)
            table.add_row(
                "3c", "same, RSS minus the RocksDB cache (bounded by its capacity)",
                f"start {outside[0]:.0f} / max {max(outside):.0f} / end {outside[-1]:.0f} MiB",
                "", f"{late_outside:+.1f} MiB/min after warm-up, {half_outside:+.1f} in the "
                "second half",
                f"cache {cache[0]:.0f} -> max {max(cache):.0f} -> end {cache[-1]:.0f} MiB "
                "(driftline_rocksdb_cache_bytes: memtables, index and filter blocks included)",
            )  # fmt: skip
        heap = [m for _, m in s.heap_outside_cache()]
        if len(heap) >= 3:
            files = [m for _, m in s.file_backed]
            table.add_row(
                "3h", "same, minus the pages of mapped files too (the heap no budget bounds)",
                f"start {heap[0]:.0f} / max {max(heap):.0f} / end {heap[-1]:.0f} MiB", "",
                f"{s.slope(after=s.warmup_seconds, heap_only=True):+.1f} MiB/min after "
                f"warm-up, {s.slope(after=s.seconds / 2, heap_only=True):+.1f} in the second "
                "half",
                f"mapped files (RssFile: libraries' code as first run) {files[0]:.0f} -> "
                f"{files[-1]:.0f} MiB",
            )  # fmt: skip
    console = Console(width=200)
    console.print(header)
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backlog size (predictions)")
    parser.add_argument("--bootstrap", default=os.environ.get(
        "DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"))  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=None, help="sustained rate; default m/2 (else a/2)"
    )
    parser.add_argument("--memory-minutes", type=float, default=2.0)
    parser.add_argument("--rss-interval", type=float, default=5.0)
    parser.add_argument("--models", type=int, default=20, help="at most, in the sustained run")
    parser.add_argument(
        "--row-timeout", type=float, default=60.0,
        help="measuring time cap per throughput row; a capped row reports a partial rate",
    )  # fmt: skip
    parser.add_argument(
        "--only", default="a,b,c,d,e,m,s",
        help="subset of a,b,c,d,e,m,s (m: row a with the sustained run's models)",
    )  # fmt: skip
    parser.add_argument("--baseline-python", default=None, help="python with quixstreams")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile row a's worker (b's with --only b)"
    )
    parser.add_argument("--keep", action="store_true", help="keep topics and logs")
    parser.add_argument(
        "--chart", type=Path, default=None,
        help="write the sustained run's worker RSS and CPU over time to this HTML file",
    )  # fmt: skip
    parser.add_argument(
        "--worker-args", default="", help='more worker options, e.g. "--judge-save-seconds 5"'
    )
    parser.add_argument(
        "--monitor-config", type=Path, default=None,
        help="monitor YAML for our workers in rows a, a-many and b (e.g. larger windows); "
             "the sustained run keeps the defaults its shifts are timed for",
    )  # fmt: skip
    args = parser.parse_args()
    if args.monitor_config is not None and not args.monitor_config.is_file():
        parser.error(f"--monitor-config {args.monitor_config}: no such file")
    worker_args = args.worker_args.split()
    only = set(args.only.split(","))
    if not broker_answers(args.bootstrap):
        print(f"no Kafka broker at {args.bootstrap}: run `make kafka-up`", file=sys.stderr)
        return 2
    run_id = f"wtb{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    quix_python, venv_note = baseline_python(args.baseline_python)
    rows: dict[str, Throughput | None] = {key: None for key in ROWS}
    sustained: SustainedResult | None = None
    load_before = os.getloadavg()
    started = time.monotonic()
    prefix_a, prefix_b, prefix_m = f"{run_id}.a.", f"{run_id}.b.", f"{run_id}.m."
    settings_a = settings_for(args.bootstrap, prefix_a)
    settings_b = settings_for(args.bootstrap, prefix_b)
    settings_m = settings_for(args.bootstrap, prefix_m)
    log = Console(stderr=True).log
    try:
        with terminate_on_sigterm(), ProcessGroup(workdir) as procs:
            fills = []
            if only & {"a", "c", "d", "e"}:
                ensure_topics(settings_a)
                fills.append(("single", fill_backlog(settings_a, args.events, per_message=1)))
            if "b" in only:
                ensure_topics(settings_b)
                fills.append(("batch", fill_backlog(settings_b, args.events, per_message=500)))
            if "m" in only:
                ensure_topics(settings_m)
                fill = fill_backlog(settings_m, args.events, per_message=1, models=args.models)
                fills.append((f"{args.models} models", fill))
            for kind, fill in fills:
                log(f"backlog {kind}: {fill.predictions:,} predictions in {fill.messages:,} "
                    f"messages, {fill.seconds:.1f} s, {fill.failed} failed")  # fmt: skip
            for letter, key, settings, prefix in (
                ("a", "a", settings_a, prefix_a),
                ("b", "b", settings_b, prefix_b),
                ("m", "a-many", settings_m, prefix_m),
            ):
                if letter not in only:
                    continue
                profile = args.profile if key == ("a" if "a" in only else "b") else None
                probe = start_worker(procs, f"worker-{key}", args.bootstrap, prefix,
                                     workdir / f"data-{key}", profile, worker_args,
                                     args.monitor_config)  # fmt: skip
                rows[key] = measured = worker_throughput(
                    probe, args.bootstrap, settings, args.events, args.row_timeout
                )
                probe.proc.stop()
                if profile is not None:
                    measured.notes.append("UNDER cProfile")
                note_load(rows[key])
                log(f"row {key}: {fmt_rate(rows[key])[0]}")
            baselines: list[tuple[str, list[str], dict[str, str]]] = []
            faust_app = str(REPO / "bench/live/naive_faust.py")
            quix_app = str(REPO / "bench/live/quix_app.py")
            for key, mode in (("c", "naive"), ("e-faust", "count"), ("e-drain", "drain")):
                if key[0] in only:
                    baselines.append((key, [sys.executable, faust_app, "--mode", mode], {}))
            quix_problem = check_quix(quix_python) if quix_python else venv_note
            if quix_problem:
                log(f"Quix rows skipped: {quix_problem}")
            for key, mode in (("d", "naive"), ("e-quix", "count")):
                if key[0] in only and quix_python and not quix_problem:
                    argv = [str(quix_python), quix_app, "--mode", mode]
                    baselines.append((key, argv, {"PYTHONPATH": str(REPO)}))
            for key, argv, extra_env in baselines:
                group = f"{prefix_a}bench-{key}"
                argv = [*argv, "--bootstrap", args.bootstrap, "--topic",
                        settings_a.topics.predictions, "--group", group,
                        "--events", str(args.events), "--datadir",
                        str(workdir / f"state-{key}")]  # fmt: skip
                env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
                proc = procs.start(f"baseline-{key}", argv, env=env, cwd=REPO)
                rows[key] = baseline_throughput(proc, args.events, args.row_timeout)
                proc.stop()
                note_load(rows[key])
                log(f"row {key}: {fmt_rate(rows[key])[0]}")
            if "s" in only:
                measured_max = rows["a-many"] or rows["a"]
                rate = args.rate or (measured_max.rate / 2 if measured_max else None)
                if rate is None:
                    raise SystemExit("the sustained run needs row m, row a or --rate")
                prefix_s = f"{run_id}.s."
                settings_s = settings_for(args.bootstrap, prefix_s)
                ensure_topics(settings_s)
                probe = start_worker(procs, "worker-s", args.bootstrap, prefix_s,
                                     workdir / "data-s", None, worker_args)  # fmt: skip
                seconds = args.memory_minutes * 60
                # Every model must get far enough to shift and be decided on.
                models = max(1, min(args.models, int(rate * seconds / EVENTS_PER_MODEL)))
                log(f"sustained run: {rate:,.0f} pred/s for {args.memory_minutes} min, "
                    f"{models} models")  # fmt: skip
                sustained = sustained_run(
                    probe, args.bootstrap, settings_s, rate=rate, seconds=seconds,
                    models=models, rss_interval=args.rss_interval,
                )  # fmt: skip
                probe.proc.stop()
    finally:
        if not args.keep:
            prefix = f"{run_id}."
            deleted = delete_topics_with_prefix(settings_for(args.bootstrap, prefix).kafka, prefix)
            log(f"deleted {deleted} topics of run {run_id}")
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    header = (
        f"run {run_id}: {args.events:,} predictions backlog, 3 partitions, broker "
        f"{args.bootstrap}; {os.cpu_count()} CPUs, load avg {load_before[0]:.1f} before / "
        f"{load_after[0]:.1f} after; {time.monotonic() - started:.0f} s total; Quix python "
        f"{venv_note}"
        + (f"; logs in {workdir}" if args.keep else "")
        + (f"; our workers' monitor config {args.monitor_config}" if args.monitor_config else "")
    )
    render(rows, sustained, header)
    if args.chart is not None and sustained is not None and sustained.rss:
        args.chart.write_text(sustained_page(sustained, f"sustained run {run_id}: "
                                             f"{sustained.rate:,.0f} pred/s, "
                                             f"{sustained.models} models"))  # fmt: skip
        log(f"charts of the sustained run: {args.chart}")
    if args.profile is not None and args.profile.exists():
        print_profile(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
