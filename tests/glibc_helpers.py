"""What the glibc malloc tests share: the skip mark elsewhere, and probes run in a fresh
process (malloc's state is the process's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


glibc_only = pytest.mark.skipif(not _glibc(), reason="glibc malloc only")


def run_probe(code: str, *args: str) -> str:
    """What ``code`` prints, run by a new Python with no ``MALLOC_*`` variables (glibc reads
    them at start)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()
