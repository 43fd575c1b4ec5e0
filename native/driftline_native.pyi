"""driftline's native ingest (native/src/lib.rs): see `streams.ingest_native`."""

from typing import Any

def parse_envelopes(raws: list[bytes | None]) -> list[tuple[Any, ...] | None]:
    """Each SDK envelope's rows as columns (and each row's join entry, encoded), or None where
    it is not certainly valid; parsed and checked on the machine's cores."""

def parse_events(raws: list[bytes | None]) -> list[tuple[bytearray, tuple[Any, ...]]] | None:
    """Single events as columns per model version, with each row's index in ``raws``; None
    unless every message is certainly a valid single event."""

def limits() -> dict[str, int]:
    """The v1 limits this build checks."""

def fields() -> dict[str, list[str]]:
    """The field names this build knows: envelope, row, required (in a row)."""

def entry_times(
    values: list[bytes], older_than: int | None = None
) -> tuple[list[int], list[int], list[bool]] | None:
    """The join entries before ``older_than`` (all when None): their indices, leading event
    times and whether each holds more than its time; None unless every entry is in the
    joiner's integer layout."""

def dumps_compact(value: object) -> bytes | None:
    """``json.dumps(value, separators=(",", ":")).encode()``, the same bytes (NaN and
    infinities too); None for values only ``json.dumps`` writes exactly."""

def b64encode(data: bytes) -> str:
    """``base64.b64encode(data).decode("ascii")``, the same text."""

def b64decode(text: object) -> bytes | None:
    """The bytes of a ``str`` that ``b64encode`` could have written; None for anything else
    (left to binascii, errors included)."""

def encode_journal(changes: dict[bytes, bytes | None], magic: bytes) -> bytes | None:
    """``streams.journal_table.encode_journal(changes)``'s bytes, its frame led by ``magic``;
    None unless every key is ``bytes`` and every value ``bytes`` or None."""
