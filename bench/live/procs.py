"""Subprocesses the benchmark starts, and what it reads from them (stdout, /proc).

Every process goes through :class:`ProcessGroup`, which stops each one by its own pid (SIGTERM,
then SIGKILL: ``streams.processes.stop_process``) when the benchmark ends, fails or is
interrupted. Unlike ``streams.processes.ManagedProcess``, a ``Proc`` timestamps each output line
as it arrives (the benchmark's clocks start and stop on log lines). /metrics is read with
``streams.processes.scrape_metrics``, SIGTERM handled with ``terminate_on_sigterm``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from streams.malloc_trim import status_kib
from streams.processes import stop_process

__all__ = [
    "Proc",
    "ProcessGroup",
    "cpu_seconds",
    "log_time",
    "rss_mib",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LOG_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


class Proc:
    """One subprocess; a thread copies its output to a log file and keeps timed lines."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._log = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"read-{name}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            arrived = time.time()
            with self._lock:
                self.lines.append((arrived, line.rstrip("\n")))
            self._log.write(line)
            self._log.flush()

    def alive(self) -> bool:
        return self.process.poll() is None

    def find(self, pattern: str | re.Pattern[str]) -> tuple[float, re.Match[str]] | None:
        """The first output line matching ``pattern``: (arrival wall time, match)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self._lock:
            snapshot = list(self.lines)
        for arrived, line in snapshot:
            found = regex.search(line)
            if found:
                return arrived, found
        return None

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match[str]]:
        """Block until a line matches; raises with the log tail if the process dies or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(pattern)
            if found is not None:
                return found
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}):\n{self.tail()}"
                )
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no line matching {pattern!r} in {timeout:.0f} s:\n"
                           f"{self.tail()}")  # fmt: skip

    def json_lines(self, event: str) -> list[dict[str, Any]]:
        """Lines the baseline apps print: JSON objects with an ``event`` field."""
        found: list[dict[str, Any]] = []
        with self._lock:
            snapshot = [line for _, line in self.lines]
        for line in snapshot:
            start = line.find('{"event"')  # Faust may prefix terminal escape codes
            if start >= 0 and f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    record = json.loads(line[start:])
                    if record.get("event") == event:
                        found.append(record)
        return found

    def tail(self, lines: int = 30) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; only this process's own pid."""
        stop_process(self.process, timeout)
        self._reader.join(timeout=5)
        self._log.close()


class ProcessGroup:
    """Starts processes and guarantees they are stopped (use as a context manager)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path) -> Proc:
        proc = Proc(name, argv, env=env, cwd=cwd, log_path=self.log_dir / f"{name}.log")
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            with contextlib.suppress(Exception):
                proc.stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    """Resident set size (VmRSS) of ``pid`` in MiB, None once it is gone; ``field``: another
    line of ``/proc/<pid>/status`` in kB, e.g. ``RssFile`` (pages of mapped files: the
    libraries' code as it is first run, not the heap)."""
    kib = status_kib(field, Path(f"/proc/{pid}/status"))
    return None if kib is None else kib / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (all its threads) in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def log_time(line: str, fallback: float) -> float:
    """Wall time of a Faust/mode log line from its own ``[YYYY-mm-dd HH:MM:SS,mmm]`` stamp.

    >>> log_time("no stamp here", 12.5)
    12.5
    """
    found = _LOG_STAMP.match(line)
    if not found:
        return fallback
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
