"""streams.json_read: orjson where it can, the standard library's result in every case."""

from __future__ import annotations

import json
import math

import pytest

from streams.json_read import loads


def test_reads_standard_json_like_the_standard_library() -> None:
    text = json.dumps(
        {"model": "churn", "delta": {"count": 3, "mean": 0.1 + 0.2, "sample": "AAAA"}, "n": None}
    )
    assert loads(text.encode()) == json.loads(text)
    assert loads(text) == json.loads(text)
    assert loads(memoryview(text.encode())) == json.loads(text)


def test_reads_the_nan_and_infinity_tokens_json_dumps_writes() -> None:
    raw = json.dumps({"mean": float("nan"), "max": float("inf"), "big": 2**70}).encode()
    value = loads(raw)
    assert math.isnan(value["mean"])
    assert value["max"] == math.inf
    assert value["big"] == 2**70  # beyond orjson's 64-bit integers


def test_malformed_text_raises_a_value_error() -> None:
    with pytest.raises(ValueError):
        loads(b'{"model": ')
