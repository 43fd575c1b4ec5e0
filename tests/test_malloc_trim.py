"""The worker's heap trim: free pages malloc kept below a live allocation go back to the
kernel, and the reading of the process's anonymous memory."""

from __future__ import annotations

from pathlib import Path

from glibc_helpers import glibc_only, run_probe

from streams.malloc_trim import anonymous_rss_bytes, heap_trimmer

# Fills ~64 MiB of the heap with 1 KiB chunks, frees all but the last one (which keeps the
# heap's top from shrinking, as a live buffer does in a worker), then trims: prints the
# anonymous memory after the free and what the trim gave back, in MiB.
PROBE = """
import ctypes
from streams.malloc_trim import anonymous_rss_bytes, heap_trimmer
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
chunks = [libc.malloc(1024) for _ in range(64 * 1024)]
for chunk in chunks:
    ctypes.memset(chunk, 1, 1024)  # touched: resident
for chunk in chunks[:-1]:
    libc.free(chunk)
kept = anonymous_rss_bytes()
trim = heap_trimmer()()
print(kept >> 20, trim.released_bytes >> 20)
"""


@glibc_only
def test_a_trim_gives_back_the_free_pages_below_a_live_chunk() -> None:
    printed = run_probe(PROBE)
    kept_mib, released_mib = map(int, printed.split())
    # glibc alone keeps the freed 64 MiB (the live chunk is at the top); the trim returns them.
    assert kept_mib >= 64, printed
    assert released_mib >= 48, printed


@glibc_only
def test_the_trimmer_exists_on_glibc_and_reads_its_own_memory() -> None:
    trim = heap_trimmer()
    assert trim is not None
    done = trim()
    assert done.before_bytes > 0 and done.after_bytes > 0
    assert done.seconds >= 0 and done.released_bytes >= 0


def test_anonymous_memory_is_read_from_the_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nRssAnon:\t  2048 kB\nRssFile:\t 10 kB\n")
    assert anonymous_rss_bytes(status) == 2 * 1024 * 1024
    status.write_text("Name:\tpython\n")
    assert anonymous_rss_bytes(status) == 0  # a kernel that does not say
    assert anonymous_rss_bytes(tmp_path / "missing") == 0
