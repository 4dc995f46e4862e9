"""Contact quality: extra DynamoDB write units per inbound message and per status caused by scores and metrics.

On the local stack (moto, functions in process), through the real webhook path (signed WhatsApp calls,
WebhookFunction, InboundQueue, InboundFunction, then the contacts table's stream and its two consumers):

- Each of `--contacts` WhatsApp contacts wrote once before (not measured: the first message adds the
  channel and creates the conversation) and has one outbound message of the stack on record.
- Rounds alternate two modes on fresh contacts: **off** (the fact is not recorded: `record_signal` does
  nothing) and **on** (the product as it ships). Each round posts one inbound message per contact, drains
  everything, then one `delivered` and one `read` status per contact's outbound message, and drains again.
- Write and read units are the Meter's of the broadcast benchmark: from the items as moto stores them
  (each write's larger of old and new size, per 1 KB; transactional writes twice), across every function,
  so stream consumers woken by the extra write are counted too. Figures are medians over rounds of the
  per-event units; the extra is on minus off, measured side by side. Goal: at most 1 extra WU per inbound
  message and per status.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"
EXTRA_WU_GOAL = 1.0
MODES = ("off", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=20, help="contacts per round and mode")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with both modes")
    parser.add_argument("--output", type=Path, default=RESULTS / "contact_quality.json")


def _progress(message: str, began: float) -> None:
    print(f"[{time.perf_counter() - began:4.0f} s] {message}", file=sys.stderr, flush=True)


def _signed(body: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}


def _inbound(phone_number_id: str, wamid: str, wa_id: str, at: int) -> dict[str, Any]:
    payload = json.loads((ROOT / "events" / "webhook_whatsapp_text.json").read_text())
    value = payload["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = phone_number_id
    value["contacts"][0]["wa_id"] = wa_id
    value["messages"][0].update({"id": wamid, "from": wa_id, "timestamp": str(at), "text": {"body": "Halo"}})
    return payload


def _units(usage: Any) -> tuple[int, int]:
    return sum(usage.wu.values()), sum(usage.ru.values())


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from fastapi.testclient import TestClient

    from audience import clock, container
    from audience.contacts.repository import ContactsRepository
    from benchmarks import broadcast_send as bench
    from benchmarks import importdata
    from devstack.testing import local_stack

    code = importdata.code_version()
    began = time.perf_counter()
    stub, graph, sink = bench.TelegramStub(), bench.GraphStub(), bench._Sink()
    recorded = ContactsRepository.record_signal
    per_event: dict[str, dict[str, list[float]]] = {
        f"{kind}_{mode}_{unit}": {"values": []}
        for kind in ("message", "status")
        for mode in MODES
        for unit in ("wu", "ru")
    }
    by_function: dict[str, dict[str, int]] = {}
    try:
        with (
            contextlib.redirect_stdout(sink),
            local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack,
            bench.environment(stub, graph),
        ):
            meter = bench.Meter(stack)
            with meter.installed():
                _progress("setup: an org, a WhatsApp connection, a reachability segment, contacts", began)
                org = bench.new_org(stack, "Quality")
                phone_number_id = "106540399100001"
                connection_id = bench.whatsapp_connection(org, phone_number_id)
                rules = {
                    "match": "all",
                    "rules": [{"attribute": "reachability.whatsapp", "operator": "greater_or_equal", "value": 70}],
                }
                org.call("POST", "/segments", 201, json={"name": "Reachable", "type": "dynamic", "rules": rules})
                total = args.contacts * args.rounds * len(MODES)
                bench.whatsapp_contacts(org, total, 5_000_000)
                hooks = TestClient(stack.http_app)

                def post(body: dict[str, Any]) -> None:
                    raw, headers = _signed(body, bench.APP_SECRET)
                    answer = hooks.post(f"/webhooks/{connection_id}", content=raw, headers=headers)
                    if answer.status_code != 200:
                        raise RuntimeError(f"webhook: {answer.status_code} {answer.text[:300]}")

                phones = [f"62811{5_000_000 + n:07d}" for n in range(total)]
                now = int(time.time())
                for n, wa_id in enumerate(phones):  # the first message: adds the channel, opens the conversation
                    post(_inbound(phone_number_id, f"wamid.first-{n}", wa_id, now))
                stack.drain(timeout=600)
                contact_ids: dict[str, str] = {}
                cursor = None
                while True:
                    page = org.call("GET", "/contacts", params={"take": 100, **({"cursor": cursor} if cursor else {})})
                    contact_ids.update({c["phone"].lstrip("+"): c["id"] for c in page["items"]})
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                for n, wa_id in enumerate(phones):  # an outbound message of the stack, on record
                    container.inbound_repository().record_message(
                        org_id=org.org_id,
                        contact_id=contact_ids[wa_id],
                        channel="whatsapp",
                        connection_id=connection_id,
                        provider_id=f"wamid.out-{n}",
                        direction="outbound",
                        at=clock.now_iso(),
                        entry={"kind": "text", "text": "Thanks"},
                        activity=None,
                    )
                stack.drain(timeout=600)
                _progress(f"  {total} contacts ready", began)
                n = 0
                for round_ in range(args.rounds):
                    for mode in MODES:
                        group = list(range(n, n + args.contacts))
                        n += args.contacts
                        if mode == "off":
                            ContactsRepository.record_signal = lambda *_a, **_k: True  # type: ignore[method-assign]
                        try:
                            with meter.measuring(f"r{round_}-{mode}-message") as usage:
                                for i in group:
                                    post(_inbound(phone_number_id, f"wamid.again-{i}", phones[i], now + 1))
                                stack.drain(timeout=600)
                            wu, ru = _units(usage)
                            per_event[f"message_{mode}_wu"]["values"].append(wu / len(group))
                            per_event[f"message_{mode}_ru"]["values"].append(ru / len(group))
                            by_function[f"r{round_}-{mode}-message"] = dict(usage.wu)
                            with meter.measuring(f"r{round_}-{mode}-status") as usage:
                                for status, at in (("delivered", now + 2), ("read", now + 3)):
                                    for i in group:
                                        post(
                                            json.loads(
                                                bench.whatsapp_status(
                                                    phone_number_id, f"wamid.out-{i}", status, phones[i], at
                                                )
                                            )
                                        )
                                stack.drain(timeout=600)
                            wu, ru = _units(usage)
                            per_event[f"status_{mode}_wu"]["values"].append(wu / (2 * len(group)))
                            per_event[f"status_{mode}_ru"]["values"].append(ru / (2 * len(group)))
                            by_function[f"r{round_}-{mode}-status"] = dict(usage.wu)
                        finally:
                            ContactsRepository.record_signal = recorded  # type: ignore[method-assign]
                    _progress(f"  round {round_ + 1} of {args.rounds}", began)
                check = org.call("GET", f"/contacts/{contact_ids[phones[-1]]}")
                engagement = check["engagement"]
                if (engagement["messages_replied_30d"], engagement["messages_read_30d"]) != (2, 1):
                    raise RuntimeError(f"the last contact's metrics are not what was sent: {engagement}")
    finally:
        stub.close()
        graph.close()
    for figure in per_event.values():
        figure["median"] = round(statistics.median(figure["values"]), 2)
        figure["values"] = [round(v, 2) for v in figure["values"]]
    extra = {
        kind: {
            "wu": round(per_event[f"{kind}_on_wu"]["median"] - per_event[f"{kind}_off_wu"]["median"], 2),
            "ru": round(per_event[f"{kind}_on_ru"]["median"] - per_event[f"{kind}_off_ru"]["median"], 2),
            "ratio_wu": round(per_event[f"{kind}_on_wu"]["median"] / per_event[f"{kind}_off_wu"]["median"], 3),
        }
        for kind in ("message", "status")
    }
    met = all(extra[kind]["wu"] <= EXTRA_WU_GOAL for kind in extra)
    seconds = time.perf_counter() - began
    report(per_event, extra, met, args)
    importdata.write_results(
        args.output,
        "contact_quality",
        {
            "settings": {"contacts": args.contacts, "rounds": args.rounds},
            "goals": {"extra_wu_per_event": {"goal": EXTRA_WU_GOAL, "met": met}},
            "per_event": per_event,
            "extra": extra,
            "wu_by_function": by_function,
            "function_output_chars": sink.chars,
            "seconds": round(seconds, 1),
        },
        code=code,
    )
    return met


def report(per_event: dict[str, Any], extra: dict[str, Any], met: bool, args: argparse.Namespace) -> None:
    print(
        f"DynamoDB units per event, median of {args.rounds} rounds of {args.contacts} contacts per mode "
        "(every function, stream consumers included):\n"
    )
    print("| Event | WU off | WU on | Extra WU | Ratio | RU off | RU on | Extra RU | Goal | Result |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for kind, label in (("message", "inbound message"), ("status", "status (delivered, read)")):
        print(
            f"| {label} | {per_event[f'{kind}_off_wu']['median']} | {per_event[f'{kind}_on_wu']['median']} "
            f"| **{extra[kind]['wu']}** | {extra[kind]['ratio_wu']} | {per_event[f'{kind}_off_ru']['median']} "
            f"| {per_event[f'{kind}_on_ru']['median']} | {extra[kind]['ru']} | ≤ {EXTRA_WU_GOAL} "
            f"| {'met' if extra[kind]['wu'] <= EXTRA_WU_GOAL else 'NOT met'} |"
        )
    print(f"\nGoal {'met' if met else 'NOT met'}.")
