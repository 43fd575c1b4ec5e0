"""driftline's native ingest (native/src/lib.rs): see `streams.ingest_native`."""

from typing import Any

def parse_envelope(raw: bytes) -> tuple[Any, ...] | None:
    """An SDK envelope's rows as columns, or None when it is not certainly valid."""

def limits() -> dict[str, int]:
    """The v1 limits this build checks."""

def fields() -> dict[str, list[str]]:
    """The field names this build knows: envelope, row, required (in a row)."""
