"""The HTTP side of the JSON adapters: one lazily created httpx client per adapter, POSTs that turn a
transport fault into a Failed, and the body of an answer read without trusting it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from audience.providers.base import Failed, network_failure


@dataclass(frozen=True, slots=True)
class Answer:
    """What the platform answered: the HTTP status, the headers of interest and the JSON body (an empty
    dict when the body is not a JSON object)."""

    status: int
    body: dict[str, Any]
    retry_after: str | None = None


@dataclass
class JsonClient:
    """POSTs JSON with a per-adapter httpx.Client, created on first use (importing httpx costs ~50 ms, which
    a function that never sends should not pay). `transport` replaces the network in tests."""

    timeout: float
    transport: Any = None
    _client: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _http(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx

                    self._client = httpx.Client(timeout=self.timeout, transport=self.transport)
        return self._client

    def post(self, url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Answer | Failed:
        import httpx

        try:
            response = self._http().post(url, json=payload, headers=headers)
        except httpx.TransportError as error:  # timeouts, refused or dropped connections, broken protocol
            return network_failure(error)
        try:
            body = response.json()
        except ValueError:
            body = {}
        return Answer(response.status_code, body if isinstance(body, dict) else {}, response.headers.get("retry-after"))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def status_failure(answer: Answer, retry_after: float | None) -> Failed:
    """A refusal the platform did not explain in its own error format: judged by the HTTP status alone."""
    code = f"http_{answer.status}"
    if answer.status == 429:
        return Failed("rate_limited", code, f"HTTP {answer.status}", retry_after if retry_after is not None else 1.0)
    if answer.status >= 500 or answer.status in (408, 425):
        return Failed("retryable", code, f"HTTP {answer.status}")
    return Failed("permanent", code, f"HTTP {answer.status}")
