"""What the AWS adapters share: lazily created clients and a botocore error read into its parts.

The shared clients (audience.aws) already retry throttling and 5xx answers a few times with backoff
(standard retry mode); what reaches an adapter is what those retries could not get past.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AwsError:
    code: str
    message: str
    status: int
    reason: str


def aws_error(error: Any) -> AwsError:
    """The parts of a botocore ClientError: error code, message, HTTP status and, where the service sends
    one, its `Reason`."""
    response = getattr(error, "response", None) or {}
    details = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    reason = response.get("Reason") or details.get("Reason") or ""
    return AwsError(
        code=str(details.get("Code") or "Unknown"),
        message=str(details.get("Message") or ""),
        status=int(status),
        reason=str(reason),
    )


def network_errors() -> tuple[type[BaseException], ...]:
    """botocore's transport faults: endpoint unreachable, connect or read timeouts, dropped connections."""
    from botocore.exceptions import ConnectionError, HTTPClientError

    return (ConnectionError, HTTPClientError)


class LazyClient:
    """Calls `factory` once, on first use."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return self._client
