"""A join table of one partition in a dict, as `streams.journal_table.JournalTable` answers
`streams.join_batch.BatchStore` (raw keys and values)."""

from __future__ import annotations

from typing import Any

import orjson


class DictJoinStore:
    def __init__(self, data: dict[bytes, bytes | None] | None = None) -> None:
        self.held = {key: value for key, value in (data or {}).items() if value is not None}

    def read_many(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes]:
        return {key: self.held[key] for key in keys if key in self.held}

    def holds_any(self, partition: int) -> bool:
        return bool(self.held)

    def items_in(self, partition: int) -> list[tuple[bytes, bytes]]:
        return list(self.held.items())

    def write_many(self, partition: int, changes: dict[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.held.pop(key, None)
            else:
                self.held[key] = value

    def decoded(self) -> dict[bytes, Any]:
        return {key: orjson.loads(value) for key, value in self.held.items()}
