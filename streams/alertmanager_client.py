"""The HTTP edge of the Alertmanager bridge: endpoint validation, one POST, backoff delays.

Standard library only (urllib), so proxies come from the usual environment variables.
"""

from __future__ import annotations

import http.client
import json
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "REJECTED_STATUSES",
    "AlertmanagerClient",
    "AlertmanagerRejected",
    "AlertmanagerUnavailable",
    "Backoff",
    "BridgeError",
    "alerts_endpoint",
]

REJECTED_STATUSES: Final = frozenset({400, 422})
"""Alertmanager's answers for a payload it refuses; anything else may heal (auth, proxy, 5xx)."""


class BridgeError(RuntimeError):
    """Root of the bridge's errors; raised as such when it cannot start (bad URL, no topic)."""


class AlertmanagerUnavailable(BridgeError):
    """Alertmanager could not be reached or answered an error that may heal: retry later."""


class AlertmanagerRejected(BridgeError):
    """Alertmanager refused the payload (HTTP 400/422): retrying would not help."""


def alerts_endpoint(url: str) -> str:
    """The v2 alerts endpoint of an Alertmanager base URL (which may carry a route prefix).

    >>> alerts_endpoint("http://am.example:9093/")
    'http://am.example:9093/api/v2/alerts'
    >>> alerts_endpoint("am.example:9093")
    Traceback (most recent call last):
    ...
    streams.alertmanager_client.BridgeError: Alertmanager URL 'am.example:9093' must start ...
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BridgeError(
            f"Alertmanager URL {url!r} must start with http:// or https:// and name a host, "
            f"e.g. http://127.0.0.1:9093"
        )
    if parsed.query or parsed.fragment:
        raise BridgeError(f"Alertmanager URL {url!r} must not have a query or fragment")
    path = parsed.path.rstrip("/")
    if path.endswith(("/api/v2/alerts", "/api/v2", "/api/v1/alerts")):
        raise BridgeError(
            f"pass Alertmanager's base URL, not an API path: {url!r} -> "
            f"{url[: url.rfind('/api/')]!r}"
        )
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path + "/api/v2/alerts", "", ""))


class AlertmanagerClient:
    """Posts alerts to one Alertmanager; ``urlopen`` is injectable for tests."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 10.0,
        urlopen: Callable[..., Any] = urllib.request.urlopen,
    ) -> None:
        self.endpoint = alerts_endpoint(url)
        self.timeout_seconds = timeout_seconds
        self._urlopen = urlopen

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Raises AlertmanagerRejected (400/422) or AlertmanagerUnavailable (anything else)."""
        request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(alerts).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "driftline-bridge"},
        )
        try:
            with self._urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode(errors="replace").strip() if exc.fp else ""
            message = f"{self.endpoint} answered HTTP {exc.code}: {detail or exc.reason}"
            if exc.code in REJECTED_STATUSES:
                raise AlertmanagerRejected(message) from None
            if exc.code in (401, 403, 404, 405):
                message += " (check --url and any proxy or authentication in front of it)"
            raise AlertmanagerUnavailable(message) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertmanagerUnavailable(f"cannot reach {self.endpoint}: {reason}") from None


class Backoff:
    """Doubling delays with jitter (each in [delay/2, delay]), capped; ``reset`` on success.

    >>> backoff = Backoff(0.5, 4.0, rng=random.Random(1))
    >>> [round(backoff.next_delay(), 2) for _ in range(5)]
    [0.28, 0.92, 1.76, 2.51, 2.99]
    """

    def __init__(self, base_seconds: float, max_seconds: float, *, rng: random.Random) -> None:
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.base_seconds * 2.0 ** min(self.failures, 30), self.max_seconds)
        self.failures += 1
        return delay * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0
