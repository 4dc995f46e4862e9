"""Loopback load: requests/s and latency of the local API over real HTTP as ratios to GET /health, and the
outcomes of an API key flood, an OTP flood at one phone and a burst of WhatsApp status callbacks.

The application's stack (template.yaml, Stage=bench, moto in process) is served by uvicorn on 127.0.0.1 as
`make dev` serves it (devstack's API Gateway stand-in in front of the functions), with a local stand-in of
the Graph API for WhatsApp sends. Nothing leaves the machine and every run is bounded.

1. **Throughput.** One load process (spawned, so that it does not share the server's interpreter) runs
   `--concurrency` threads, each with its own keep-alive connection, against one endpoint at a time:
   GET /health (the empty endpoint: no authentication, no AWS request), an authenticated GET of a contact,
   POST .../send of a transactional broadcast with `background: true`, and a signed WhatsApp status
   webhook. `--rounds` rounds of `--seconds / --rounds` seconds per endpoint, each round in a rotated order
   after one short warm-up round; per round each endpoint's requests/s is divided by /health's of the same
   round, so the machine's noise is shared. Reported: the medians over rounds (requests/s, ratio), and
   p50/p95 latency over every timed request. What the calls queue is discarded after each call (only the
   acknowledgement is timed). The rounds run on a stack of their own: moto's DynamoDB copies every table a
   transaction touches, so the send (one transaction a call) slows as its table fills, which is moto's
   cost rather than the application's.
2. **Outcomes** (behaviour, the same scenarios tests/reliability/test_load_limits.py asserts at small
   sizes): an org's key with a small `rate_limit_per_minute` flooded from threads while a second org makes
   the same calls at the same time (429s with Retry-After for the first, none for the second); an OTP flood
   at one phone through a transactional broadcast with the default `destination_rate_limit` while another
   phone gets its codes; `--callbacks` signed status callbacks (sent, delivered, read and a late repeated
   delivered for each of `--callbacks / 4` messages of a marketing broadcast, all shuffled) posted
   concurrently, then the queues drained: every callback answered 200 and run by the inbound function
   (none dead-lettered), every recipient READ, and the counters equal to a recount of the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"
ENDPOINTS = ("health", "contact", "send", "webhook")
LABELS = {
    "health": "GET /health (empty endpoint)",
    "contact": "GET /orgs/c/contacts/{id} (authenticated)",
    "send": "POST /orgs/c/broadcasts/{id}/send (background)",
    "webhook": "POST /webhooks/{id} (signed WhatsApp status)",
}
WARM_UP_SECONDS = 0.5
_phone_number_ids = iter(range(710_000_001, 710_999_999))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each endpoint once a round, rotated)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (each its own connection)")
    parser.add_argument("--callbacks", type=int, default=1000, help="status callbacks in the burst (even)")
    parser.add_argument("--output", type=Path, default=RESULTS / "load.json")


# -- the served stack ------------------------------------------------------------------------------------


@dataclass
class Tenant:
    """An org and an HTTP client of the served API that sends one of its keys."""

    org_id: str
    api_key: str
    client: Any  # httpx.Client

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Served:
    """The stack, the URL it is served at on 127.0.0.1, and the Graph API stand-in it sends WhatsApp to."""

    stack: Any
    url: str
    graph: Any

    def client(self, api_key: str | None = None, *, connections: int = 16) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, limits=limits)

    def tenant(self, name: str, *, country: str = "ID", rate_limit_per_minute: int | None = None) -> Tenant:
        """A new org; its client sends a new key with `rate_limit_per_minute` when given, else the org's
        first key (the default budget)."""
        from audience import admin

        created = admin.create_org(name, default_country=country)
        key, client = created["api_key"], self.client(created["api_key"])
        if rate_limit_per_minute is not None:
            made = client.post(
                "/orgs/c/api-keys", json={"name": "load", "rate_limit_per_minute": rate_limit_per_minute}
            )
            expect(made, 201)
            client.close()
            key = made.json()["key"]
            client = self.client(key)
        return Tenant(created["org_id"], key, client)

    def drain(self, timeout: float = 600) -> tuple[float, dict[str, int]]:
        """Run every queue and stream until idle: the seconds it took, and the records each source gave."""
        began = time.perf_counter()
        counts = self.stack.drain(timeout=timeout)
        return time.perf_counter() - began, counts

    def discard_queued(self) -> None:
        """Empty the queues the timed rounds filled (background sends, webhook calls) without running them."""
        sqs = self.stack.client("sqs")
        for output in ("InboundQueueUrl", "TransactionalQueueUrl"):
            sqs.purge_queue(QueueUrl=self.stack.outputs[output])


def expect(answer: Any, status: int) -> Any:
    if answer.status_code != status:
        raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")
    return answer.json() if answer.content else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(stage: str = "bench") -> Iterator[Served]:
    """The application's stack on moto, served over HTTP on a free 127.0.0.1 port, WhatsApp sends going to
    a local Graph API stand-in."""
    import uvicorn

    from audience import container
    from devstack.testing import local_stack
    from tests.channels import GraphStub

    graph = GraphStub()
    try:
        with local_stack(str(TEMPLATE), parameters={"Stage": stage}) as stack:
            # The functions' JSON logs and metrics would flood the output; local_stack puts the environment back.
            # moto lets a queue be purged once a minute, as SQS does; the timed rounds purge after each call.
            os.environ.update(
                GRAPH_API_URL=graph.url,
                POWERTOOLS_LOG_LEVEL="WARNING",
                POWERTOOLS_METRICS_DISABLED="true",
                MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR="false",
            )
            container.reset()
            port = _free_port()
            server = uvicorn.Server(uvicorn.Config(stack.http_app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, name="api-server", daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.02)
            if not server.started:
                raise RuntimeError("the API server did not start")
            try:
                yield Served(stack, f"http://127.0.0.1:{port}", graph)
            finally:
                server.should_exit = True
                thread.join(10)
                container.reset()
    finally:
        graph.close()


def concurrently(calls: list[Callable[[], Any]], workers: int) -> list[Any]:
    """Run the calls on `workers` threads; their results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


def _retry_after(answer: Any) -> int | None:
    value = answer.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


def tally(answers: list[Any]) -> dict[str, Any]:
    """Answers by class: 2xx, 429 (and how many of those carry Retry-After, with its range), other."""
    limited = [a for a in answers if a.status_code == 429]
    waits = [w for a in limited if (w := _retry_after(a)) is not None]
    return {
        "requests": len(answers),
        "2xx": sum(1 for a in answers if 200 <= a.status_code < 300),
        "429": len(limited),
        "other": sum(1 for a in answers if a.status_code != 429 and not 200 <= a.status_code < 300),
        "429_with_retry_after": len(waits),
        "retry_after_s": [min(waits), max(waits)] if waits else None,
    }


def _fresh_minute(room: float) -> None:
    """Wait for the next minute when fewer than `room` seconds are left in this one (the key's window)."""
    left = 60 - time.time() % 60
    if left < room:
        time.sleep(left + 0.05)


# -- scenarios -------------------------------------------------------------------------------------------


def key_flood(served: Served, *, requests: int, limit: int, workers: int, align: bool = True) -> dict[str, Any]:
    """An org's key with `limit` requests a minute sends `requests` GETs from `workers` threads while another
    org (default budget) sends as many at the same time. `align` waits for a fresh minute first, so the
    flood falls in one window of the key."""
    flooded = served.tenant("Flooded", rate_limit_per_minute=limit)
    other = served.tenant("Unaffected")
    with served.client(_first_key(flooded)) as setup:
        mine = expect(setup.post("/orgs/c/contacts", json={"first_name": "A", "phone": "+6281100000001"}), 201)
    theirs = expect(other.client.post("/orgs/c/contacts", json={"first_name": "B", "phone": "+6281100000002"}), 201)
    if align:
        _fresh_minute(room=20)
    calls: list[Callable[[], Any]] = []
    for _ in range(requests):
        calls.append(lambda: ("flooded", flooded.client.get(f"/orgs/c/contacts/{mine['id']}")))
        calls.append(lambda: ("other", other.client.get(f"/orgs/c/contacts/{theirs['id']}")))
    answers = concurrently(calls, workers)
    limited = [a for who, a in answers if who == "flooded"]
    return {
        "limit_per_minute": limit,
        "flooded_key": {
            **tally(limited),
            "429_remaining_0": sum(
                1 for a in limited if a.status_code == 429 and a.headers.get("X-RateLimit-Remaining") == "0"
            ),
            "429_bodies_rate_limited": sum(
                1 for a in limited if a.status_code == 429 and a.json()["error"]["code"] == "rate_limited"
            ),
        },
        "other_org": tally([a for who, a in answers if who == "other"]),
    }


def _first_key(tenant: Tenant) -> str:
    """A key of the tenant's org with the default budget (the flooded key's own budget stays untouched)."""
    from audience import container

    _, secret = container.org_service().create_key(tenant.org_id, "setup")
    return secret


def whatsapp_connection(tenant: Tenant) -> tuple[str, str]:
    """A WhatsApp connection of the tenant with a phone number id of its own: (connection id, phone number id)."""
    from tests.channels import connect_whatsapp

    phone_number_id = str(next(_phone_number_ids))
    connection = connect_whatsapp(tenant, phone_number_id, waba=str(int(phone_number_id) + 1_000_000))
    return connection["id"], phone_number_id


def otp_broadcast(tenant: Tenant, connection_id: str, **fields: Any) -> str:
    """An ACTIVE transactional WhatsApp broadcast whose template carries the `code` property; its id."""
    body = {
        "type": "transactional",
        "name": "Login code",
        "channels": [
            {
                "channel": "whatsapp",
                "connection_id": connection_id,
                "whatsapp": {"name": "otp", "language": "en_US", "body": [{"kind": "property", "value": "code"}]},
            }
        ],
        "properties": [{"name": "code"}],
        **fields,
    }
    broadcast = expect(tenant.client.post("/orgs/c/broadcasts", json=body), 201)
    expect(tenant.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/activate"), 200)
    return str(broadcast["id"])


def otp_flood(
    served: Served, *, sends: int, others: int, workers: int, destination_rate_limit: dict[str, int] | None = None
) -> dict[str, Any]:
    """`sends` codes requested at once for one phone and `others` for another phone of the same
    transactional broadcast, from `workers` threads, waiting for WhatsApp (the stand-in) each time."""
    tenant = served.tenant("Codes")
    connection_id, phone_number_id = whatsapp_connection(tenant)
    fields = {} if destination_rate_limit is None else {"destination_rate_limit": destination_rate_limit}
    broadcast_id = otp_broadcast(tenant, connection_id, **fields)
    limit = expect(tenant.client.get(f"/orgs/c/broadcasts/{broadcast_id}"), 200)["destination_rate_limit"]
    phones = {"flooded": "+6281200000001", "other": "+6281200000002"}
    ids = {
        who: expect(tenant.client.post("/orgs/c/contacts", json={"first_name": who, "phone": phone}), 201)["id"]
        for who, phone in phones.items()
    }

    def send(who: str) -> tuple[str, Any]:
        body = {"contact_id": ids[who], "variables": {"code": f"{random.randrange(10**6):06d}"}}
        return who, tenant.client.post(f"/orgs/c/broadcasts/{broadcast_id}/send", json=body)

    calls = [lambda: send("flooded") for _ in range(sends)]
    step = max(1, sends // max(1, others))
    for n in range(others):
        calls.insert(min(len(calls), n * (step + 1)), lambda: send("other"))
    answers = concurrently(calls, workers)
    delivered = Counter(body["to"] for path, body in served.graph.sent if path.endswith(f"/{phone_number_id}/messages"))
    result: dict[str, Any] = {"destination_rate_limit": limit}
    for who, phone in phones.items():
        mine = [a for w, a in answers if w == who]
        result[f"{who}_phone"] = {
            **tally(mine),
            "429_naming_destination_limit": sum(
                1 for a in mine if a.status_code == 429 and "destination_rate_limit" in a.json()["error"]["message"]
            ),
            "429_showing_the_address": sum(
                1 for a in mine if a.status_code == 429 and phone.removeprefix("+")[-9:] in a.text
            ),
            "messages_sent_to_phone": delivered[phone.removeprefix("+")],
        }
    return result


# The callbacks of one message, as WhatsApp can make them: each status once, and a delivered one again (a
# retried call, or one that arrives after the read).
STATUSES = ("sent", "delivered", "read", "delivered")


def callback_burst(served: Served, *, callbacks: int, workers: int) -> dict[str, Any]:
    """A marketing WhatsApp broadcast to `callbacks / 4` contacts is sent; then the STATUSES of each message
    (all of them shuffled) are posted concurrently, signed as Meta signs them; then the queues are drained
    and the recipients, the counters and the inbound dead-letter queue read back."""
    from tests.channels import dead_letters, meta_signature, whatsapp_status

    tenant = served.tenant("Receipts")
    connection_id, phone_number_id = whatsapp_connection(tenant)
    messages = callbacks // len(STATUSES)
    wa_ids: dict[str, str] = {}  # contact id -> WhatsApp id (the phone's digits)
    for first in range(0, messages, 1000):
        batch = [{"first_name": f"R{n}", "phone": f"+62813{n:07d}"} for n in range(first, min(messages, first + 1000))]
        made = expect(tenant.client.post("/orgs/c/contacts/bulk", json={"contacts": batch}), 200)
        for item in made["results"]:
            wa_ids[item["contact_id"]] = batch[item["index"]]["phone"].removeprefix("+")
    body = {
        "type": "marketing",
        "name": "Promo",
        "audience_all": True,
        "channels": [
            {
                "channel": "whatsapp",
                "connection_id": connection_id,
                "whatsapp": {"name": "promo", "language": "en_US", "body": [{"kind": "contact_first_name"}]},
            }
        ],
    }
    broadcast_id = expect(tenant.client.post("/orgs/c/broadcasts", json=body), 201)["id"]
    expect(tenant.client.post(f"/orgs/c/broadcasts/{broadcast_id}/schedule", json={}), 200)
    send_s, sent_counts = served.drain()
    rows = recipients(tenant, broadcast_id)
    sent = [r for r in rows if r["status"] == "SENT"]
    at = int(time.time())
    posts = []
    for row in sent:
        for offset, status in enumerate(STATUSES):
            payload = whatsapp_status(
                phone_number_id, row["provider_message_id"], status, recipient=wa_ids[row["contact_id"]], at=at + offset
            )
            data = json.dumps(payload, separators=(",", ":")).encode()
            posts.append((data, {"X-Hub-Signature-256": meta_signature(data), "Content-Type": "application/json"}))
    random.Random(7).shuffle(posts)
    with served.client(connections=workers) as hooks:
        began = time.perf_counter()
        answers = concurrently(
            [
                lambda d=data, h=headers: hooks.post(f"/webhooks/{connection_id}", content=d, headers=h)
                for data, headers in posts
            ],
            workers,
        )
        acknowledged_s = time.perf_counter() - began
    applied_s, applied_counts = served.drain()
    after = recipients(tenant, broadcast_id)
    shown = expect(tenant.client.get(f"/orgs/c/broadcasts/{broadcast_id}"), 200)["stats"]
    recount = Counter(r["status"].lower() for r in after)
    by_status = shown["by_status"]
    return {
        "messages": messages,
        "messages_sent": len(sent),
        "send_drain_s": round(send_s, 1),
        "send_drain_records": {k: v for k, v in sent_counts.items() if v},
        "callbacks": len(posts),
        "answered": dict(Counter(str(a.status_code) for a in answers)),
        "acknowledged_per_s": round(len(posts) / acknowledged_s, 1),
        "acknowledge_s": round(acknowledged_s, 1),
        "apply_drain_s": round(applied_s, 1),
        "apply_drain_records": {k: v for k, v in applied_counts.items() if v},
        "inbound_records_applied": applied_counts.get("InboundFunction:Inbound", 0),
        "inbound_dead_letters": dead_letters(served.stack),
        "recipients_read_after_drain": recount.get("read", 0),
        "counters": by_status,
        "recount": dict(recount),
        "counters_equal_recount": all(by_status.get(k, 0) == recount.get(k, 0) for k in set(by_status) | set(recount)),
    }


def recipients(tenant: Tenant, broadcast_id: str) -> list[dict[str, Any]]:
    """Every recipient row of the broadcast, page by page."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"take": 100, **({"cursor": cursor} if cursor else {})}
        page = expect(tenant.client.get(f"/orgs/c/broadcasts/{broadcast_id}/recipients", params=params), 200)
        rows += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


# -- throughput --------------------------------------------------------------------------------------------


def targets(served: Served) -> dict[str, dict[str, Any]]:
    """What each timed endpoint is called with (method, path, headers, body), for an org whose key, broadcast
    and destination limits are far above what the run can reach, so every call is answered 2xx."""
    from tests.channels import meta_signature, whatsapp_status

    tenant = served.tenant("Load", rate_limit_per_minute=100_000)
    contact = expect(tenant.client.post("/orgs/c/contacts", json={"first_name": "L", "phone": "+6281300000001"}), 201)
    connection_id, phone_number_id = whatsapp_connection(tenant)
    broadcast_id = otp_broadcast(
        tenant,
        connection_id,
        rate_limit={"limit": 100_000, "period_seconds": 60},
        destination_rate_limit={"limit": 10_000, "period_seconds": 60},
    )
    send = {"contact_id": contact["id"], "variables": {"code": "123456"}, "background": True}
    status = whatsapp_status(phone_number_id, "wamid.LOAD", "delivered", recipient="6281300000001", at=int(time.time()))
    hook = json.dumps(status, separators=(",", ":")).encode()
    auth = tenant.headers
    return {
        "health": {"method": "GET", "path": "/health", "headers": {}, "body": None},
        "contact": {"method": "GET", "path": f"/orgs/c/contacts/{contact['id']}", "headers": auth, "body": None},
        "send": {
            "method": "POST",
            "path": f"/orgs/c/broadcasts/{broadcast_id}/send",
            "headers": {**auth, "Content-Type": "application/json"},
            "body": json.dumps(send).encode(),
        },
        "webhook": {
            "method": "POST",
            "path": f"/webhooks/{connection_id}",
            "headers": {"X-Hub-Signature-256": meta_signature(hook), "Content-Type": "application/json"},
            "body": hook,
        },
    }


def blast(url: str, target: dict[str, Any], seconds: float, concurrency: int) -> dict[str, Any]:
    """Call `target` from `concurrency` threads (a keep-alive connection each) for `seconds`: the count,
    the time taken, the statuses and every latency (ms). Runs in the load process."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[Counter[int]] = [Counter() for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.get("/health")  # open the connection before the clock starts
            start.wait()
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                answer = client.request(
                    target["method"], target["path"], headers=target["headers"], content=target["body"]
                )
                latencies[n].append((time.perf_counter() - began) * 1000)
                statuses[n][answer.status_code] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds + 0.2
    start.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = [ms for mine in latencies for ms in mine]
    total: Counter[int] = Counter()
    for mine in statuses:
        total.update(mine)
    return {"requests": len(every), "elapsed_s": elapsed, "statuses": dict(total), "latencies_ms": every}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def throughput(served: Served, *, seconds: float, rounds: int, concurrency: int) -> dict[str, Any]:
    """Each endpoint once a round, rotated, from a spawned load process; medians over rounds."""
    import multiprocessing

    calls = targets(served)
    per_round = seconds / rounds
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
    with multiprocessing.get_context("spawn").Pool(1) as load:
        for name in ENDPOINTS:  # warm-up, not counted
            load.apply(blast, (served.url, calls[name], WARM_UP_SECONDS, concurrency))
        served.discard_queued()
        for r in range(rounds):
            order = ENDPOINTS[r % len(ENDPOINTS) :] + ENDPOINTS[: r % len(ENDPOINTS)]
            for name in order:
                samples[name].append(load.apply(blast, (served.url, calls[name], per_round, concurrency)))
                # What the calls queued is not run: each round starts from empty queues, as the first did.
                served.discard_queued()
            print(
                f"  round {r + 1}/{rounds}: "
                + ", ".join(f"{n} {samples[n][-1]['requests'] / samples[n][-1]['elapsed_s']:.0f}/s" for n in order),
                flush=True,
            )
    health = [s["requests"] / s["elapsed_s"] for s in samples["health"]]
    results: dict[str, Any] = {}
    for name in ENDPOINTS:
        rates = [s["requests"] / s["elapsed_s"] for s in samples[name]]
        latencies = [ms for s in samples[name] for ms in s["latencies_ms"]]
        statuses: Counter[str] = Counter()
        for s in samples[name]:
            statuses.update({str(k): v for k, v in s["statuses"].items()})
        results[name] = {
            "requests": len(latencies),
            "statuses": dict(statuses),
            "requests_per_s_median": round(statistics.median(rates), 1),
            "requests_per_s_rounds": [round(x, 1) for x in rates],
            "ratio_to_health_median": round(statistics.median(r / h for r, h in zip(rates, health, strict=True)), 3),
            "p50_ms": round(_percentile(latencies, 0.50), 2),
            "p95_ms": round(_percentile(latencies, 0.95), 2),
        }
    return results


# -- the benchmark ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if str(ROOT / "layers" / "audience") not in sys.path:
        sys.path.insert(0, str(ROOT / "layers" / "audience"))
    import logging
    import warnings

    from benchmarks import importdata

    warnings.filterwarnings("ignore", message=".*httpx2.*")
    warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'body'")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    logging.getLogger("devstack").setLevel(logging.CRITICAL)
    code = importdata.code_version()
    began = time.perf_counter()
    # Two stacks, each fresh: the timed rounds leave work on the streams (their sends' records) that the
    # callback burst's drains would have to run too, and the scenarios' data would weigh on the timed
    # calls that write a transaction (moto copies each table a transaction touches).
    with served() as stack:
        print(f"throughput ({args.concurrency} client threads, {args.rounds} rounds, {stack.url}):", flush=True)
        timed = throughput(stack, seconds=args.seconds, rounds=args.rounds, concurrency=args.concurrency)
    with served() as stack:
        print("key flood:", flush=True)
        flood = key_flood(stack, requests=200, limit=60, workers=args.concurrency)
        print("OTP flood:", flush=True)
        otp = otp_flood(stack, sends=50, others=5, workers=args.concurrency)
        print(f"{args.callbacks} status callbacks:", flush=True)
        burst = callback_burst(stack, callbacks=args.callbacks, workers=args.concurrency)
    wall = time.perf_counter() - began

    flooded, other = flood["flooded_key"], flood["other_org"]
    key_met = (
        flooded["429"] > 0
        and flooded["429_with_retry_after"] == flooded["429"]
        and flooded["2xx"] <= flood["limit_per_minute"]
        and flooded["other"] == 0
        and other["2xx"] == other["requests"]
    )
    otp_limit = otp["destination_rate_limit"]["limit"]
    hit, spared = otp["flooded_phone"], otp["other_phone"]
    otp_met = (
        hit["2xx"] == otp_limit == hit["messages_sent_to_phone"]
        and hit["429"]
        == hit["requests"] - otp_limit
        == hit["429_with_retry_after"]
        == hit["429_naming_destination_limit"]
        and hit["429_showing_the_address"] == 0
        and spared["2xx"] == spared["requests"] == spared["messages_sent_to_phone"]
    )
    burst_met = (
        burst["answered"] == {"200": burst["callbacks"]}
        and burst["recipients_read_after_drain"] == burst["messages_sent"] == burst["messages"]
        and burst["counters_equal_recount"]
        and burst["inbound_records_applied"] == burst["callbacks"]
        and burst["inbound_dead_letters"] == 0
    )
    all_2xx = all(set(r["statuses"]) <= {"200", "202"} for r in timed.values())

    print(f"\nThroughput over 127.0.0.1 (medians of {args.rounds} rounds; ratio to /health in the same round):\n")
    print("| Endpoint | Requests | Statuses | Requests/s | Ratio to /health | p50 ms | p95 ms |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, r in timed.items():
        print(
            f"| {LABELS[name]} | {r['requests']:,} | {', '.join(f'{k}: {v}' for k, v in r['statuses'].items())} "
            f"| {r['requests_per_s_median']:.0f} | **{r['ratio_to_health_median']:.2f}** "
            f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
        )
    print(
        f"\nKey flood: a key of {flood['limit_per_minute']}/min sent {flooded['requests']} GETs: {flooded['2xx']} 2xx, "
        f"{flooded['429']} 429 ({flooded['429_with_retry_after']} with Retry-After {flooded['retry_after_s']} s), "
        f"{flooded['other']} other; another org at the same time: {other['2xx']}/{other['requests']} 2xx, "
        f"{other['429']} 429 — {'met' if key_met else 'MISSED'}"
    )
    print(
        f"OTP flood (destination_rate_limit {otp['destination_rate_limit']}): one phone {hit['requests']} sends -> "
        f"{hit['2xx']} sent, {hit['429']} 429 ({hit['429_with_retry_after']} with Retry-After "
        f"{hit['retry_after_s']} s, "
        f"{hit['429_naming_destination_limit']} naming the limit, {hit['429_showing_the_address']} showing the "
        f"address); another phone {spared['2xx']}/{spared['requests']} sent — {'met' if otp_met else 'MISSED'}"
    )
    print(
        f"Status callbacks: {burst['callbacks']} posted from {args.concurrency} threads in {burst['acknowledge_s']} s "
        f"({burst['acknowledged_per_s']}/s), answered {burst['answered']}; after drain ({burst['apply_drain_s']} s) "
        f"{burst['inbound_records_applied']} records run, {burst['inbound_dead_letters']} dead-lettered, "
        f"{burst['recipients_read_after_drain']}/{burst['messages']} READ, counters equal a recount: "
        f"{burst['counters_equal_recount']} — {'met' if burst_met else 'MISSED'}"
    )
    print(f"Every timed call answered 2xx: {all_2xx}. Wall time {wall:.0f} s.")

    fields = {
        "settings": {
            "seconds_per_endpoint": args.seconds,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "callbacks": args.callbacks,
            "transport": "HTTP/1.1 keep-alive over 127.0.0.1; uvicorn, devstack API Gateway stand-in, moto in process",
        },
        "goals": {
            "key_flood_limited_other_org_unaffected": key_met,
            "otp_flood_throttled_per_destination": otp_met,
            "callbacks_all_acknowledged_and_applied": burst_met,
            "timed_calls_all_2xx": all_2xx,
        },
        "throughput": timed,
        "key_flood": flood,
        "otp_flood": otp,
        "callback_burst": burst,
        "wall_s": round(wall, 1),
    }
    importdata.write_results(args.output, "load", fields, code=code)
    return key_met and otp_met and burst_met and all_2xx
