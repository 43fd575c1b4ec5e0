"""Read predictions and labels from JSONL, CSV or Parquet files, in bounded chunks.

The format comes from the suffix: ``.jsonl``/``.ndjson``/``.json`` (optionally ``.gz``; a
``.json`` file may also hold one JSON array), ``.csv`` (optionally ``.gz``) and ``.parquet``.
JSON lines are v1 events (a prediction line may be a ``PredictionBatch`` envelope). Tabular
files have one column per field: ``event_id``, ``model``, ``model_version``, ``timestamp``,
``prediction`` (or ``label`` in a labels file), ``scores.<class>``, ``segment.<key>``; every
other column, or a ``features.<name>`` column, is a feature. CSV cells are typed by looks:
empty is null, ``true``/``false`` are booleans, numbers are numbers, the rest text.

Bad rows never stop a read: each is counted and the first ones kept with ``file:line`` and the
reason. Only a file that cannot be read at all raises ``InputFileError``.

>>> detect_format(Path("p.jsonl.gz")), detect_format(Path("labels.csv"))
('jsonl', 'csv')
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Generic, Literal, TypeVar, cast

import pydantic_core
from pydantic import ValidationError

from schemas.events import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    LabelEvent,
    PredictionEvent,
    parse_event,
    parse_label,
    parse_prediction_payload,
)
from streams.readers_merge import MergeStats, merge_by_event_time
from streams.readers_tabular import RowBuilder, native_value, plan_columns, typed_cell

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "EventReader",
    "InputFileError",
    "MergeStats",
    "RowError",
    "detect_format",
    "merge_by_event_time",
    "read_events",
    "read_labels",
    "read_predictions",
]

Format = Literal["jsonl", "csv", "parquet"]
EventKind = Literal["prediction", "label"]
E = TypeVar("E", PredictionEvent, LabelEvent)
_T = TypeVar("_T")

DEFAULT_CHUNK_ROWS: Final = 10_000
MAX_KEPT_ERRORS: Final = 100
_SUFFIXES: Final[dict[str, Format]] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"
}  # fmt: skip


class InputFileError(ValueError):
    """A file that cannot be read at all: missing, unknown format, unreadable, no key columns."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad row: ``file:line: reason`` (CSV lines count the header; Parquet counts rows)."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def detect_format(path: Path) -> Format:
    """The file format from the suffix (``.gz`` allowed for JSONL and CSV)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
        if suffixes and suffixes[-1] == ".parquet":
            suffixes.clear()  # Parquet compresses internally; a gzipped one is not readable
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise InputFileError(
            f"{path}: unknown file type {''.join(path.suffixes) or '(no suffix)'}; use .jsonl, "
            f".ndjson, .json, .csv (each optionally .gz) or .parquet"
        )
    return found


class EventReader(Generic[E]):
    """Iterates a file as lists of at most ``chunk_rows`` valid events; counts the bad rows.

    ``model`` fills in rows without a model column. ``on_bytes`` is told how many bytes of the
    file each chunk consumed (for a progress bar over ``size_bytes``).
    """

    def __init__(
        self,
        path: Path | str,
        kind: EventKind,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        model: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        keep_errors: int = MAX_KEPT_ERRORS,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.path = Path(path)
        self.kind: EventKind = kind
        self.format: Format = detect_format(self.path)
        if not self.path.is_file():
            raise InputFileError(f"{self.path}: no such file")
        self.size_bytes = self.path.stat().st_size
        self.chunk_rows = chunk_rows
        self.model = model
        self.on_bytes = on_bytes
        self.keep_errors = keep_errors
        self.valid = 0
        self.invalid = 0
        self.errors: list[RowError] = []
        self.ignored_columns: list[str] = []
        self._model: type[E] = cast(
            type[E], PredictionEvent if kind == "prediction" else LabelEvent
        )
        if self.format != "jsonl":  # a wrong table fails now, not after a long run
            header = self._guarded(self._header)
            if header is not None:
                self._layout(header)

    def _guarded(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
            raise InputFileError(f"{self.path}: cannot read it as {self.format}: {exc}") from exc

    def _header(self) -> list[str] | None:
        if self.format == "csv":
            with _open_binary(self.path) as (_, binary):
                text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
                return next(csv.reader(text), None)
        return list(self._parquet_file().schema_arrow.names)

    def _parquet_file(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise InputFileError(f"{self.path}: not a readable Parquet file: {exc}") from exc

    def __iter__(self) -> Iterator[list[E]]:
        readers = {"jsonl": self._jsonl, "csv": self._csv, "parquet": self._parquet}
        chunks = readers[self.format]()
        while (chunk := self._guarded(lambda: next(chunks, None))) is not None:
            yield chunk

    def _reject(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.errors) < self.keep_errors:
            self.errors.append(RowError(str(self.path), line, reason))

    def _progress(self, handle: IO[bytes], done: int) -> int:
        position = handle.tell()
        if self.on_bytes is not None and position > done:
            self.on_bytes(position - done)
        return max(position, done)

    # -- JSON lines ------------------------------------------------------------------------------

    def _parse_json(self, raw: bytes | str) -> list[E]:
        if len(raw) <= MAX_EVENT_BYTES:  # fast path: straight from JSON in Rust
            try:
                return [self._model.model_validate_json(raw)]
            except ValidationError:
                pass  # a batch envelope, or invalid: the parsers below tell which and why
        parsed: list[Any] = (
            parse_prediction_payload(raw) if self.kind == "prediction" else [parse_label(raw)]
        )
        return parsed

    def _jsonl(self) -> Iterator[list[E]]:
        chunk: list[E] = []
        done = 0
        with _open_binary(self.path) as (raw, text):
            if _starts_with_array(text):
                yield from self._json_array(text)
                return
            for number, line in enumerate(text, start=1):
                if not line.strip():
                    continue
                try:
                    chunk.extend(self._parse_json(line))
                except InvalidEvent as exc:
                    self._reject(number, str(exc))
                    continue
                if len(chunk) >= self.chunk_rows:
                    self.valid += len(chunk)
                    done = self._progress(raw, done)
                    yield chunk
                    chunk = []
            self.valid += len(chunk)
            self._progress(raw, done)
        if chunk:
            yield chunk

    def _json_array(self, text: IO[bytes]) -> Iterator[list[E]]:
        # A JSON array has to be loaded whole; JSON lines are the streaming format.
        try:
            items = json.load(text)
        except ValueError as exc:
            raise InputFileError(f"{self.path}: not a valid JSON array: {exc}") from exc
        if self.on_bytes is not None:
            self.on_bytes(self.size_bytes)
        chunk: list[E] = []
        for number, item in enumerate(items, start=1):
            try:
                chunk.extend(self._parse_json(json.dumps(item)))
            except InvalidEvent as exc:
                self._reject(number, f"array item {number}: {exc}")
            if len(chunk) >= self.chunk_rows:
                self.valid += len(chunk)
                yield chunk
                chunk = []
        self.valid += len(chunk)
        if chunk:
            yield chunk

    # -- tabular ---------------------------------------------------------------------------------

    def _csv(self) -> Iterator[list[E]]:
        done = 0
        with _open_binary(self.path) as (raw, binary):
            reader = csv.reader(io.TextIOWrapper(binary, encoding="utf-8-sig", newline=""))
            header = next(reader, None)
            if header is None:
                return
            build = self._layout(header)
            rows: list[tuple[int, dict[str, Any]]] = []
            for cells in reader:
                if not cells:
                    continue
                if len(cells) != len(header):
                    self._reject(
                        reader.line_num,
                        f"has {len(cells)} cells but the header has {len(header)} columns",
                    )
                    continue
                rows.append((reader.line_num, build([typed_cell(c) for c in cells], cells)))
                if len(rows) >= self.chunk_rows:
                    done = self._progress(raw, done)
                    yield self._validate_rows(rows)
                    rows = []
            if rows:
                yield self._validate_rows(rows)
            self._progress(raw, done)

    def _parquet(self) -> Iterator[list[E]]:
        table = self._parquet_file()
        build = self._layout(list(table.schema_arrow.names))
        rows_total = max(table.metadata.num_rows, 1)
        number = 0
        for batch in table.iter_batches(batch_size=self.chunk_rows):
            rows: list[tuple[int, dict[str, Any]]] = []
            names = batch.schema.names
            for record in batch.to_pylist():
                number += 1
                values = [native_value(record[name]) for name in names]
                rows.append((number, build(values, values)))
            if self.on_bytes is not None:
                self.on_bytes(self.size_bytes * len(rows) // rows_total)
            yield self._validate_rows(rows)

    def _layout(self, header: Sequence[str]) -> RowBuilder:
        build, self.ignored_columns, missing = plan_columns(header, self.kind, self.model)
        if missing:
            raise InputFileError(
                f"{self.path}: missing column(s) {', '.join(missing)} for {self.kind} events "
                f"(columns found: {', '.join(header) or 'none'})"
                + ("; pass a default model name" if missing == ["model"] else "")
            )
        return build

    def _validate_rows(self, rows: list[tuple[int, dict[str, Any]]]) -> list[E]:
        model = self._model
        chunk: list[E] = []
        for number, data in rows:
            try:
                chunk.append(model.model_validate(data))
                continue
            except ValidationError:
                pass
            try:  # slow path, failures only: the same readable message as the JSON path
                raw = pydantic_core.to_json(data, fallback=str)
                chunk.append(parse_event(raw, model))
            except InvalidEvent as exc:
                reason = str(exc).replace(f"{model.__name__} message", f"{self.kind} event", 1)
                self._reject(number, reason)
        self.valid += len(chunk)
        return chunk


@contextmanager
def _open_binary(path: Path) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """The file and its content stream (gunzipped for ``.gz``); the file's offset is progress."""
    with path.open("rb") as raw:
        if path.suffix.lower() != ".gz":
            yield raw, raw
            return
        with gzip.open(raw) as unzipped:
            yield raw, cast(IO[bytes], unzipped)


def _starts_with_array(handle: IO[bytes]) -> bool:
    peek = getattr(handle, "peek", None)
    head = peek(64) if peek is not None else b""
    return head.lstrip()[:1] == b"["


def read_predictions(
    path: Path | str,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    model: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> EventReader[PredictionEvent]:
    """A chunked reader of prediction events (iterate it; then read ``invalid``/``errors``)."""
    return EventReader(path, "prediction", chunk_rows=chunk_rows, model=model, on_bytes=on_bytes)


def read_labels(
    path: Path | str,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    model: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> EventReader[LabelEvent]:
    """A chunked reader of label events (iterate it; then read ``invalid``/``errors``)."""
    return EventReader(path, "label", chunk_rows=chunk_rows, model=model, on_bytes=on_bytes)


def read_events(
    path: Path | str, kind: EventKind, *, strict: bool = True
) -> Iterator[PredictionEvent | LabelEvent]:
    """Every event of one file in file order (for ``driftline replay``).

    ``strict`` raises ``InputFileError`` naming the bad rows before handing out the chunk that
    holds the first one; otherwise invalid rows are skipped.
    """
    reader: EventReader[Any] = EventReader(path, kind)

    def check() -> None:
        if strict and reader.invalid:
            shown = "; ".join(str(error) for error in reader.errors[:5])
            raise InputFileError(f"invalid {kind} row(s) in {path}: {shown}")

    for chunk in reader:
        check()
        yield from chunk
    check()
