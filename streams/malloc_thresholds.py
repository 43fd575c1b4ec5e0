"""Fix glibc malloc's mmap and trim thresholds in the worker, so freed memory goes back.

glibc serves an allocation above its mmap threshold (128 KiB at start) with its own mapping
and unmaps it when freed. But each such free also raises the threshold to the freed size (up
to 32 MiB), so later buffers of that size come from the heap instead, where a buffer freed
below a live one stays in the process. A worker frees large buffers all the time (fetched
record batches, envelope parses, RocksDB write batches): in a 10-minute sustained run its
anonymous memory outside the RocksDB cache grew +2.4-2.5 MiB/min after the warm-up, and
+0.9-1.0 with the thresholds fixed (bench/README.md, 25th session). Setting them with
``mallopt`` turns that adjustment off.

It is opt-in (``DRIFTLINE_FIXED_MALLOC_THRESHOLDS=true``): every buffer above 128 KiB is then
mapped and unmapped each time, and a worker at full speed on envelopes moved ~20 % fewer
predictions (115-121k vs 137-159k/s). Fixed at 4 MiB instead, it cost less and did not slow
the growth: the buffers that stay are the 128 KiB-4 MiB ones.

Variables a user sets (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) win: glibc read
them at start, and this leaves them alone. Elsewhere (macOS, musl) there is nothing to do.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "fix_malloc_thresholds"]

MMAP_THRESHOLD_BYTES: Final = 128 * 1024
"""glibc's own starting value, kept fixed."""
TRIM_THRESHOLD_BYTES: Final = 256 * 1024
"""Free memory at the heap's top beyond this goes back to the kernel (glibc's adaptive value
follows the mmap threshold up to 64 MiB)."""
USER_VARIABLES: Final = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_M_TRIM_THRESHOLD: Final = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3


def fix_malloc_thresholds() -> str:
    """Set the thresholds; returns what happened, for the worker's log."""
    if not sys.platform.startswith("linux"):
        return f"left as is ({sys.platform} has no glibc)"
    chosen = [name for name in USER_VARIABLES if name in os.environ]
    if chosen:
        return f"left as {', '.join(chosen)} set them"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "left as is (no mallopt in this C library)"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0.
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return "left as is (mallopt refused the mmap threshold)"
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return "mmap threshold fixed; mallopt refused the trim threshold"
    return f"fixed: mmap {MMAP_THRESHOLD_BYTES} B, trim {TRIM_THRESHOLD_BYTES} B"
