"""Read JSON fast on the worker's hot paths (sketches, join entries, table values).

orjson parses standard JSON 2-4x faster than the standard library, with two differences:
it refuses the non-standard tokens ``NaN``/``Infinity`` that ``json.dumps`` may have written,
and it reads an integer beyond 64 bits as a float. `loads` gives exactly the standard
library's result (or its ``ValueError``): text orjson refuses, or that has a run of 19 digits
(a possible integer beyond 64 bits), is read by ``json.loads``. `loads_own` skips the digit
check, for driftline's own formats whose integers are counts and offsets, never user values.
`from_json` is the same for the parser pydantic validates events with (``pydantic_core``),
whose non-standard tokens and huge integers differ from the standard library's.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson
import pydantic_core

__all__ = ["from_json", "loads", "loads_own"]

Raw = bytes | bytearray | memoryview | str

_DIGITS_AS_ZERO: Final = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGITS: Final = b"0" * 19
"""-9223372036854775809 has 19 digits: shorter integers always fit orjson's 64 bits."""
_LONG_DIGIT_RUN: Final = re.compile(r"[0-9]{19}")


def _may_hold_huge_integer(data: bytes) -> bool:
    """A run of 19 digits: an integer orjson might read as a float (cheap byte-level scan)."""
    return _LONG_DIGITS in data.translate(_DIGITS_AS_ZERO)


def loads(raw: Raw) -> Any:
    """``json.loads(raw)``, faster for standard JSON without huge integers."""
    if isinstance(raw, str):  # rare (tests, tools): no need for the byte-level scan
        return json.loads(raw) if _LONG_DIGIT_RUN.search(raw) else loads_own(raw)
    data = bytes(raw)
    if _may_hold_huge_integer(data):
        return json.loads(data)
    return loads_own(data)


def from_json(raw: bytes) -> Any:
    """``pydantic_core.from_json(raw)`` (its value, or its ``ValueError``), faster for large
    messages of standard JSON without huge integers (x1.4-1.5 for envelopes of 500 predictions,
    no gain for single events: ``bench/ingest_fold.py``). Text orjson refuses (``NaN``, a
    byte-order mark, bad UTF-8, ...) is pydantic's to accept or refuse."""
    if not _may_hold_huge_integer(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return pydantic_core.from_json(raw)


def loads_own(raw: Raw) -> Any:
    """`loads` for driftline's own formats: an integer beyond 64 bits would come back as a
    float (none has one: user values there are strings or floats)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(bytes(raw) if isinstance(raw, memoryview) else raw)
