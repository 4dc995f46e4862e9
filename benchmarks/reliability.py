"""Reliability under injected faults: every accepted send, import row and inbound message comes out once.

**What.** One local stack (moto in-process, template.yaml with Stage=bench), two orgs, and four flows run
together under one fault plan (devstack/faults.py):

- a marketing WhatsApp broadcast to `--recipients` contacts (org A; contacts made through the bulk route),
  then status receipts (delivered, read; some repeated, some out of order) for every message sent;
- `--transactional` sends of a transactional WhatsApp broadcast through POST .../send, each with its own
  Idempotency-Key, a third in the background (org B), then their receipts;
- a contacts import of `--rows` rows (org A) and `--inbound` inbound WhatsApp messages (org B), the flows
  of tests/accounting_intake.py (left out, and said so, when that module is not there).

The sends go to a stand-in Graph API that answers 429 with Retry-After, fails in bursts of 500/503 and
loses answers (takes the message, then closes the connection): `--provider` rates. The stack injects
`--rates` (raise before the handler, raise after it, SQS duplicate, SQS late) into every function. Each
flow's setup runs before the faults are switched on; then the flows start together (one thread each),
the stack drains, each flow posts its follow-on work (receipts) and the stack drains again, until none
has more. With faults off, each flow's check recounts what came out against what was accepted.

**Why.** Retries, redeliveries and lost answers are where messages get lost or sent twice and counters
drift. The goal: 0 lost, 0 uncounted duplicates (a possible duplicate the sender flags is counted),
every counter equal to its recount, nothing in a dead-letter queue.

**How to read it.** Per ledger: items in, items out, duplicates (counted, uncounted), lost, counter
mismatches; faults injected by kind and function; the provider's faults; DLQ contents; wall time. Exact
counts, reproducible in kind but not in detail: the functions run on several threads (moto's Step
Functions thread, the flows' own), so the order of the fault draws varies between runs.

```
.venv/bin/python -m benchmarks reliability [--recipients 10000] [--transactional 500] [--rows 100000]
    [--inbound 1000] [--seed 1] [--rates 0.02 0.02 0.05 0.05] [--provider 0.01 0.02 0.005]
```
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipients", type=int, default=10_000, help="contacts of the marketing broadcast")
    parser.add_argument("--transactional", type=int, default=500, help="transactional sends")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the contacts import (0: not run)")
    parser.add_argument("--inbound", type=int, default=1000, help="inbound WhatsApp messages (0: not run)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rates",
        type=float,
        nargs=4,
        default=[0.02, 0.02, 0.05, 0.05],
        metavar=("BEFORE", "AFTER", "DUPLICATE", "LATE"),
        help="fault rates: raise before, raise after, SQS duplicate, SQS late",
    )
    parser.add_argument(
        "--provider",
        type=float,
        nargs=3,
        default=[0.01, 0.02, 0.005],
        metavar=("RATE_LIMITED", "SERVER_ERROR", "LOST"),
        help="the stand-in provider's rates: 429, a 5xx burst, a lost answer",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one drain may take")
    parser.add_argument("--output", type=Path, default=RESULTS / "reliability.json")


_STARTED = [time.perf_counter()]


def _progress(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED[0]:5.0f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class _Tenant:
    org_id: str
    api_key: str
    client: Any = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _tenant(stack: Any, name: str, country: str) -> _Tenant:
    from fastapi.testclient import TestClient

    from audience import admin

    created = admin.create_org(name, default_country=country)
    tenant = _Tenant(created["org_id"], created["api_key"])
    tenant.client = TestClient(stack.http_app, headers=tenant.headers)
    return tenant


class _NoInjectedTracebacks(logging.Filter):
    """Drops the log records of injected faults (one per fault, with its traceback); real errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ != "InjectedFault" and "InjectedFault" not in record.getMessage()


class _Quiet(io.TextIOBase):
    """Where the functions' own output goes (log lines, metrics blobs): dropped."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def _scenarios(stack: Any, orgs: list[_Tenant], args: argparse.Namespace, graph: Any) -> tuple[list[Any], list[str]]:
    from tests import accounting_sends as sends

    provider = sends.ProviderFaults(*args.provider)
    notes: list[str] = []
    built: list[Any] = []
    _progress(f"setup: marketing ({args.recipients} contacts), transactional ({args.transactional})")
    built.append(
        sends.MarketingScenario(
            stack, orgs[0], size=args.recipients, seed=args.seed, provider_faults=provider, graph=graph
        )
    )
    built.append(
        sends.TransactionalScenario(
            stack, orgs[1], size=args.transactional, seed=args.seed + 1, provider_faults=provider, graph=graph
        )
    )
    try:
        intake = importlib.import_module("tests.accounting_intake")
    except ImportError as error:
        notes.append(f"tests/accounting_intake.py not importable ({error}): import and inbound flows not run")
        return built, notes
    _progress(f"setup: import ({args.rows} rows), inbound ({args.inbound} messages)")
    for name, org, size in (("ImportScenario", orgs[0], args.rows), ("InboundScenario", orgs[1], args.inbound)):
        if size <= 0:
            notes.append(f"{name}: size 0, not run")
            continue
        scenario = getattr(intake, name, None)
        if scenario is None:
            notes.append(f"tests/accounting_intake.py has no {name}: not run")
            continue
        built.append(scenario(stack, org, size=size, seed=args.seed + len(built)))
    return built, notes


def _together(calls: list[Any]) -> None:
    """Run the calls at the same time, one thread each; the first error is raised once all have ended."""
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        try:
            call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if str(ROOT / "layers" / "audience") not in sys.path:
        sys.path.insert(0, str(ROOT / "layers" / "audience"))
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'body'")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from devstack.faults import FaultPlan
    from devstack.testing import local_stack
    from tests import accounting_sends as sends
    from tests.accounting import dead_letters

    quiet = _NoInjectedTracebacks()
    for handler in logging.getLogger().handlers or [logging.lastResort]:
        if handler is not None:
            handler.addFilter(quiet)
    logging.getLogger("devstack").addFilter(quiet)
    began = _STARTED[0] = time.perf_counter()
    plan = FaultPlan(
        seed=args.seed,
        raise_before=args.rates[0],
        raise_after=args.rates[1],
        sqs_duplicate=args.rates[2],
        sqs_late=args.rates[3],
    )
    with contextlib.redirect_stdout(_Quiet()), local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack:
        from audience import container

        container.reset()
        graph = sends.graph_stand_in(args.seed)
        try:
            orgs = [_tenant(stack, "Reliability A", "ID"), _tenant(stack, "Reliability B", "US")]
            scenarios, notes = _scenarios(stack, orgs, args, graph)
            stack.drain(timeout=args.timeout)  # the setup's own background work, before any fault
            setup_seconds = time.perf_counter() - began
            _progress(f"setup done in {setup_seconds:.0f} s; faults on, {len(scenarios)} flows start together")
            faults = stack.inject_faults(plan)
            started = time.perf_counter()
            _together([scenario.start for scenario in scenarios])
            drains = 1
            stack.drain(timeout=args.timeout)
            while True:
                more = [scenario.next_phase() for scenario in scenarios]
                if not any(more):
                    break
                _progress(f"drain {drains + 1}")
                stack.drain(timeout=args.timeout)
                drains += 1
            run_seconds = time.perf_counter() - started
            stack.inject_faults(None)
            _progress(f"drained in {run_seconds:.0f} s ({drains} drains); checking")
            ledgers = [ledger for scenario in scenarios for ledger in scenario.check()]
            letters = dead_letters(stack)
        finally:
            sends.close_graph_stand_in()
            container.reset()
    wall = time.perf_counter() - began
    clean = all(ledger.clean for ledger in ledgers) and not letters
    result = {
        "benchmark": "reliability",
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "plan": {k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in plan.__dict__.items()},
        "ledgers": [ledger.as_dict() | {"lost_count": len(ledger.lost)} for ledger in ledgers],
        "faults": {"total": faults.total, "by_kind": faults.by_kind(), "by_function": faults.summary()},
        "provider_faults": dict(graph.injected),
        "dead_letters": letters,
        "notes": notes,
        "seconds": {"setup": round(setup_seconds, 1), "run": round(run_seconds, 1), "wall": round(wall, 1)},
        "clean": clean,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    _report(result)
    return clean


def _report(result: dict[str, Any]) -> None:
    print(f"{'ledger':<24} {'in':>7} {'out':>7} {'dup':>5} {'counted':>7} {'uncounted':>9} {'lost':>5} {'mismatch':>8}")
    for ledger in result["ledgers"]:
        print(
            f"{ledger['name']:<24} {ledger['items_in']:>7} {ledger['items_out']:>7} {ledger['duplicates']:>5} "
            f"{ledger['counted_duplicates']:>7} {len(ledger['uncounted_duplicates']):>9} {len(ledger['lost']):>5} "
            f"{len(ledger['counter_mismatches']):>8}"
        )
        for problem in (ledger["lost"] + ledger["uncounted_duplicates"] + ledger["counter_mismatches"])[:5]:
            print(f"    {problem}")
    print(f"\nfaults injected: {result['faults']['total']} {result['faults']['by_kind']}")
    for kind, functions in result["faults"]["by_function"].items():
        print(f"  {kind}: {functions}")
    print(f"provider faults: {result['provider_faults']}")
    print(f"dead letters: {json.dumps(result['dead_letters'])[:500] or '{}'}")
    for note in result["notes"]:
        print(f"note: {note}")
    seconds = result["seconds"]
    print(f"wall time {seconds['wall']} s (setup {seconds['setup']} s, faulted run {seconds['run']} s)")
    print(f"clean: {result['clean']}")
