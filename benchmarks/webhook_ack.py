"""Webhook acknowledge path: AWS requests per call, CPU per call without its one request, import cost.

WebhookFunction (`functions/webhooks/app.py` -> `audience.webhooks.ack`) authenticates a platform's call,
finds the tenant from cached connection, route and secret items, and sends one SQS message. Three goals:

1. **AWS requests per call on the warm path: exactly 1** (the SendMessage). On the local stack (moto
   in-process, template.yaml with Stage=bench), an org connects WhatsApp (phone number id of the
   fixtures), Telegram (its webhook secret stored as `setWebhook` would) and a custom channel through
   the API. Every API call the handler makes is counted with a `before-call` hook on the clients
   `audience.aws.client()` returns (DynamoDB, Secrets Manager, SQS), and cross-checked at
   `BaseClient._make_api_call` so that a request from any other client would show too. For each payload
   (WhatsApp text, WhatsApp status, Telegram, custom) the acknowledger is reset (a new execution
   environment's caches), then one cold call and `--warm-calls` warm calls go through
   `stack.invoke("WebhookFunction", event)` with an HTTP API payload 2.0 event.
2. **CPU per call, excluding the one AWS request: under 1 ms.** SendMessage is short-circuited with a
   `before-send` handler that returns a canned 200 SendMessage response (moto's own handler is taken off
   the SQS client meanwhile: botocore runs every `before-send` handler, so moto's SQS backend would
   still run behind the canned answer), so botocore still builds, signs and parses the request. Per
   round and payload, two blocks of `--calls` calls are timed with `time.process_time_ns`: (a) the
   function's `lambda_handler(event, context)`, (b) a bare `sqs.send_message` of the same message body
   through the same client and short-circuit; the order of (a) and (b) alternates by round. Medians
   over `--rounds` rounds (after a discarded warm-up round) of (a), (b) and of each round's (a) - (b):
   the handler's own CPU. Every timed call is checked to make exactly that one (short-circuited) request.
3. **Handler import cost: at most 1.3x `import boto3`.** Fresh interpreters (.venv's python, `-S`,
   with Lambda's environment and path as benchmarks/cold_start.py sets them: functions/webhooks, then
   layers/audience, then the .venv's site-packages for boto3, the same boto3/botocore versions as the
   layer) time one `import boto3` or `import app` with `time.perf_counter` (and, beside it, CPU time and
   minor page faults), alternating, `--import-runs` each after one discarded warm-up pair, every module
   byte-compiled first. `-X importtime` (5 runs each) lists the modules the handler loads beyond boto3,
   ranked by median self time. Two figures outside the goal: the minor page faults of each import made
   from 0 to 7 nested calls (CPython 3.13 before gh-142183 was fixed maps and unmaps a 16 KiB frame
   chunk each time a call crosses a chunk's end, so an import's cost can depend on how deep in the stack
   it runs), and what the handler's first call sets up before its first request (the session, then
   the DynamoDB, Secrets Manager and SQS clients).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import sysconfig
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
FUNCTION = "WebhookFunction"
SERVICES = ("dynamodb", "secretsmanager", "sqs")

REQUESTS_GOAL = 1
CPU_GOAL_MS = 1.0
IMPORT_GOAL = 1.3

PHONE_NUMBER_ID = "106540352242922"  # the WhatsApp fixtures' phone number id
BUSINESS_ACCOUNT_ID = "102290129340398"
APP_SECRET = "bench-meta-app-secret-0123456789abcdef"
VERIFY_TOKEN = "bench-verify-token"
TELEGRAM_SECRET = "bench-telegram-webhook-secret-0123456789"
BOT_TOKEN = "7000000001:AAbenchbenchbenchbenchbenchbench0123"
CUSTOM_SECRET = "bench-custom-signing-secret-0123456789"
CUSTOM_BODY = {
    "events": [
        {
            "type": "message",
            "id": "msg_01JBENCH0000000000000000",
            "from": {"id": "user-4821", "phone": "+6281234567890", "name": "Sari Wulandari"},
            "text": "Halo, pesanan saya sudah dikirim?",
            "at": "2026-11-24T08:15:00Z",
        }
    ]
}
PAYLOADS = ("whatsapp_text", "whatsapp_status", "telegram", "custom")
LABELS = {
    "whatsapp_text": "WhatsApp text (`webhook_whatsapp_text.json`)",
    "whatsapp_status": "WhatsApp status (`webhook_whatsapp_status_delivered.json`)",
    "telegram": "Telegram message (`webhook_telegram_message.json`)",
    "custom": "custom channel (one message event)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warm-calls", type=int, default=200, help="warm calls per payload counted (goal 1)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (goal 2; one warm-up round is added)")
    parser.add_argument("--calls", type=int, default=200, help="calls per timed block (goal 2)")
    parser.add_argument("--import-runs", type=int, default=21, help="fresh interpreters per module (goal 3)")
    parser.add_argument("--output", type=Path, default=RESULTS / "webhook_ack.json")


# -- events ---------------------------------------------------------------------------------------------


def http_event(connection_id: str, body: bytes, headers: dict[str, str], user_agent: str) -> dict[str, Any]:
    """A POST to /webhooks/{connection_id} as HTTP API (payload 2.0) hands it to the function."""
    now = time.time()
    path = f"/webhooks/{connection_id}"
    all_headers = {
        "accept": "*/*",
        "accept-encoding": "deflate, gzip",
        "content-length": str(len(body)),
        "content-type": "application/json",
        "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "user-agent": user_agent,
        "x-amzn-trace-id": "Root=1-6922df34-0123456789abcdef01234567",
        "x-forwarded-for": "173.252.95.8",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **{k.lower(): v for k, v in headers.items()},
    }
    return {
        "version": "2.0",
        "routeKey": "ANY /webhooks/{connection_id}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": all_headers["host"],
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": all_headers["x-forwarded-for"],
                "userAgent": user_agent,
            },
            "requestId": "Ab1cDeFgIAMEXAMPLE=",
            "routeKey": "ANY /webhooks/{connection_id}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "pathParameters": {"connection_id": connection_id},
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def _fixture(name: str) -> bytes:
    """A fixture as the platform would post it: compact JSON."""
    return json.dumps(json.loads((EVENTS / f"{name}.json").read_text()), separators=(",", ":")).encode()


def events(connections: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One signed event per payload (built when needed: the custom signature's timestamp is now)."""
    built = {}
    for name, fixture in (
        ("whatsapp_text", "webhook_whatsapp_text"),
        ("whatsapp_status", "webhook_whatsapp_status_delivered"),
    ):
        body = _fixture(fixture)
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        legacy = "sha1=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha1).hexdigest()
        built[name] = http_event(
            connections["whatsapp"],
            body,
            {"X-Hub-Signature": legacy, "X-Hub-Signature-256": signature},
            "facebookexternalua",
        )
    body = _fixture("webhook_telegram_message")
    built["telegram"] = http_event(
        connections["telegram"], body, {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}, ""
    )
    body = json.dumps(CUSTOM_BODY, separators=(",", ":")).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(CUSTOM_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    built["custom"] = http_event(
        connections["custom"],
        body,
        {"X-Audience-Timestamp": stamp, "X-Audience-Signature": f"v1={digest}"},
        "acme-shop-webhooks/2.1",
    )
    return built


def connect(stack: Any) -> dict[str, str]:
    """An org with a WhatsApp, a Telegram and a custom connection, made through the API."""
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'body'")
    from fastapi.testclient import TestClient

    from audience import admin, container
    from audience.api.app import create_app
    from audience.channels.secrets import SecretStore
    from audience.settings import get_settings

    container.reset()
    created = admin.create_org("Bench", default_country="ID")
    org_id = created["org_id"]
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {created['api_key']}"})
    specs = {
        "whatsapp": (
            {"phone_number_id": PHONE_NUMBER_ID, "business_account_id": BUSINESS_ACCOUNT_ID},
            {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
        ),
        "telegram": ({"bot_username": "bench_shop_bot"}, {"bot_token": BOT_TOKEN}),
        "custom": ({}, {"signing_secret": CUSTOM_SECRET}),
    }
    found = {}
    for platform, (settings, secrets) in specs.items():
        response = api.post(
            f"/orgs/{org_id}/connections",
            json={"platform": platform, "name": f"{platform} line", "settings": settings, "secrets": secrets},
        )
        if response.status_code != 201:
            raise RuntimeError(f"creating the {platform} connection: {response.status_code} {response.text}")
        found[platform] = response.json()["id"]
    # What registering the bot's webhook stores (without calling the Bot API).
    SecretStore(get_settings().stage).put(found["telegram"], {"webhook_secret": TELEGRAM_SECRET}, merge=True)
    return found


# -- counting requests ------------------------------------------------------------------------------------


class Requests:
    """AWS API calls made while `active`: by `before-call` on the acknowledge path's clients (and their
    HTTP attempts, `before-send`, which a retry would add to), and by any botocore client at all
    (`BaseClient._make_api_call`), to show nothing else is called."""

    def __init__(self) -> None:
        self.active = False
        self.calls: Counter[str] = Counter()
        self.attempts = 0
        self.any_client: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()
        self.attempts = 0
        self.any_client.clear()

    def _before_call(self, model: Any, **_: Any) -> None:
        if self.active:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def _before_send(self, **_: Any) -> None:
        if self.active:
            self.attempts += 1

    @contextmanager
    def installed(self, clients: list[Any]) -> Iterator[Requests]:
        from botocore.client import BaseClient

        for client in clients:
            client.meta.events.register("before-call", self._before_call, unique_id="bench-webhook-count")
            client.meta.events.register("before-send", self._before_send, unique_id="bench-webhook-attempts")
        original = BaseClient._make_api_call
        meter = self

        def _make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if meter.active:
                meter.any_client[f"{client.meta.service_model.service_name}.{operation}"] += 1
            return original(client, operation, params)

        BaseClient._make_api_call = _make_api_call  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]
            for client in clients:
                client.meta.events.unregister("before-call", unique_id="bench-webhook-count")
                client.meta.events.unregister("before-send", unique_id="bench-webhook-attempts")


@dataclass(frozen=True)
class Counted:
    """The AWS requests of one webhook call."""

    requests: int  # API calls on the acknowledge path's clients
    operations: dict[str, int]
    attempts: int  # HTTP attempts of those calls (a retry would make it more)
    any_client: int  # API calls made through any botocore client


def _counted_call(stack: Any, meter: Requests, name: str, event: dict[str, Any]) -> Counted:
    """One webhook call through the stack (stack.invoke) and its requests."""
    meter.reset()
    meter.active = True
    try:
        reply = stack.invoke(FUNCTION, event)
    finally:
        meter.active = False
    if reply["statusCode"] != 200:
        raise RuntimeError(f"{name}: the webhook answered {reply}")
    return Counted(sum(meter.calls.values()), dict(meter.calls), meter.attempts, sum(meter.any_client.values()))


def count_requests(stack: Any, connections: dict[str, str], warm_calls: int) -> dict[str, Any]:
    """Goal 1: the requests of a cold call and of each warm call, per payload, through stack.invoke."""
    from audience import aws
    from audience.webhooks import ack

    built = events(connections)
    meter = Requests()
    results: dict[str, Any] = {}
    with meter.installed([aws.client(s) for s in SERVICES]):
        for name in PAYLOADS:
            ack.reset()  # a new execution environment's caches (the clients themselves stay)
            cold = _counted_call(stack, meter, name, built[name])
            warm = [_counted_call(stack, meter, name, built[name]) for _ in range(warm_calls)]
            counts = [c.requests for c in warm]
            operations: Counter[str] = Counter()
            for c in warm:
                operations.update(c.operations)
            results[name] = {
                "cold_requests": cold.requests,
                "cold_operations": cold.operations,
                "cold_attempts": cold.attempts,
                "cold_any_client": cold.any_client,
                "warm_calls": warm_calls,
                "warm_median": statistics.median(counts),
                "warm_min": min(counts),
                "warm_max": max(counts),
                "warm_operations": dict(operations),
                "warm_attempts_total": sum(c.attempts for c in warm),
                "warm_any_client_total": sum(c.any_client for c in warm),
            }
            print(
                f"  {name}: cold {cold.requests} ({', '.join(f'{k} {v}' for k, v in cold.operations.items())}), "
                f"warm median {results[name]['warm_median']:g} (min {min(counts)}, max {max(counts)})",
                flush=True,
            )
    return results


# -- CPU per call -----------------------------------------------------------------------------------------


class _Raw:
    """The raw body botocore reads from an HTTP response (`stream()`)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


_SEND_MESSAGE_REPLY = json.dumps(
    {"MD5OfMessageBody": "51b0a325d2a6a7e2e5a8d5f1c2b3a4d5", "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274"}
).encode()


_SEND_MESSAGE_HEADERS = {
    "x-amzn-RequestId": "a7d2cf3e-0c7d-5a0f-b8d4-3b3f0f3f0a11",
    "Content-Type": "application/x-amz-json-1.0",
    "Content-Length": str(len(_SEND_MESSAGE_REPLY)),
}


@contextmanager
def short_circuited(sqs: Any) -> Iterator[list[int]]:
    """SendMessage answered without leaving the process, as SQS answers it (JSON protocol); yields a
    one-item list counting the canned answers.

    botocore runs every `before-send` handler and takes the first response, so moto's stubber (a handler
    of every client made under mock_aws) would still run its SQS backend behind the canned answer: it is
    taken off this client while the short-circuit is on."""
    from botocore.awsrequest import AWSResponse

    answered = [0]

    def _canned_send_message(**_: Any) -> Any:
        answered[0] += 1
        return AWSResponse(
            "https://sqs.us-east-1.amazonaws.com/", 200, dict(_SEND_MESSAGE_HEADERS), _Raw(_SEND_MESSAGE_REPLY)
        )

    stubber = getattr(sys.modules.get("moto.core.models"), "botocore_stubber", None)
    if stubber is not None:
        sqs.meta.events.unregister("before-send", stubber)
    sqs.meta.events.register_first(
        "before-send.sqs.SendMessage", _canned_send_message, unique_id="bench-webhook-canned"
    )
    try:
        yield answered
    finally:
        sqs.meta.events.unregister("before-send.sqs.SendMessage", unique_id="bench-webhook-canned")
        if stubber is not None:
            sqs.meta.events.register("before-send", stubber)


@contextmanager
def captured_message_bodies(sqs: Any) -> Iterator[list[str]]:
    sent: list[str] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["MessageBody"])

    sqs.meta.events.register("provide-client-params.sqs.SendMessage", capture, unique_id="bench-webhook-capture")
    try:
        yield sent
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessage", unique_id="bench-webhook-capture")


def _per_call_ns(call: Callable[[], Any], n: int) -> float:
    start = time.process_time_ns()
    for _ in range(n):
        call()
    return (time.process_time_ns() - start) / n


@dataclass
class Timings:
    handler_ns: list[float] = field(default_factory=list)
    send_ns: list[float] = field(default_factory=list)

    @property
    def own_ns(self) -> list[float]:
        return [a - b for a, b in zip(self.handler_ns, self.send_ns, strict=True)]


def time_cpu(stack: Any, connections: dict[str, str], rounds: int, calls: int) -> dict[str, Any]:
    """Goal 2: (a) lambda_handler and (b) a bare send_message, both with SendMessage short-circuited."""
    from audience import aws
    from audience.webhooks import ack

    function = stack.function(FUNCTION)
    handler = function.handler()
    context = function.context()
    sqs = aws.client("sqs")
    queue_url = os.environ["INBOUND_QUEUE_URL"]
    built = events(connections)
    meter = Requests()
    ack.reset()
    bodies: dict[str, str] = {}
    with short_circuited(sqs) as answered, meter.installed([aws.client(s) for s in SERVICES]):
        for name in PAYLOADS:  # the caches loaded (through moto) and the message each payload sends
            with captured_message_bodies(sqs) as sent:
                reply = handler(built[name], context)
            if reply["statusCode"] != 200 or len(sent) != 1:
                raise RuntimeError(f"{name}: the webhook answered {reply} after {len(sent)} SendMessage")
            bodies[name] = sent[0]
        timings = {name: Timings() for name in PAYLOADS}
        meter.reset()
        meter.active = True
        for round_ in range(rounds + 1):
            for name in PAYLOADS:
                event, body = built[name], bodies[name]

                def whole(event: dict[str, Any] = event) -> Any:
                    return handler(event, context)

                def bare(body: str = body) -> Any:
                    return sqs.send_message(QueueUrl=queue_url, MessageBody=body)

                order = ("a", "b") if round_ % 2 else ("b", "a")
                measured = {side: _per_call_ns(whole if side == "a" else bare, calls) for side in order}
                if round_:  # round 0 warms up
                    timings[name].handler_ns.append(measured["a"])
                    timings[name].send_ns.append(measured["b"])
            print(f"\rround {round_}/{rounds}", end="", file=sys.stderr, flush=True)
        meter.active = False
        print(file=sys.stderr)
    expected = (rounds + 1) * len(PAYLOADS) * calls * 2
    only_sends = dict(meter.any_client) == {"sqs.SendMessage": expected} and answered[0] == expected + len(PAYLOADS)
    if not only_sends:
        print(
            f"  note: requests during the timed blocks were {dict(meter.any_client)}, expected {expected} SendMessage"
        )
    results: dict[str, Any] = {}
    for name in PAYLOADS:
        t = timings[name]
        results[name] = {
            "body_bytes": len(built[name]["body"].encode()),
            "event_bytes": len(json.dumps(built[name]).encode()),
            "message_bytes": len(bodies[name].encode()),
            "handler_us": round(statistics.median(t.handler_ns) / 1000, 1),
            "send_message_us": round(statistics.median(t.send_ns) / 1000, 1),
            "own_us": round(statistics.median(t.own_ns) / 1000, 1),
            "own_min_us": round(min(t.own_ns) / 1000, 1),
            "own_max_us": round(max(t.own_ns) / 1000, 1),
            "rounds_handler_us": [round(ns / 1000, 1) for ns in t.handler_ns],
            "rounds_send_message_us": [round(ns / 1000, 1) for ns in t.send_ns],
        }
    return {
        "only_send_message_during_timing": only_sends,
        "threads": threading.active_count(),
        "payloads": results,
    }


# -- import cost ----------------------------------------------------------------------------------------


# Runs inside each fresh interpreter: time one import (the same code for boto3 and the handler): wall
# time, CPU time, minor page faults; then, for the handler, what its first call sets up before any
# request: the session, then the clients in the order a call creates them.
_PROBE = (
    "import importlib, resource, sys, time\n"
    "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "c0, t0 = time.process_time(), time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "found = [(time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000]\n"
    "found.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
    "if len(sys.argv) > 2:\n"
    "    from audience import aws\n"
    "    t0 = time.perf_counter()\n"
    "    aws._session()\n"
    "    found.append((time.perf_counter() - t0) * 1000)\n"
    "    for service in sys.argv[2:]:\n"
    "        t0 = time.perf_counter()\n"
    "        aws.client(service)\n"
    "        found.append((time.perf_counter() - t0) * 1000)\n"
    "print(*found)\n"
)

# The same import made from `depth` nested Python calls: CPython 3.13 keeps frames in 16 KiB chunks
# and, before gh-142183 was fixed, maps and unmaps a chunk each time a call crosses a chunk's end, so
# an import's page faults (and time) depend on how deep in the stack it runs.
_DEPTH_PROBE = (
    "import importlib, resource, sys\n"
    "def nest(k):\n"
    "    if k:\n"
    "        return nest(k - 1)\n"
    "    importlib.import_module(sys.argv[1])\n"
    "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "nest(int(sys.argv[2]))\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
)
DEPTHS = range(8)


def import_cost(runs: int) -> dict[str, Any]:
    """Goal 3: `import boto3` and `import app` in fresh interpreters, alternating; what app adds."""
    from benchmarks import cold_start

    python = cold_start.PYTHON
    (function,) = [f for f in cold_start.functions() if f.logical_id == FUNCTION]
    # boto3 and botocore from the .venv (the layer's pinned versions): cold_start's own copy of the
    # layer's requirements (.local/bench/layer) is reinstalled whenever they change.
    site = Path(sysconfig.get_paths()["purelib"])
    code_dir = ROOT / function.code_uri
    cold_start._run([str(python), "-m", "compileall", "-q", str(ROOT / "layers" / "audience"), str(code_dir)])

    def env(with_function: bool) -> dict[str, str]:
        found = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
        found.update(cold_start.LAMBDA_ENV)
        path = [str(ROOT / "layers" / "audience"), str(site)]
        if with_function:
            found.update(function.env, LAMBDA_TASK_ROOT=str(code_dir))
            path.insert(0, str(code_dir))
        found["PYTHONPATH"] = os.pathsep.join(path)
        return found

    baseline = cold_start.Target("boto3", "boto3", env(False))
    handler = cold_start.Target(FUNCTION, function.module, env(True), function)
    setup: list[list[float]] = []  # the handler's first call: session, then each client
    cpu_ms: dict[str, list[float]] = {baseline.name: [], handler.name: []}
    faults: dict[str, list[float]] = {baseline.name: [], handler.name: []}
    for round_ in range(runs + 1):
        for target in (baseline, handler) if round_ % 2 else (handler, baseline):
            extra = list(SERVICES) if target is handler else []
            found = cold_start._run([str(python), "-S", "-c", _PROBE, target.module, *extra], target.env)
            ms = [float(v) for v in found.stdout.split()]
            if round_:
                target.samples_ms.append(ms[0])
                cpu_ms[target.name].append(ms[1])
                faults[target.name].append(ms[2])
                if extra:
                    setup.append(ms[3:])
        print(f"\rimport round {round_}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    shared = cold_start.importtime(baseline, python)
    own = cold_start.importtime(handler, python)
    extra_modules = sorted(((m, ms) for m, ms in own.items() if m not in shared), key=lambda kv: kv[1], reverse=True)
    base, fn = statistics.median(baseline.samples_ms), statistics.median(handler.samples_ms)
    steps = ("session", *SERVICES)
    setup_ms = {step: round(statistics.median(c[i] for c in setup), 1) for i, step in enumerate(steps)}
    setup_total = statistics.median(sum(c) for c in setup)
    by_depth = {
        target.name: [
            int(cold_start._run([str(python), "-S", "-c", _DEPTH_PROBE, target.module, str(d)], target.env).stdout)
            for d in DEPTHS
        ]
        for target in (baseline, handler)
    }
    return {
        "python_path": ["functions/webhooks", "layers/audience", os.path.relpath(site, ROOT)],
        "runs": runs,
        "boto3_median_ms": round(base, 1),
        "handler_median_ms": round(fn, 1),
        "ratio": round(fn / base, 2),
        "boto3_samples_ms": [round(ms, 2) for ms in baseline.samples_ms],
        "handler_samples_ms": [round(ms, 2) for ms in handler.samples_ms],
        # CPU time of the same imports: less sensitive to other work on a shared machine.
        "boto3_cpu_median_ms": round(statistics.median(cpu_ms[baseline.name]), 1),
        "handler_cpu_median_ms": round(statistics.median(cpu_ms[handler.name]), 1),
        "cpu_ratio": round(statistics.median(cpu_ms[handler.name]) / statistics.median(cpu_ms[baseline.name]), 2),
        "boto3_min_ms": round(min(baseline.samples_ms), 1),
        "handler_min_ms": round(min(handler.samples_ms), 1),
        "min_ratio": round(min(handler.samples_ms) / min(baseline.samples_ms), 2),
        # -X importtime: the sum of every module's median self time, each interpreter's whole import.
        "importtime_total_self_ms": {"boto3": round(sum(shared.values()), 1), "app": round(sum(own.values()), 1)},
        "boto3_minor_faults_median": statistics.median(faults[baseline.name]),
        "handler_minor_faults_median": statistics.median(faults[handler.name]),
        "minor_faults_by_call_depth": {"depths": list(DEPTHS), **by_depth},
        "modules_beyond_boto3": len(extra_modules),
        "self_ms_beyond_boto3": round(sum(ms for _, ms in extra_modules), 2),
        "top_self_ms_beyond_boto3": {m: round(ms, 2) for m, ms in extra_modules[:12]},
        "all_beyond_boto3": [m for m, _ in extra_modules],
        # Not part of the goal: what the first call adds before its requests (session and clients).
        "cold_call_setup_median_ms": setup_ms,
        "cold_call_setup_total_median_ms": round(setup_total, 1),
        "cold_call_setup_ratio_to_boto3": round(setup_total / base, 2),
    }


# -- the benchmark ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import importdata
    from devstack.testing import local_stack

    code = importdata.code_version()  # the code this run loads, before it runs
    began = time.perf_counter()

    print("import cost (goal 3):", flush=True)
    imports = import_cost(args.import_runs)

    with local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack:
        connections = connect(stack)
        print("AWS requests per call (goal 1):", flush=True)
        requests = count_requests(stack, connections, args.warm_calls)
        print("CPU per call (goal 2):", flush=True)
        cpu = time_cpu(stack, connections, args.rounds, args.calls)
        from audience import container
        from audience.webhooks import ack

        ack.reset()
        container.reset()

    requests_met = all(r["warm_max"] == REQUESTS_GOAL and r["warm_min"] == REQUESTS_GOAL for r in requests.values())
    requests_met = requests_met and all(
        r["warm_any_client_total"] == r["warm_attempts_total"] == r["warm_calls"] * REQUESTS_GOAL
        for r in requests.values()
    )
    cpu_met = cpu["only_send_message_during_timing"] and all(
        p["own_us"] < CPU_GOAL_MS * 1000 for p in cpu["payloads"].values()
    )
    import_met = imports["ratio"] <= IMPORT_GOAL

    print(f"\nAWS requests per webhook call ({args.warm_calls} warm calls a payload, through stack.invoke):\n")
    print(
        "| Payload | Cold call | Cold call's requests | Warm median | Warm min-max "
        "| Warm requests (all calls) | HTTP attempts | Goal | Result |"
    )
    print("|---|---:|---|---:|---:|---|---:|---:|---|")
    for name, r in requests.items():
        exact = r["warm_min"] == r["warm_max"] == REQUESTS_GOAL
        print(
            f"| {LABELS[name]} | {r['cold_requests']} "
            f"| {', '.join(f'{k} {v}' for k, v in r['cold_operations'].items())} "
            f"| **{r['warm_median']:g}** | {r['warm_min']}-{r['warm_max']} "
            f"| {', '.join(f'{k} {v}' for k, v in r['warm_operations'].items())} | {r['warm_attempts_total']} "
            f"| = {REQUESTS_GOAL} | {'PASS' if exact else 'OVER'} |"
        )
    print(f"\nCPU per call, µs (medians of {args.rounds} rounds of {args.calls} calls; SendMessage short-circuited):\n")
    print(
        "| Payload | Body bytes | Message bytes | (a) handler | (b) bare send_message | (a) - (b) | "
        "(a) - (b) min-max | Goal | Result |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, p in cpu["payloads"].items():
        print(
            f"| {LABELS[name]} | {p['body_bytes']:,} | {p['message_bytes']:,} | {p['handler_us']:.1f} "
            f"| {p['send_message_us']:.1f} | **{p['own_us']:.1f}** | {p['own_min_us']:.0f}-{p['own_max_us']:.0f} "
            f"| < {CPU_GOAL_MS * 1000:.0f} µs | {'PASS' if p['own_us'] < CPU_GOAL_MS * 1000 else 'OVER'} |"
        )
    print(f"\nImport cost ({args.import_runs} fresh interpreters each, alternating):\n")
    print("| Module | Median ms | Min-max ms | Ratio to boto3 | CPU median ms | CPU ratio | Goal | Result |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| `import boto3` | {imports['boto3_median_ms']:.1f} | {min(imports['boto3_samples_ms']):.0f}-"
        f"{max(imports['boto3_samples_ms']):.0f} | 1.00x | {imports['boto3_cpu_median_ms']:.1f} | 1.00x | — | — |"
    )
    print(
        f"| `import app` (WebhookFunction) | {imports['handler_median_ms']:.1f} "
        f"| {min(imports['handler_samples_ms']):.0f}-{max(imports['handler_samples_ms']):.0f} "
        f"| **{imports['ratio']:.2f}x** | {imports['handler_cpu_median_ms']:.1f} | {imports['cpu_ratio']:.2f}x "
        f"| ≤ {IMPORT_GOAL}x | {'PASS' if import_met else 'OVER'} |"
    )
    totals = imports["importtime_total_self_ms"]
    print(
        f"\nFastest of each: boto3 {imports['boto3_min_ms']} ms, app {imports['handler_min_ms']} ms "
        f"({imports['min_ratio']:.2f}x). -X importtime, sum of all modules' self time: boto3 {totals['boto3']} ms, "
        f"app {totals['app']} ms."
    )
    print(
        f"{imports['modules_beyond_boto3']} modules beyond boto3's, {imports['self_ms_beyond_boto3']} ms self time "
        "(-X importtime, median of 5; to rank): "
        + ", ".join(f"{m} {ms}" for m, ms in imports["top_self_ms_beyond_boto3"].items())
    )
    print(
        f"Minor page faults during the import (median): boto3 {imports['boto3_minor_faults_median']:,.0f}, "
        f"app {imports['handler_minor_faults_median']:,.0f}. The same imports made {DEPTHS[-1]} calls deep or less "
        "(depth: faults): "
        + "; ".join(
            f"{name} "
            + ", ".join(f"{d}: {n:,}" for d, n in zip(DEPTHS, imports["minor_faults_by_call_depth"][name], strict=True))
            for name in ("boto3", FUNCTION)
        )
    )
    setup = imports["cold_call_setup_median_ms"]
    print(
        f"\nNot in the import: the first call sets up the session and its clients, median "
        f"{imports['cold_call_setup_total_median_ms']} ms ({imports['cold_call_setup_ratio_to_boto3']:.2f}x "
        "boto3's import): " + ", ".join(f"{step} {ms}" for step, ms in setup.items())
    )
    print(
        f"\ngoal 1, exactly {REQUESTS_GOAL} AWS request per warm call: {'met' if requests_met else 'missed'}; "
        f"goal 2, handler CPU under {CPU_GOAL_MS:g} ms: {'met' if cpu_met else 'missed'}; "
        f"goal 3, import ≤ {IMPORT_GOAL}x boto3: {'met' if import_met else 'missed'} "
        f"({time.perf_counter() - began:.0f} s)"
    )

    fields = {
        "settings": {
            "warm_calls": args.warm_calls,
            "rounds": args.rounds,
            "calls_per_block": args.calls,
            "import_runs": args.import_runs,
        },
        "goals": {
            "requests_per_warm_call": {"goal": REQUESTS_GOAL, "met": requests_met},
            "handler_cpu_ms": {"goal": CPU_GOAL_MS, "met": cpu_met},
            "import_ratio_to_boto3": {"goal": IMPORT_GOAL, "met": import_met},
        },
        "requests": requests,
        "cpu": cpu,
        "imports": imports,
    }
    importdata.write_results(args.output, "webhook_ack", fields, code=code)
    return requests_met and cpu_met and import_met
