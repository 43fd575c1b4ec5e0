"""streams.json_read/json_write: orjson where it can, the standard library's result always."""

from __future__ import annotations

import json
import math
import random

import pydantic_core
import pytest
from join_store import DictJoinStore

from streams import json_write
from streams.join_batch import changes_of, entries_of
from streams.json_read import from_json, loads, loads_own
from streams.json_write import dumps, dumps_each


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


@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**30])
def test_reads_integers_beyond_64_bits_exactly(big: int) -> None:
    # orjson alone reads them as floats: a class label 2**64 would then never equal its label.
    raw = json.dumps([5, "m", None, big, {"a": 0.5}, None]).encode()
    assert loads(raw) == [5, "m", None, big, {"a": 0.5}, None]
    assert type(loads(raw)[3]) is int
    assert loads(raw.decode()) == loads(raw)
    assert loads('"\udcff"') == "\udcff"  # text json.loads reads, though orjson does not


def test_own_formats_read_like_the_standard_library() -> None:
    text = json.dumps({"format": 1, "changes": [["e-1", "[5]"], ["e-2", None]], "x": 1e-7})
    assert loads_own(text.encode()) == json.loads(text)
    assert math.isnan(loads_own(b'{"m": NaN}')["m"])


def test_writes_what_the_standard_library_reads_back() -> None:
    values: list[object] = [
        [5, "m", None, 0.1 + 0.2, {"a": 0.25, "b": 0.75}, {"region": "eu"}],
        [7, "m", "v2", 2**70, None, None],  # orjson refuses it: json.dumps writes it
        {"format": 1, "changes": [["e-\udcff", None], ["é", "[1]"]]},  # a lone surrogate too
        -0.0,
        1e300,
    ]
    for value in values:
        assert json.loads(dumps(value)) == value


_ODD_TEXTS = ["", "a,b", "[x]", "{y}", 'q"uote', "back\\slash", "é,ü", "\n", "\x00", "]],[["]


@pytest.mark.parametrize("seed", range(6))
def test_many_values_are_written_as_one_by_one(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)

    def value(depth: int = 0) -> object:
        kind = rng.randrange(8 if depth < 2 else 5)
        if kind == 0:
            return rng.randrange(-(2**40), 2**40)
        if kind == 1:
            return rng.uniform(-1e6, 1e6)
        if kind == 2:
            return rng.choice(_ODD_TEXTS[:4] if seed % 2 else _ODD_TEXTS)
        if kind == 3:
            return None
        if kind == 4:
            return rng.choice([True, False])
        if kind == 5:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if kind == 6:
            return {rng.choice(_ODD_TEXTS[:4]) + str(i): value(depth + 1) for i in range(3)}
        return [rng.randrange(10**15), "m", None, value(depth + 1), None, {"region": "eu"}]

    values = [value() for _ in range([40, 400, 40, 400, 5, 400][seed])]
    if seed == 5:
        values.append(2**70)  # orjson refuses it: one by one
    expected = [dumps(v) for v in values]
    if seed in (1, 3) and len(values) >= 32:  # no escapes: the document is cut, not redone
        monkeypatch.setattr(json_write, "dumps", None)
    assert dumps_each(values) == expected


def test_join_entries_keep_huge_integer_predictions() -> None:
    before: dict[str, object] = {}
    after = {"e-1": [5, "m", None, 2**70, None, None]}
    written = changes_of(before, after)
    store = DictJoinStore(written)
    assert entries_of(store, 0, [b"e-1"]) == after


_EVENT_TEXTS = [
    b'{"event_id": "e-1", "features": {"x": 0.1, "n": 3, "c": "\\u00e9", "b": true}, "z": null}',
    b'{"a": 1, "b": 2, "a": 3}',  # a repeated key: the last value, at the first place
    b'{"big": 123456789012345678901234567890, "neg": -9223372036854775809}',
    b'{"max": 18446744073709551615, "tiny": 2.5e-324, "zero": -0.0, "e": 1E2}',
    b'{"x": NaN, "y": Infinity, "z": -Infinity}',  # pydantic reads them; orjson does not
    b'{"x": 1e400}',  # inf for pydantic, an error for orjson
    b'{"s": "\\ud834\\udd1e"}',
    b' {"padded": 1} ',
]
_BAD_TEXTS = [b'{"a": 1,}', b'\xef\xbb\xbf{"a": 1}', b'{"a": "\\ud800"}', b'{"a": 01}',
              b'{"a": "\xff"}', b'{"a": 1}\n{"b": 2}', b"", b'{"a": .5}']  # fmt: skip


@pytest.mark.parametrize("raw", _EVENT_TEXTS)
def test_from_json_gives_pydantics_values_and_types(raw: bytes) -> None:
    ours, theirs = from_json(raw), pydantic_core.from_json(raw)
    assert repr(ours) == repr(theirs)  # repr: nan == nan, and int 1 != float 1.0
    assert [type(v) for v in ours.values()] == [type(v) for v in theirs.values()]


@pytest.mark.parametrize("raw", _BAD_TEXTS)
def test_from_json_refuses_what_pydantic_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        pydantic_core.from_json(raw)
    with pytest.raises(ValueError):
        from_json(raw)


def test_from_json_reads_numbers_like_pydantic() -> None:
    rng = random.Random(7)
    texts = [repr(rng.uniform(-1e6, 1e6)) for _ in range(500)]
    texts += [f"{rng.randint(1, 9)}.{rng.randint(0, 10**16):016d}e{rng.randint(-330, 310)}"
              for _ in range(2000)]  # fmt: skip
    texts += [str(rng.randint(-(2**63), 2**64 - 1)) for _ in range(500)]
    for text in texts:
        raw = b'{"v": ' + text.encode() + b"}"
        try:
            expected = repr(pydantic_core.from_json(raw)["v"])
        except ValueError:
            expected = "refused"
        assert repr(from_json(raw)["v"]) == expected, text
