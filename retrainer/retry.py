"""Retries with exponential backoff around MLflow calls, and which failures are transient.

A transient failure (connection refused, timeout, a locked SQLite file, a 5xx) is retried;
after ``attempts`` tries :class:`RegistryUnavailable` tells the service to leave the alert
uncommitted. Refusals (unknown model, bad parameter, already exists) are raised at once.

>>> delays = []
>>> calls = iter([ConnectionError("refused"), ConnectionError("refused"), "ok"])
>>> def flaky():
...     outcome = next(calls)
...     if isinstance(outcome, Exception):
...         raise outcome
...     return outcome
>>> Retrying(attempts=3, backoff_seconds=0.5, sleep=delays.append).call("ping", flaky), delays
('ok', [0.5, 1.0])
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from retrainer.errors import RegistryUnavailable

__all__ = ["REFUSALS", "Retrying", "error_code", "is_transient", "quiet_mlflow_http_retries"]

REFUSALS: Final = frozenset(
    {
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_PARAMETER_VALUE",
        "INVALID_STATE",
        "BAD_REQUEST",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "NOT_FOUND",
    }
)
_MISSING_OR_FORBIDDEN: Final = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
T = TypeVar("T")
log = logging.getLogger("driftline.retrainer.registry")


def quiet_mlflow_http_retries() -> None:
    """Let the retrainer own retries: MLflow's HTTP client would otherwise retry each request
    for minutes on its own. Values already set in the environment are kept."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def error_code(exc: BaseException) -> str | None:
    """MLflow's error code of ``exc`` (``RESOURCE_DOES_NOT_EXIST``...), None for others."""
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed."""
    if type(exc).__name__ == "MlflowException" or hasattr(exc, "error_code"):
        return error_code(exc) not in REFUSALS
    if isinstance(exc, _MISSING_OR_FORBIDDEN):
        return False  # a missing artifact stays missing
    return isinstance(exc, OSError) or (
        type(exc).__name__ in ("OperationalError", "ConnectionError", "Timeout")
    )


class Retrying:
    """Calls a function, retrying transient failures with doubling delays."""

    def __init__(
        self,
        *,
        attempts: int = 5,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        target: str = "MLflow",
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.sleep = sleep
        self.target = target
        self.failures = 0
        """Transient failures seen so far (each retried or given up on)."""

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        delay = self.backoff_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.failures += 1
                if attempt == self.attempts:
                    raise RegistryUnavailable(
                        f"{self.target} failed to {what} {attempt} times "
                        f"({type(exc).__name__}: {str(exc)[:300]}); check the server or "
                        f"DRIFTLINE_MLFLOW__TRACKING_URI"
                    ) from exc
                log.warning(
                    "mlflow_retry what=%r attempt=%d/%d delay_s=%.2f error=%s",
                    what, attempt, self.attempts, delay, str(exc)[:200],
                )  # fmt: skip
                self.sleep(delay)
                delay = min(delay * 2, self.backoff_max_seconds)
        raise AssertionError("unreachable")
