"""The worker's glibc malloc thresholds: big buffers keep going back to the kernel after a
large free, and thresholds a user set are left alone."""

from __future__ import annotations

import pytest
from glibc_helpers import glibc_only, run_probe

from streams.malloc_thresholds import fix_malloc_thresholds

# Frees a 4 MiB buffer (glibc then raises its adaptive mmap threshold to 4 MiB), allocates
# 512 KiB and prints whether that chunk is mmapped: bit 2 of the size word before it.
PROBE = """
import ctypes, sys
from streams.malloc_thresholds import fix_malloc_thresholds
if sys.argv[1] == "fix":
    print(fix_malloc_thresholds(), file=sys.stderr)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.free(libc.malloc(4 << 20))
chunk = libc.malloc(512 << 10)
size_word = ctypes.c_size_t.from_address(chunk - ctypes.sizeof(ctypes.c_size_t)).value
print("mmapped" if size_word & 2 else "heap")
"""


def _probe(mode: str) -> str:
    return run_probe(PROBE, mode)


@glibc_only
def test_after_a_large_free_a_big_buffer_is_still_mapped_only_with_fixed_thresholds() -> None:
    assert _probe("default") == "heap"  # glibc's adaptive threshold: what the fix is for
    assert _probe("fix") == "mmapped"


@glibc_only
def test_thresholds_a_user_set_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert fix_malloc_thresholds() == "left as MALLOC_TRIM_THRESHOLD_ set them"
