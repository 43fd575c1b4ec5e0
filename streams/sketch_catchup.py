"""Read a model's sketches messages back from Kafka: the judge's catch-up after a crash.

A judge stores its state every few seconds, not after every batch (a state is hundreds of KB).
Before it applies a batch it has not stored, it marks the model with the offset of that batch's
first message. A worker that loads a judge whose mark is still there lost the batches since:
their offsets may already be committed, so they are read again from the sketches topic (kept
for days) and applied before anything newer; the judge's record drops what it had applied.
"""

from __future__ import annotations

import contextlib
from typing import Any

from schemas.settings import Settings
from streams import json_read
from streams.input_refetch import read_input_range
from streams.judge_book import sketch_problem

__all__ = ["read_model_envelopes"]


def read_model_envelopes(
    settings: Settings, topic: str, partition: int, low: int, high: int, model: str
) -> list[tuple[int, dict[str, Any]]]:
    """(offset, envelope) of ``model``'s messages in ``topic[partition]``, ``low <= offset <
    high``, in offset order. Runs in a thread: it blocks until the range is read."""
    key = model.encode()
    found: list[tuple[int, dict[str, Any]]] = []
    messages = read_input_range(
        settings, topic, partition, low, high, who="a judge was catching up"
    )
    for event in messages:
        message = event.message
        if message.key == key and message.value:
            # A malformed message went to the dead-letter topic when the judge first read it.
            with contextlib.suppress(ValueError):
                envelope = json_read.loads_own(message.value)
                if sketch_problem(envelope) is None:
                    found.append((message.offset, envelope))
    return found
