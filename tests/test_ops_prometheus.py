"""deploy/prometheus and deploy/grafana against the real tools: promtool checks and unit tests,
metric names against a live worker's /metrics, and a real Prometheus server scraping a worker
with the driftline rules loaded."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from kafka_helpers import wait_for

if TYPE_CHECKING:
    from schemas.settings import Settings
    from streams.processes import ManagedProcess, ProcessGroup

pytestmark = [pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "driftline.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "driftline.rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "driftline.json"
JOB = "driftline-worker"
METRIC_NAME = re.compile(r"\bdriftline_\w+")
N_PREDICTIONS = 3_500
N_LABELS = 1_500
N_INVALID = 2


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: run `make tools` (Debian package `prometheus`); the "
            f"deploy/prometheus tests never skip",
            pytrace=False,
        )
    return path


def _run(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in _panels(dashboard) for t in panel["targets"]]
    variables = dashboard["templating"]["list"]
    return exprs + [v["definition"] for v in variables if v["type"] == "query"]


# -- promtool ----------------------------------------------------------------------------------


def test_promtool_accepts_the_scrape_config_and_the_rules() -> None:
    promtool = _tool("promtool")
    checked = _run([promtool, "check", "config", str(CONFIG)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout, checked.stdout
    checked = _run([promtool, "check", "rules", str(RULES)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(_rules())} rules found" in checked.stdout, checked.stdout
    jobs = [job["job_name"] for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]]
    assert jobs == [JOB]


def test_every_rule_has_for_severity_annotations_and_a_runbook_anchor() -> None:
    for rule in _rules():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"


def test_promtool_unit_tests_fire_every_rule_and_none_on_a_healthy_worker() -> None:
    promtool = _tool("promtool")
    result = _run([promtool, "test", "rules", str(RULE_TESTS)], timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
    # Coverage of the test file itself: each rule fires somewhere, and the healthy group
    # checks every rule stays silent.
    names = {rule["alert"] for rule in _rules()}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == names
    healthy = [test for test in tests if "healthy" in test["name"]]
    assert len(healthy) == 1
    silent = {case["alertname"] for case in healthy[0]["alert_rule_test"]}
    assert silent == names
    assert all(not case["exp_alerts"] for case in healthy[0]["alert_rule_test"])


# -- the Grafana dashboard ---------------------------------------------------------------------


def test_dashboard_is_a_grafana_model_with_datasource_and_model_variables() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36  # Grafana 10 models are 37-39
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query"
    assert re.fullmatch(r"label_values\(driftline_\w+\{.*\}, model\)", model["definition"])
    assert model["datasource"]["uid"] == "${datasource}"
    panels = _panels(dashboard)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    # Every metric the issue asks for is on some panel.
    joined = " ".join(_dashboard_exprs(dashboard))
    for metric in (
        "driftline_events_received_total",
        "driftline_invalid_events_total",
        "driftline_label_join_total",
        "driftline_label_latency_seconds_bucket",
        "driftline_statistic_value",
        "driftline_statistic_threshold",
        "driftline_alert_firing",
        "driftline_processing_latency_seconds_bucket",
        "driftline_decision_latency_seconds_bucket",
        "driftline_consumer_lag_messages",
    ):
        assert metric in joined, metric
    model_panels = [p for p in panels if "$model" in json.dumps(p["targets"])]
    assert any(p.get("repeat") == "model" for p in model_panels)


# -- a live worker -----------------------------------------------------------------------------


def _traffic() -> list[Any]:
    """Stationary predictions (past the 2000-event warm-up, so statistics are exported) and
    labels for some of them, in event-time order."""
    from schemas.events import LabelEvent, PredictionEvent

    rng = np.random.default_rng(3)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    x = rng.normal(0.0, 1.0, N_PREDICTIONS)
    events: list[Any] = [
        PredictionEvent(
            event_id=f"p-{i}",
            model="churn",
            timestamp=start + timedelta(seconds=i),
            features={"x": float(x[i]), "plan": str(rng.choice(["free", "pro"]))},
            prediction=float(x[i] > 0),
        )
        for i in range(N_PREDICTIONS)
    ]
    labelled = np.sort(rng.choice(N_PREDICTIONS, N_LABELS, replace=False))
    events += [
        LabelEvent(
            event_id=f"p-{i}",
            model="churn",
            timestamp=start + timedelta(seconds=int(i) + 30),
            label=bool(rng.random() < 0.5),
        )
        for i in labelled
    ]
    return sorted(events, key=lambda event: event.timestamp)


@pytest.fixture
def settings(kafka_env: dict[str, str]) -> Settings:
    from schemas.settings import Settings

    return Settings()


@pytest.fixture
def busy_worker(
    driftline_processes: ProcessGroup, settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> ManagedProcess:
    """A worker that consumed predictions, labels and invalid messages and judged windows."""
    from confluent_kafka import Producer

    from streams.processes import scrape_metrics
    from streams.replay import replay_events

    worker = driftline_processes.worker("w1", tmp_path / "data-w1")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for index in range(N_INVALID):
        producer.produce(settings.topics.predictions, key=f"bad-{index}", value=b"{not json")
    producer.flush(10)
    result = replay_events(settings, _traffic(), batch_size=200)
    assert result.failed == 0
    url = worker.banner.group(1)

    def judged() -> bool:
        samples = scrape_metrics(url)
        counted = samples.get('driftline_events_received_total{source="predictions"}')
        stats = [k for k in samples if k.startswith("driftline_statistic_value{")]
        return counted == N_PREDICTIONS and bool(stats)

    assert wait_for(judged, timeout=60), worker.log_tail()
    return worker


def _exposed_names(url: str) -> set[str]:
    """Sample names a scrape can return: from the ``# TYPE`` lines (families that have no
    child yet included) and from the samples themselves."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            else:  # counters' TYPE lines already carry `_total`
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.kafka
def test_rules_and_dashboard_use_only_metrics_a_live_worker_exposes(
    busy_worker: ManagedProcess,
) -> None:
    from streams.processes import scrape_metrics

    exposed = _exposed_names(busy_worker.banner.group(1))
    assert "driftline_events_received_total" in exposed
    assert "driftline_label_latency_seconds_bucket" in exposed
    samples = scrape_metrics(busy_worker.banner.group(1))
    assert samples["driftline_label_latency_seconds_count"] > 0  # joined labels are timed
    assert samples["driftline_decision_latency_seconds_count"] > 0  # so are window verdicts
    rule_names = {n for rule in _rules() for n in METRIC_NAME.findall(rule["expr"])}
    dashboard_names = {n for e in _dashboard_exprs(_dashboard()) for n in METRIC_NAME.findall(e)}
    assert len(rule_names) >= 8 and len(dashboard_names) >= 12, (rule_names, dashboard_names)
    assert rule_names - exposed == set(), sorted(exposed)
    assert dashboard_names - exposed == set(), sorted(exposed)


# -- a real Prometheus server ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.base_url}{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[str], PrometheusServer]]:
    """Starts ``prometheus`` on deploy/prometheus/prometheus.yml with the worker as the only
    target, scraping and evaluating every second; stopped by pid when the test ends."""
    binary = _tool("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> PrometheusServer:
        config = yaml.safe_load(CONFIG.read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config.pop("alerting", None)  # no Alertmanager here
        config["rule_files"] = [str(PROMETHEUS_DIR / path) for path in config["rule_files"]]
        (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
        job["static_configs"] = [{"targets": [target]}]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = _free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={path}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        started.append(process)
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)

        def ready() -> bool:
            assert process.poll() is None, f"prometheus exited:\n{server.log_tail()}"
            try:
                with urllib.request.urlopen(f"{server.base_url}/-/ready", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        assert wait_for(ready, timeout=30, interval=0.2), server.log_tail()
        return server

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(series["value"][1]) for series in result]


@pytest.mark.kafka
def test_a_real_prometheus_scrapes_the_worker_and_loads_the_rules(
    busy_worker: ManagedProcess, start_prometheus: Callable[[str], PrometheusServer]
) -> None:
    target = urllib.parse.urlsplit(busy_worker.banner.group(1)).netloc
    server = start_prometheus(target)

    def scraped() -> bool:
        got = server.query(f'driftline_events_received_total{{job="{JOB}",source="predictions"}}')
        return _values(got) == [N_PREDICTIONS]

    assert wait_for(scraped, timeout=30), server.log_tail()
    (up,) = server.query(f'up{{job="{JOB}"}} == 1')
    assert up["metric"]["instance"] == target
    assert _values(server.query(f'sum(driftline_invalid_events_total{{job="{JOB}"}})')) == [
        N_INVALID
    ]
    hits = server.query(f'driftline_label_join_total{{job="{JOB}",outcome="hit"}}')
    assert 0 < sum(_values(hits)) <= N_LABELS
    statistics = server.query(f'driftline_statistic_value{{job="{JOB}",model="churn"}}')
    assert {s["metric"]["kind"] for s in statistics} >= {"feature_drift"}, statistics

    rule_names = {rule["alert"] for rule in _rules()}

    def evaluated() -> bool:
        groups = server.api("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return {r["name"] for r in rules} == rule_names and all(r["health"] == "ok" for r in rules)

    assert wait_for(evaluated, timeout=30), server.api("/api/v1/rules")
    groups = server.api("/api/v1/rules")["groups"]
    assert {g["name"] for g in groups} == {"driftline-pipeline", "driftline-monitor"}
    assert all(g["file"] == str(RULES) for g in groups)

    # A healthy worker on a stationary stream: nothing pending, nothing firing. (The very
    # first evaluation may run before the first scrape, leaving DriftlineWorkersAbsent
    # pending for one evaluation.)
    def alerts() -> list[Any]:
        found: list[Any] = server.api("/api/v1/alerts")["alerts"]
        return found

    assert wait_for(lambda: not alerts(), timeout=10), alerts()
    time.sleep(3)  # a few more evaluations
    assert alerts() == []

    # Every dashboard query is valid PromQL on this server; the core panels have data.
    for expr in _dashboard_exprs(_dashboard()):
        promql = (
            expr.replace("$__rate_interval", "1m")
            .replace("$model", ".*")
            .replace("$instance", ".*")
        )
        if promql.startswith("label_values("):
            selector = promql.removeprefix("label_values(").rsplit(",", 1)[0]
            label = promql.rsplit(",", 1)[1].strip(" )")
            assert {s["metric"][label] for s in server.query(selector)}, expr
        else:
            result = server.query(promql)
            if "driftline_events_received_total" in expr or "driftline_statistic" in expr:
                assert result, expr
