"""deploy/kafka/kafka.sh: argument checks, pid-file safety, version pins, and a real start/stop.

The unit tests run the script against a private state directory and an unused port range, so
they never touch the broker other tests use on 127.0.0.1:9092.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"
POM = REPO / "deploy" / "kafka" / "pom.xml"
COMPOSE = REPO / "docker-compose.kafka.yml"


def _free_port_base() -> int:
    """A client port whose +2, +4 and +10000 neighbours are free too (for a private cluster)."""
    for base in range(29100, 29900, 10):
        ports = [base + offset for offset in (0, 2, 4)]
        ports += [port + 10000 for port in ports]
        if all(_port_free(port) for port in ports):
            return base
    raise RuntimeError("no free port range between 29100 and 29900")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def script_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DRIFTLINE_KAFKA_HOME=str(tmp_path / "kafka"),
        DRIFTLINE_KAFKA_PORT_BASE=str(_free_port_base()),
        DRIFTLINE_KAFKA_DOCKER="never",
    )
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def test_script_has_valid_bash_syntax() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_unknown_command_prints_usage(script_env: dict[str, str]) -> None:
    result = _run(script_env, "start")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_only_one_or_three_brokers_are_accepted(script_env: dict[str, str]) -> None:
    result = _run(script_env, "up", "2")
    assert result.returncode == 1
    assert "BROKERS must be 1 or 3" in result.stderr


def test_status_without_cluster_fails(script_env: dict[str, str]) -> None:
    result = _run(script_env, "status")
    assert result.returncode == 1
    assert "no node recorded" in result.stdout
    assert "nothing answers" in result.stdout


@pytest.fixture
def unrelated_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def test_down_never_kills_a_process_it_did_not_start(
    script_env: dict[str, str], unrelated_process: subprocess.Popen[bytes]
) -> None:
    # A pid file whose pid now belongs to another program (pid reuse after a crash).
    node = Path(script_env["DRIFTLINE_KAFKA_HOME"]) / "node-1"
    node.mkdir(parents=True)
    (node / "pid").write_text(f"{unrelated_process.pid}\n")

    result = _run(script_env, "down")

    assert result.returncode == 0, result.stderr
    assert "no Kafka process started by this script is running" in result.stdout
    assert unrelated_process.poll() is None, "kafka.sh down killed an unrelated process"
    assert not (node / "pid").exists(), "stale pid file left behind"


def test_compose_image_matches_pom_kafka_version() -> None:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=namespace)
    assert version and re.fullmatch(r"4\.\d+\.\d+", version), version
    compose = yaml.safe_load(COMPOSE.read_text())
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{version}"
    assert "127.0.0.1:9092:9092" in kafka["ports"]
    assert kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:9092"
    for extra in ("mlflow", "prometheus"):
        assert compose["services"][extra]["profiles"] == ["extras"]


@pytest.mark.kafka
def test_up_status_down_on_a_private_port(script_env: dict[str, str]) -> None:
    """A real broker on its own state dir and ports: started, seen by kcat, stopped for good."""
    home = Path(script_env["DRIFTLINE_KAFKA_HOME"])
    port = int(script_env["DRIFTLINE_KAFKA_PORT_BASE"])
    try:
        up = _run(script_env, "up", timeout=240)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"answer on 127.0.0.1:{port}" in up.stdout
        properties = (home / "node-1" / "server.properties").read_text()
        assert f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 10000}" in (
            properties
        )
        assert (home / "node-1" / "data" / "meta.properties").exists()
        pid = int((home / "node-1" / "pid").read_text())

        again = _run(script_env, "up")
        assert again.returncode == 0 and "nothing to start" in again.stdout

        status = _run(script_env, "status")
        assert status.returncode == 0 and f"running (pid {pid})" in status.stdout

        kcat = shutil.which("kcat")
        assert kcat, "kcat is missing: install the Debian package `kcat` (make tools)"
        listing = subprocess.run(
            [kcat, "-b", f"127.0.0.1:{port}", "-L", "-m", "10"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert f"broker 1 at 127.0.0.1:{port}" in listing.stdout, listing.stderr
    finally:
        down = _run(script_env, "down", "--purge", timeout=90)
    assert down.returncode == 0, down.stderr
    assert not Path(f"/proc/{pid}").exists(), "broker still running after down"
    assert _port_free(port)
    assert not (home / "node-1").exists()
