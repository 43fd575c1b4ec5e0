"""The join changelog's journals: format 2 round-trips any bytes, format 1 (JSON, written
before) still decodes, anything else is refused with the fix, and a batch's writes are cut
into journals of at most about `MAX_JOURNAL_BYTES`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams import journal_table
from streams.journal_table import (
    JOURNAL_MAGIC,
    JournalTable,
    decode_journal,
    encode_journal,
)


def test_any_keys_and_values_round_trip_in_order_with_deletes_and_empty_values() -> None:
    changes: dict[bytes, bytes | None] = {
        b"e-1": b'[5,"m",null,1,{"a":0.25},null]', b"gone": None, b"empty": b"",
        b"\xff\xfe not utf-8": b"\x00\x01 raw", "é-2".encode(): '["ü"]'.encode(),
    }  # fmt: skip
    raw = encode_journal(changes)
    assert raw.startswith(JOURNAL_MAGIC)
    decoded = decode_journal(raw)
    assert decoded == changes and list(decoded) == list(changes)
    assert decode_journal(encode_journal({})) == {}


def test_a_format_1_journal_still_decodes() -> None:
    old = json.dumps({"format": 1, "changes": [["e-1", '[5,"m"]'], ["e-2", None]]}).encode()
    assert decode_journal(old) == {b"e-1": b'[5,"m"]', b"e-2": None}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format": 7, "changes": []}',
        b"hello",
        encode_journal({b"e-1": b"[5]"})[:-1],  # cut short
        encode_journal({b"e-1": b"[5]"}) + b"x",  # trailing bytes
        JOURNAL_MAGIC + b"\xff\xff\xff\x00",  # a count beyond the message
    ],
)
def test_anything_else_is_refused_with_the_fix(raw: bytes) -> None:
    with pytest.raises(ValueError, match="delete the changelog topic or use a new topic prefix"):
        decode_journal(raw)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_large_batch_is_cut_into_journals_near_the_limit(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faust

    limit = 10_000
    monkeypatch.setattr(journal_table, "MAX_JOURNAL_BYTES", limit)
    app = faust.App("journal-cut", store=store, datadir=str(tmp_path), autodiscover=False)
    table = JournalTable(
        app, name="join", key_type=bytes, value_type=bytes, partitions=1, retention_seconds=60.0
    )
    sent: list[bytes] = []

    def send_changelog(partition: int, key: Any, value: bytes, **_: Any) -> None:
        sent.append(value)

    monkeypatch.setattr(table, "send_changelog", send_changelog)
    small: dict[bytes, bytes | None] = {f"s-{i}".encode(): b"[1]" for i in range(10)}
    table.write_many(0, small)
    assert sent == []  # below the limit: kept for the batch's flush
    big: dict[bytes, bytes | None] = {f"e-{i:05d}".encode(): b"[12345678]" for i in range(2_000)}
    big[b"s-0"] = None
    table.write_many(0, big)
    table.flush_journal(0)
    journals = [decode_journal(raw) for raw in sent]
    assert len(journals) >= 3
    assert all(sum(len(k) + len(v or b"") for k, v in j.items()) < limit + 20 for j in journals)
    merged: dict[bytes, bytes | None] = {}
    for journal in journals:
        merged.update(journal)
    assert merged == {**small, **big}
    assert dict(table.items_in(0)) == {k: v for k, v in {**small, **big}.items() if v is not None}
