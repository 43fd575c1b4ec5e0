"""Give the heap's free pages back to the kernel now and then (glibc's ``malloc_trim``).

A worker frees large buffers all the time (fetched record batches, envelope parses, RocksDB
write batches, sketches deltas). glibc returns freed memory to the kernel only from the top
of a heap: pages freed below a live allocation stay in the process, and its memory outside
the RocksDB cache kept growing ~2 MiB/min in the 10-minute sustained bench while neither
Python's objects nor malloc's live heap did (bench/README.md, 23rd and 25th sessions).
``malloc_trim(0)`` hands back every whole free page of every arena (``madvise``), so the
retained memory is bounded by what one interval frees, without the cost of fixed thresholds
(`streams.malloc_thresholds`: every large buffer mapped and unmapped, ~20 % less throughput).

A trim walks the arenas' free lists and holds each arena's lock meanwhile (a few ms in a busy
worker): the worker runs it on a helper thread, off the event loop, every
``Settings.malloc_trim_seconds``. Elsewhere (macOS, musl) there is nothing to trim.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Trim", "anonymous_rss_bytes", "heap_trimmer", "status_kib"]


@dataclass(frozen=True)
class Trim:
    """One trim: the process's anonymous memory before and after it, and how long it took
    (other threads allocate meanwhile: what it gave back is read to within their share)."""

    before_bytes: int
    after_bytes: int
    seconds: float

    @property
    def released_bytes(self) -> int:
        return max(0, self.before_bytes - self.after_bytes)


def heap_trimmer() -> Callable[[], Trim] | None:
    """A function that trims the heap and says what it gave back; None without glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # musl and others: no malloc_trim
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int

    def trim() -> Trim:
        before = anonymous_rss_bytes()
        started = time.perf_counter()
        malloc_trim(0)  # ctypes releases the GIL for the call
        return Trim(before, anonymous_rss_bytes(), time.perf_counter() - started)

    return trim


def anonymous_rss_bytes(status: Path = Path("/proc/self/status")) -> int:
    """The process's resident anonymous memory (``RssAnon``), 0 where the kernel does not
    say."""
    kib = status_kib("RssAnon", status)
    return 0 if kib is None else kib * 1024


def status_kib(field: str, status: Path = Path("/proc/self/status")) -> int | None:
    """A kB line of a process's ``status`` file (``VmRSS``, ``RssAnon``, ``RssFile``...),
    None when the file (the process) or the line is not there."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
