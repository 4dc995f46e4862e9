"""One stack per test module for the outbound webhook tests (each test uses its own orgs), a receiver on
localhost that checks every signature, and a helper that publishes domain events on the stack's bus."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from audience.outbound.signing import verify
from tests.channels import Tenant, new_tenant
from tests.stacks import module_stack

# Retries a few milliseconds apart, so "down, then back" runs in a second; the 24-hour disable window
# scales with it (8,640 bases: 86 s here), so no endpoint is disabled by accident.
FAST_RETRY_BASE = "0.01"


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    with module_stack(WEBHOOK_RETRY_BASE_SECONDS=FAST_RETRY_BASE) as running:
        yield running


@pytest.fixture(scope="module")
def app(stack: Any) -> Any:
    from audience.api.app import create_app

    return create_app()


@pytest.fixture
def org(app: Any) -> Tenant:
    return new_tenant(app, "Acme", "ID")


@pytest.fixture
def other_org(app: Any) -> Tenant:
    return new_tenant(app, "Globex", "US")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that verifies each request's signature with `secret` (set it once the
    endpoint exists) and answers `answer(n)` to the n-th request (1-based); `None` drops the connection."""

    secret: str = ""
    answer: Callable[[int], int | None] = lambda n: 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self, port: int = 0) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signature = self.headers.get("Audience-Signature", "")
                with receiver.lock:
                    receiver.received.append(
                        Received(dict(self.headers.items()), body, verify(receiver.secret, signature, body))
                    )
                    code = receiver.answer(len(receiver.received))
                if code is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.event for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def add_endpoint(org: Tenant, receiver: Receiver, **fields: Any) -> dict[str, Any]:
    """An endpoint of the org pointed at `receiver`, whose secret the receiver then verifies with."""
    answer = org.client.post(f"/orgs/{org.org_id}/webhook-endpoints", json={"url": receiver.url, **fields})
    assert answer.status_code == 201, answer.text
    created = dict(answer.json())
    receiver.secret = created["secret"]
    return created


def publish(stack: Any, org_id: str, type_: str, event_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put one domain event on the stack's EventBus, in the envelope the publishers use."""
    from audience import clock
    from audience.events.catalogue import TYPES

    detail = {
        "id": event_id,
        "type": type_,
        "version": 1,
        "org_id": org_id,
        "occurred_at": clock.now_iso(),
        "data": data or {},
    }
    answer = stack.client("events").put_events(
        Entries=[
            {
                "EventBusName": stack.outputs["EventBusName"],
                "Source": TYPES[type_].source,
                "DetailType": type_,
                "Detail": json.dumps(detail),
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0, answer
    return detail
