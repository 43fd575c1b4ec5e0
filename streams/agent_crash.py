"""What a worker does when one of its agents raises: it exits, loudly, like ``kill -9``.

Faust's default commits the consumer's offsets, then restarts the agent inside the running
worker. The commit can pass the batch the agent was folding (taken from the stream, never
published): lost input. And an error that repeats leaves a worker that serves ``/metrics``
and holds its partitions but judges nothing: the judge of ``driftline demo`` crashed on its
first table write (a changelog topic missing from the consumer's metadata) and no alert ever
fired, with nothing but a log line to say so.

Exiting at once commits nothing more. Whatever restarts the worker (systemd, Kubernetes, the
demo's process check) gets one that recovers its tables from the changelogs and replays the
uncommitted input: the path the ``kill -9`` tests cover.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, NoReturn

__all__ = ["AGENT_CRASH_EXIT_CODE", "exit_on_agent_crash"]

AGENT_CRASH_EXIT_CODE: Final = 70
"""``EX_SOFTWARE``: an internal error; distinct from a usage or configuration error (1, 2)."""

log = logging.getLogger("driftline.worker")

AgentErrorHandler = Callable[[Any, BaseException], Coroutine[Any, Any, None]]


def exit_on_agent_crash(exit_now: Callable[[int], NoReturn] = os._exit) -> AgentErrorHandler:
    """A handler for every agent's errors (``App._on_agent_error``): log, end the process.

    ``exit_now`` is ``os._exit`` (no cleanup: a graceful stop would commit offsets of input
    the crashed batch never published); tests pass a recorder.
    """

    async def on_error(agent: Any, exc: BaseException) -> None:
        name = getattr(agent, "name", repr(agent))
        log.critical(
            "agent %s crashed: %r. The worker exits (code %d) so that a restart recovers its "
            "state from the changelogs and replays the uncommitted input.",
            name, exc, AGENT_CRASH_EXIT_CODE, exc_info=exc,
        )  # fmt: skip
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        exit_now(AGENT_CRASH_EXIT_CODE)

    return on_error
