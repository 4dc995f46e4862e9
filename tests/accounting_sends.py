"""Accounting scenarios of sending: a marketing broadcast and a stream of transactional sends through a
stand-in WhatsApp Cloud API that rate-limits, fails in bursts and loses answers, then the status receipts of
what was sent; each `check` recounts what came out against what was accepted (see tests/accounting.py).

Both scenarios follow the shape `benchmarks/reliability.py` drives: `__init__` sets up (contacts through
the bulk create route, a connection, a broadcast), `start()` accepts the work through the stack's HTTP API,
`next_phase()` posts follow-on work after each drain, `check()` returns the ledgers once everything drained.
Every API and webhook call goes through `stack.http_app`, retried on 5xx and 429 as a real caller would
(the same Idempotency-Key; Meta sends the same webhook again), so injected faults apply to them.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi.testclient import TestClient

from tests.accounting import Ledger
from tests.channels import APP_SECRET, VERIFY_TOKEN, meta_signature, whatsapp_status

RETRYABLE = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 8  # a caller's tries of one call: more than the faults' per-request cap
SENT_STATUSES = ("SENT", "DELIVERED", "READ")
STATUSES_PER_CALL = 10  # Meta batches statuses into one webhook call
_numbers = itertools.count(1)


# -- the provider's stand-in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderFaults:
    """How the stand-in misbehaves, per request: 429 with Retry-After, a burst of 500/503 answers (1 to 3
    requests in a row), or a lost answer (the message is accepted and recorded, then the connection is
    closed without a response: the sender cannot know it went out)."""

    rate_limited: float = 0.0
    server_error: float = 0.0
    response_lost: float = 0.0
    retry_after: int = 1


class GraphStandIn:
    """A stand-in Graph API on 127.0.0.1 (POST /{version}/{phone_number_id}/messages), with seeded faults
    per phone number id. `accepted[phone_number_id]` lists (to, wamid) of every message it took."""

    def __init__(self, seed: int = 0) -> None:
        self.accepted: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.injected: Counter[str] = Counter()
        self.faults: dict[str, ProviderFaults] = {}
        self.lose_answers: Counter[str] = Counter()  # phone number id → answers still to lose, at once
        self._burst: dict[str, int] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._next = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                number = self.path.strip("/").split("/")[1] if self.path.count("/") >= 2 else ""
                status, answer, headers = stub.answer(number, body)
                if status == 0:
                    self.close_connection = True  # the answer is lost: no response at all
                    return
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="graph-stand-in", daemon=True)
        self.thread.start()

    def answer(self, number: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            faults = self.faults.get(number, ProviderFaults())
            if self._burst.get(number):
                self._burst[number] -= 1
                self.injected["server_error"] += 1
                return 503, _graph_error(2, "Service temporarily unavailable", transient=True), {}
            draw = self._random.random()
            if draw < faults.rate_limited:
                self.injected["rate_limited"] += 1
                error = _graph_error(130429, "Rate limit hit")
                return 429, error, {"Retry-After": str(faults.retry_after)}
            draw -= faults.rate_limited
            if draw < faults.server_error:
                self.injected["server_error"] += 1
                self._burst[number] = self._random.randint(0, 2)
                return 500, {"error": {"message": "An unknown error occurred", "type": "OAuthException"}}, {}
            self._next += 1
            wamid = f"wamid.ACCT{self._next:010d}"
            self.accepted[number].append((str(body.get("to")), wamid))
            if self.lose_answers[number] > 0:
                self.lose_answers[number] -= 1
                return 0, {}, {}
            if draw - faults.server_error < faults.response_lost:
                self.injected["response_lost"] += 1
                return 0, {}, {}
            answer = {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            }
            return 200, answer, {}

    def copies(self, number: str) -> Counter[str]:
        """Messages accepted for `number`, by recipient address."""
        with self._lock:
            return Counter(to for to, _ in self.accepted[number])

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _graph_error(code: int, message: str, *, transient: bool = False) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, "is_transient": transient}}


_STAND_IN: list[GraphStandIn] = []


def graph_stand_in(seed: int = 0) -> GraphStandIn:
    """The process's Graph API stand-in (GRAPH_API_URL points at it; one per process, as the variable is)."""
    import os

    from audience import container

    if not _STAND_IN:
        _STAND_IN.append(GraphStandIn(seed))
    stand_in = _STAND_IN[0]
    if os.environ.get("GRAPH_API_URL") != stand_in.url:
        os.environ["GRAPH_API_URL"] = stand_in.url
        container.reset()
    return stand_in


def close_graph_stand_in() -> None:
    import os

    while _STAND_IN:
        _STAND_IN.pop().close()
    os.environ.pop("GRAPH_API_URL", None)


# -- calling the API as a client does ------------------------------------------------------------------


class Caller:
    """An HTTP client of the stack's API that retries 5xx and 429 answers with the same request (and so
    the same Idempotency-Key), honouring Retry-After up to a second."""

    def __init__(self, stack: Any, headers: dict[str, str] | None = None) -> None:
        self.http = TestClient(stack.http_app, headers=headers or {}, raise_server_exceptions=False)
        self.retried = 0

    def call(self, method: str, url: str, **options: Any) -> Any:
        answer = None
        for attempt in range(ATTEMPTS):
            answer = self.http.request(method, url, **options)
            if answer.status_code not in RETRYABLE:
                return answer
            self.retried += 1
            wait = answer.headers.get("retry-after")
            time.sleep(min(float(wait), 1.0) if wait and wait.isdigit() else 0.02 * (attempt + 1))
        return answer


def _ok(answer: Any, *statuses: int) -> dict[str, Any]:
    if answer.status_code not in (statuses or (200,)):
        raise AssertionError(f"{answer.request.method} {answer.request.url}: {answer.status_code} {answer.text}")
    return dict(answer.json())


def _recipients(caller: Caller, broadcast_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"take": 100, **({"cursor": cursor} if cursor else {})}
        page = _ok(caller.call("GET", f"/orgs/c/broadcasts/{broadcast_id}/recipients", params=params))
        rows.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


def _count_messages(ledger: Ledger, expected: dict[str, dict[str, Any]], copies: Counter[str]) -> None:
    """Each recipient (by address) expected once at the provider: lost, duplicates counted or not."""
    ledger.items_in = len(expected)
    for to, row in expected.items():
        got = copies.get(to, 0)
        if got == 0:
            ledger.lost.append(row["id"])
            continue
        ledger.items_out += 1
        if got > 1:
            ledger.duplicates += got - 1
            if row.get("possible_duplicate"):
                ledger.counted_duplicates += got - 1
            else:
                ledger.uncounted_duplicates.append(row["id"])
    unknown = sum(n for to, n in copies.items() if to not in expected)
    if unknown:
        ledger.notes.append(f"{unknown} message(s) at the provider to addresses no recipient has")
        ledger.uncounted_duplicates.extend(sorted(to for to in copies if to not in expected))


def _compare_stats(ledger: Ledger, stats: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The broadcast's counters against a recount of its recipient rows."""
    statuses = Counter(row["status"].lower() for row in rows)
    for status, stored in stats["by_status"].items():
        ledger.compare(f"by_status.{status}", stored, statuses.get(status, 0))
    sent = [row for row in rows if row.get("provider_message_id")]
    ledger.compare("total", stats["total"], len(rows))
    ledger.compare("sent", stats["sent"], len(sent))
    ledger.compare("delivered", stats["delivered"], sum(row["status"] in ("DELIVERED", "READ") for row in rows))
    ledger.compare("read", stats["read"], statuses.get("read", 0))
    ledger.compare(
        "possible_duplicates", stats["possible_duplicates"], sum(bool(r.get("possible_duplicate")) for r in sent)
    )


# -- WhatsApp on a connection of its own ------------------------------------------------------------------


class _WhatsAppSetup:
    """A scenario's org client, its WhatsApp connection (a phone number id of its own at the stand-in) and
    `size` contacts with phone numbers, created through the bulk route."""

    def __init__(self, stack: Any, tenant: Any, *, size: int, seed: int, options: dict[str, Any]) -> None:
        self.stack = stack
        self.tenant = tenant
        self.size = size
        self.random = random.Random(seed)
        self.graph = options.get("graph") or graph_stand_in(seed)
        self.caller = Caller(stack, dict(tenant.headers))
        self.hooks = Caller(stack)
        self.number = f"77{seed % 1000:03d}{next(_numbers):05d}"
        self.graph.faults[self.number] = options.get("provider_faults", ProviderFaults())
        connection = _ok(
            self.caller.call(
                "POST",
                "/orgs/c/connections",
                json={
                    "platform": "whatsapp",
                    "name": f"WhatsApp {self.number}",
                    "settings": {
                        "phone_number_id": self.number,
                        "business_account_id": f"9{self.number}",
                        "messages_per_second": int(options.get("rate", 500)),
                    },
                    "secrets": {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "access_token": "EAAG-acct"},
                },
            ),
            201,
        )
        self.connection_id = connection["id"]
        # Each contact's number is unique to this scenario: the stand-in's records are read per address.
        self.phones = [f"+62812{self.number[-2:]}{n:05d}" for n in range(size)]
        self.contact_ids: dict[str, str] = {}
        for start in range(0, size, 1000):
            chunk = [
                {"first_name": f"R{n}", "phone": p} for n, p in enumerate(self.phones[start : start + 1000], start)
            ]
            results = _ok(self.caller.call("POST", "/orgs/c/contacts/bulk", json={"contacts": chunk}))["results"]
            for item, result in zip(chunk, results, strict=True):
                if result["action"] != "created":
                    raise AssertionError(f"contact {item['phone']} not created: {result}")
                self.contact_ids[item["phone"]] = result["contact_id"]
        self.address = {contact_id: phone.removeprefix("+") for phone, contact_id in self.contact_ids.items()}

    def template(self) -> dict[str, Any]:
        return {
            "channel": "whatsapp",
            "connection_id": self.connection_id,
            "whatsapp": {"name": "promo", "language": "en_US", "body": [{"kind": "contact_first_name"}]},
        }

    def post_statuses(self, items: list[tuple[str, str, str]]) -> int:
        """Status webhooks for (wamid, recipient, status) items, STATUSES_PER_CALL per call, each call
        signed and sent again on a 5xx as Meta does; the number of calls made."""
        calls = 0
        at = int(time.time())
        for start in range(0, len(items), STATUSES_PER_CALL):
            chunk = items[start : start + STATUSES_PER_CALL]
            payload = whatsapp_status(self.number, chunk[0][0], chunk[0][2], recipient=chunk[0][1], at=at)
            value = payload["entry"][0]["changes"][0]["value"]
            template = value["statuses"][0]
            value["statuses"] = [
                {**template, "id": wamid, "status": status, "recipient_id": to, "timestamp": str(at + n)}
                for n, (wamid, to, status) in enumerate(chunk)
            ]
            body = json.dumps(payload).encode()
            headers = {"X-Hub-Signature-256": meta_signature(body), "Content-Type": "application/json"}
            answer = self.hooks.call("POST", f"/webhooks/{self.connection_id}", content=body, headers=headers)
            _ok(answer)
            calls += 1
        return calls


def _receipts(
    rng: random.Random, rows: list[dict[str, Any]], address: dict[str, str]
) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """Statuses for sent rows: every one delivered, about half read; some sent twice, some read before
    delivered. Returns the items in posting order and the status each row must end in."""
    items: list[tuple[str, str, str]] = []
    expected: dict[str, str] = {}
    for row in rows:
        wamid, to = row["provider_message_id"], address[row["contact_id"]]
        read = rng.random() < 0.5
        sequence = ["delivered", "read"] if read else ["delivered"]
        if read and rng.random() < 0.2:
            sequence.reverse()  # out of order
        if rng.random() < 0.2:
            sequence.append(sequence[0])  # repeated
        items.extend((wamid, to, status) for status in sequence)
        expected[row["id"]] = "READ" if read else "DELIVERED"
    rng.shuffle(items)  # statuses of different messages interleave
    return items, expected


def _check_receipts(name: str, expected: dict[str, str], rows: list[dict[str, Any]], posted: int) -> Ledger:
    ledger = Ledger(name, items_in=len(expected))
    by_id = {row["id"]: row for row in rows}
    for row_id, status in expected.items():
        found = by_id.get(row_id, {}).get("status")
        if found == status:
            ledger.items_out += 1
        else:
            ledger.lost.append(f"{row_id}: {found}, expected {status}")
    ledger.notes.append(f"{posted} status webhook call(s)")
    return ledger


# -- the scenarios ----------------------------------------------------------------------------------------


class _WithReceipts:
    """A scenario's second phase: the statuses the platform posts for every message sent (some repeated,
    some out of order), posted once the sends have drained."""

    setup: _WhatsAppSetup
    broadcast_id: str
    phase: int
    expected_receipts: dict[str, str]
    status_calls: int

    def next_phase(self) -> bool:
        self.phase += 1
        if self.phase > 1:
            return False
        rows = [r for r in _recipients(self.setup.caller, self.broadcast_id) if r.get("provider_message_id")]
        items, self.expected_receipts = _receipts(self.setup.random, rows, self.setup.address)
        self.status_calls = self.setup.post_statuses(items)
        return True


class MarketingScenario(_WithReceipts):
    """A marketing WhatsApp broadcast to `size` contacts (created through POST /orgs/c/contacts/bulk; the
    audience is a static segment of them), scheduled through the API; then status receipts (delivered,
    read; some repeated, some out of order) for every message sent. Options: `provider_faults`
    (ProviderFaults), `rate` (the connection's messages_per_second, default 500), `graph` (a
    GraphStandIn; default the process's own)."""

    name = "marketing"

    def __init__(self, stack: Any, tenant: Any, *, size: int, seed: int, **options: Any) -> None:
        self.setup = _WhatsAppSetup(stack, tenant, size=size, seed=seed, options=options)
        caller = self.setup.caller
        # The audience is a static segment of the scenario's own contacts: other flows may add contacts to
        # the same org meanwhile.
        segment = _ok(
            caller.call("POST", "/orgs/c/segments", json={"name": f"Accounting {seed}", "type": "static"}), 201
        )
        members = list(self.setup.contact_ids.values())
        for start in range(0, len(members), 1000):
            chunk = members[start : start + 1000]
            added = _ok(caller.call("POST", f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": chunk}))
            if added["changed"] != len(chunk):
                raise AssertionError(f"segment {segment['id']}: {added}")
        created = caller.call(
            "POST",
            "/orgs/c/broadcasts",
            json={
                "type": "marketing",
                "name": "Accounting",
                "segment_ids": [segment["id"]],
                "channels": [self.setup.template()],
            },
        )
        self.broadcast_id = _ok(created, 201)["id"]
        self.phase = 0
        self.expected_receipts: dict[str, str] = {}
        self.status_calls = 0

    def start(self) -> None:
        answer = self.setup.caller.call("POST", f"/orgs/c/broadcasts/{self.broadcast_id}/schedule", json={})
        if answer.status_code != 200:
            # A retry of a call that scheduled before failing finds it scheduled already.
            status = _ok(self.setup.caller.call("GET", f"/orgs/c/broadcasts/{self.broadcast_id}"))["status"]
            if status not in ("SCHEDULED", "SENDING", "SENT"):
                raise AssertionError(f"schedule: {answer.status_code} {answer.text}; broadcast {status}")

    def check(self) -> list[Ledger]:
        caller = self.setup.caller
        rows = _recipients(caller, self.broadcast_id)
        view = _ok(caller.call("GET", f"/orgs/c/broadcasts/{self.broadcast_id}"))
        sends = Ledger("marketing broadcast")
        by_contact: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_contact[row["contact_id"]].append(row)
        expected: dict[str, dict[str, Any]] = {}
        for phone, contact_id in self.setup.contact_ids.items():
            found = by_contact.get(contact_id, [])
            if len(found) != 1:
                sends.counter_mismatches.append(f"recipient rows of contact {contact_id}: {len(found)}, expected 1")
            expected[phone.removeprefix("+")] = found[0] if found else {"id": f"contact {contact_id} (no row)"}
        _count_messages(sends, expected, self.setup.graph.copies(self.setup.number))
        _compare_stats(sends, view["stats"], rows)
        if view["status"] != "SENT":
            sends.counter_mismatches.append(f"broadcast status: {view['status']}, expected SENT")
        sends.notes.append(f"broadcast {self.broadcast_id}; statuses {dict(Counter(r['status'] for r in rows))}")
        receipts = _check_receipts("marketing receipts", self.expected_receipts, rows, self.status_calls)
        return [sends, receipts]


class TransactionalScenario(_WithReceipts):
    """`size` transactional sends of an ACTIVE WhatsApp broadcast through POST .../send, each with its own
    Idempotency-Key and contact, a third of them in the background (202, TransactionalQueue); a caller that
    retries 5xx and 429 with the same key. Then receipts for what was sent. Same options as
    MarketingScenario."""

    name = "transactional"

    def __init__(self, stack: Any, tenant: Any, *, size: int, seed: int, **options: Any) -> None:
        self.setup = _WhatsAppSetup(stack, tenant, size=size, seed=seed, options=options)
        caller = self.setup.caller
        created = caller.call(
            "POST",
            "/orgs/c/broadcasts",
            json={"type": "transactional", "name": "Receipts", "channels": [self.setup.template()]},
        )
        self.broadcast_id = _ok(created, 201)["id"]
        _ok(caller.call("POST", f"/orgs/c/broadcasts/{self.broadcast_id}/activate"))
        self.accepted: dict[str, dict[str, Any]] = {}  # Idempotency-Key → the answer's body
        self.refused: dict[str, str] = {}
        self.keys = [f"acct-{self.broadcast_id}-{n}" for n in range(size)]
        self.phase = 0
        self.expected_receipts: dict[str, str] = {}
        self.status_calls = 0

    def start(self) -> None:
        for n, (key, phone) in enumerate(zip(self.keys, self.setup.phones, strict=True)):
            body = {"contact_id": self.setup.contact_ids[phone], "background": n % 3 == 2}
            answer = self.setup.caller.call(
                "POST", f"/orgs/c/broadcasts/{self.broadcast_id}/send", json=body, headers={"Idempotency-Key": key}
            )
            if answer.status_code in (200, 202):
                self.accepted[key] = answer.json()
            else:
                self.refused[key] = f"{answer.status_code} {answer.text[:200]}"

    def check(self) -> list[Ledger]:
        caller = self.setup.caller
        rows = _recipients(caller, self.broadcast_id)
        view = _ok(caller.call("GET", f"/orgs/c/broadcasts/{self.broadcast_id}"))
        sends = Ledger("transactional sends")
        by_send: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_send[row["id"].split("#")[0]].append(row)
        expected: dict[str, dict[str, Any]] = {}
        for key, answer in self.accepted.items():
            found = by_send.get(answer["send_id"], [])
            if len(found) != 1:
                sends.counter_mismatches.append(f"recipient rows of send {answer['send_id']}: {len(found)}")
            contact_id = self.setup.contact_ids[self.setup.phones[self.keys.index(key)]]
            expected[self.setup.address[contact_id]] = found[0] if found else {"id": f"{key} (no row)"}
        for key, reason in self.refused.items():
            sends.notes.append(f"{key} refused: {reason}")
        strays = len(by_send) - len({a["send_id"] for a in self.accepted.values()})
        if strays:
            sends.counter_mismatches.append(f"sends no accepted key made: {strays}")
        _count_messages(sends, expected, self.setup.graph.copies(self.setup.number))
        sends.items_in = len(self.accepted)
        _compare_stats(sends, view["stats"], rows)
        sends.notes.append(
            f"broadcast {self.broadcast_id}; {len(self.refused)} refused; API retries {self.setup.caller.retried}"
        )
        receipts = _check_receipts("transactional receipts", self.expected_receipts, rows, self.status_calls)
        return [sends, receipts]
