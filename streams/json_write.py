"""Write compact JSON fast on the ingest's hot path (join entries and their journals).

orjson writes JSON ~10x faster than ``json.dumps``, but silently writes ``NaN`` and
``Infinity`` as ``null``. So `dumps` is only for values that cannot hold them: join entries are
built from validated events (the v1 contract rejects non-finite numbers) and journals hold
text. Whatever orjson refuses (integers beyond 64 bits, lone surrogates from
``surrogateescape``, subclasses it does not know) is written by ``json.dumps``, so the text
always parses back to the same value.

>>> dumps([5, "m", None, {"a": 0.25}])
b'[5,"m",null,{"a":0.25}]'
>>> dumps([2**70, "\\udcff"]) == b'[1180591620717411303424,"\\\\udcff"]'
True
>>> dumps_each([[1, "a,b"], {"k": [2]}, None])
[b'[1,"a,b"]', b'{"k":[2]}', b'null']
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
import orjson

__all__ = ["dumps", "dumps_each"]

_FEW: Final = 32
"""Below this many values, one `dumps` each costs no more than cutting one document."""
_QUOTE, _COMMA, _BACKSLASH = ord('"'), ord(","), b"\\"
_SPECIAL: Final = np.zeros(256, dtype=np.bool_)
"""The bytes that decide where a value ends: quotes, commas, brackets and braces."""
_SPECIAL[[_QUOTE, _COMMA, ord("["), ord("]"), ord("{"), ord("}")]] = True
_DEPTH_STEP: Final = np.zeros(256, dtype=np.int32)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def dumps(value: Any) -> bytes:
    """``json.dumps(value, separators=(",", ":")).encode()``, faster; no NaN/inf in ``value``."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, separators=(",", ":")).encode()


def dumps_each(values: list[Any]) -> list[bytes]:
    """``[dumps(v) for v in values]`` (the same bytes), ~3x faster for many values.

    Thousands of small orjson results kept alive cost ~3 us each, ten times what one costs
    alone (each starts as a 1 KiB buffer that glibc's heap then trims and grows again). So the
    list is written as one document and cut at its top-level commas, found with numpy among the
    quotes, commas and brackets: outside strings (quote parity, exact when nothing is escaped),
    at depth 1. Anything else (an escape, a value orjson refuses, few values) takes `dumps` one
    by one.
    """
    if len(values) < _FEW:
        return [dumps(value) for value in values]
    try:
        whole = orjson.dumps(values)
    except TypeError:
        return [dumps(value) for value in values]
    if _BACKSLASH in whole:
        return [dumps(value) for value in values]
    raw = np.frombuffer(whole, dtype=np.uint8)
    at = np.flatnonzero(_SPECIAL[raw])  # the few bytes that matter, in order
    kinds = raw[at]
    outside = (np.cumsum(kinds == _QUOTE, dtype=np.int32) & 1) == 0
    depth = np.cumsum(np.where(outside, _DEPTH_STEP[kinds], 0), dtype=np.int32)
    cuts = at[(kinds == _COMMA) & outside & (depth == 1)].tolist()
    if len(cuts) != len(values) - 1:  # cannot happen for orjson's output; never guess
        return [dumps(value) for value in values]
    starts, ends = [1, *(cut + 1 for cut in cuts)], [*cuts, len(whole) - 1]
    return [whole[start:end] for start, end in zip(starts, ends, strict=True)]
