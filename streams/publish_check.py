"""Publishes that must not fail quietly: deltas, promoted references and alerts.

Faust's ``Topic.send`` hands back a future of the broker's answer. A message the broker
refuses (too large, not authorised, unknown topic) fails only that future, and Faust logs a
warning: the ingest recorded its input as done anyway, so the delta and the predictions in it
were lost for good, and a model whose deltas never fit (400+ features before the sketches topic
carried its own size limit) was simply never judged.

`confirm_published` waits for those answers and raises `PublishFailed` naming what was lost.
In an agent that ends the worker (`streams.agent_crash`) before the input is recorded as
done (a delta) or the alert in the ledger (an alert), so a restart publishes it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

__all__ = ["PublishFailed", "confirm_published"]


class PublishFailed(RuntimeError):
    """The broker refused a message the worker cannot do without."""


async def confirm_published(sent: Sequence[tuple[str, int, Awaitable[Any]]]) -> None:
    """Wait for every ``(what, size in bytes, future of Topic.send)``; raise on the first
    refusal."""
    for what, size, future in sent:
        try:
            await future
        except Exception as exc:
            raise PublishFailed(
                f"{what} ({size:,} bytes) was not published: {exc!r}. Its input is not "
                f"recorded as done; fix the cause (for a size error: the topic's "
                f"max.message.bytes) and restart the worker to publish it again"
            ) from exc
