"""Posting one delivery attempt: httpx, no redirects, connected only to public addresses, at most
`DEADLINE_SECONDS` in all (name resolution, connection, request and reading the answer) and at most
`MAX_RESPONSE_BYTES` of the answer read.

Each attempt uses its own client and connection (nothing is kept alive): the connection goes to the checked
IP address with the endpoint's name as Host and TLS server name, and a pooled connection would be keyed by
that IP, so a later request to another host on the same address could reuse a connection whose certificate
was checked for a different name."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from audience.outbound.addresses import BlockedAddressError, ip_literal, normal_host, resolve_public

TIMEOUT_SECONDS = 10.0  # each phase (connect, write, each read)
DEADLINE_SECONDS = 15.0  # the whole attempt
MAX_RESPONSE_BYTES = 4096
_USER_AGENT = "Audience-Webhooks/1"


@dataclass(frozen=True, slots=True)
class PostResult:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookPoster:
    """Posts bodies to endpoints. Unless `allow_private`, the host is resolved here, every address checked,
    and the connection made to the checked address (Host header and TLS name kept), so a DNS answer that
    changes between the check and the connection cannot steer the request inside the network. Never raises:
    anything that goes wrong is a failed attempt."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = TIMEOUT_SECONDS,
        deadline: float = DEADLINE_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._deadline = deadline
        self._transport = transport  # tests
        self._ssl: ssl.SSLContext | None = None

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostResult:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        outcome: list[tuple[int | None, str | None]] = []
        state: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome.append(self._post(url, body, headers, state))
            except BaseException as error:
                outcome.append((None, f"{type(error).__name__}: {error}"[:300]))

        worker = threading.Thread(target=run, name="webhook-post", daemon=True)
        worker.start()
        worker.join(self._deadline)
        if worker.is_alive() or not outcome:
            client = state.get("client")
            if client is not None:
                with contextlib.suppress(Exception):  # closing the connection ends the worker's blocked read
                    client.close()
            return PostResult(None, f"timeout: no answer within {self._deadline:g} s", elapsed())
        status_code, error = outcome[0]
        return PostResult(status_code, error, elapsed())

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], state: dict[str, Any]
    ) -> tuple[int | None, str | None]:
        headers = {**headers, "Content-Type": "application/json", "User-Agent": _USER_AGENT}
        extensions: dict[str, str] = {}
        target = url
        if not self._allow_private:
            parts = urlsplit(url)
            host = parts.hostname or ""
            try:
                address = resolve_public(host, parts.port or (443 if parts.scheme == "https" else 80))
            except BlockedAddressError as error:
                return None, f"blocked: {error}"
            netloc = f"[{address}]" if ":" in address else address
            if parts.port:
                netloc += f":{parts.port}"
            target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
            # The name as resolved: ASCII (punycode), without a trailing dot, in the Host header and TLS name.
            name = normal_host(host) if ip_literal(host) is None else host
            headers["Host"] = (f"[{name}]" if ":" in name else name) + (f":{parts.port}" if parts.port else "")
            extensions["sni_hostname"] = name
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        client = httpx.Client(
            timeout=self._timeout,
            follow_redirects=False,
            verify=self._ssl,
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=self._transport,
        )
        state["client"] = client
        try:
            with client, client.stream("POST", target, content=body, headers=headers, extensions=extensions) as answer:
                # Only the status counts: read a little of the body (so a small answer completes), never all of it.
                read = 0
                with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
                    for chunk in answer.iter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES:
                            break
                return answer.status_code, None
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}"[:300]
