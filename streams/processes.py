"""driftline processes started by another process: the demo, tests and benchmarks.

Each one runs ``python -m <module>`` with its output in a log file and counts as started once
its banner line appears. `ProcessGroup` stops every process it started, by its own pid
(SIGTERM, then SIGKILL), also when the caller fails or is interrupted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = [
    "RETRAINER_BANNER",
    "WORKER_BANNER",
    "ManagedProcess",
    "ProcessGroup",
    "ProcessStartError",
    "scrape_metrics",
    "stop_process",
    "terminate_on_sigterm",
]

WORKER_BANNER = r"metrics=(http://\S+/metrics)"
RETRAINER_BANNER = r"driftline retrainer: group=(\S+)"


class ProcessStartError(RuntimeError):
    """A process exited or stayed silent before printing its banner."""


class ManagedProcess:
    """One ``python -m`` subprocess; started once ``banner`` (a regex) shows in its log."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        banner: str,
        cwd: Path | None = None,
        start_timeout: float = 90.0,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + start_timeout
        while not (found := re.search(banner, self.log())):
            if self.process.poll() is not None:
                self._log.close()
                raise ProcessStartError(
                    f"{name} exited with code {self.process.returncode} before it started; "
                    f"its log ({log_path}) ends with:\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessStartError(
                    f"{name} printed no banner in {start_timeout:.0f} s; its log ({log_path}) "
                    f"ends with:\n{self.log()[-3000:]}"
                )
            time.sleep(0.2)
        self.banner = found

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, characters: int = 4000) -> str:
        return self.log()[-characters:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        code = stop_process(self.process, timeout)
        self._log.close()
        return code


class ProcessGroup:
    """Starts processes and stops all of them (newest first) when the block ends."""

    def __init__(self, *, env: Mapping[str, str], log_dir: Path, cwd: Path | None = None) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.cwd = cwd
        self.started: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        banner: str,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 90.0,
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        restarts = sum(1 for process in self.started if process.name == name)
        if restarts:  # a restarted process keeps the log of the one it replaces
            log_path = self.log_dir / f"{name}.{restarts + 1}.log"
        process = ManagedProcess(
            name,
            args,
            env={**self.env, **(env or {})},
            log_path=log_path,
            banner=banner,
            cwd=self.cwd,
            start_timeout=start_timeout,
        )
        self.started.append(process)
        return process

    def worker(self, name: str, datadir: Path, *options: str, **env: str) -> ManagedProcess:
        """``driftline worker`` with metrics on a free port (its URL is ``banner.group(1)``);
        ``options``: more command-line options of ``python -m streams.worker``."""
        args = ["-m", "streams.worker", "--datadir", str(datadir), "--loglevel", "warning",
                *options]  # fmt: skip
        return self.start(
            name, args, banner=WORKER_BANNER, env={"DRIFTLINE_METRICS__PORT": "0", **env}
        )

    def retrainer(self, name: str = "retrainer", **env: str) -> ManagedProcess:
        args = ["-m", "retrainer", "--loglevel", "info"]
        return self.start(name, args, banner=RETRAINER_BANNER, env=env)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_all()


def stop_process(process: subprocess.Popen[Any], timeout: float = 30.0) -> int | None:
    """SIGTERM to this process's own pid, then SIGKILL after ``timeout``; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop what was started."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def scrape_metrics(url: str, timeout: float = 5.0) -> dict[str, float]:
    """A Prometheus text page as ``{'name{labels}': value}``."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        lines = response.read().decode().splitlines()
    samples: dict[str, float] = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
