"""Follow-ups: Step Functions transitions per step and per conversation, and AWS cost per million conversations.

On the local stack (moto, functions in process), with the WhatsApp Cloud API played by a stand-in:

1. `--conversations` contacts each get one outbound message (a template, through the API) and never answer.
   The org's rules send the first follow-up 10 s later, `--follow-ups` follow-ups a second apart, then
   close the conversation with a closing message: every timer runs to its end. For each execution the
   `*StateEntered` events of its history are its billed transitions; reported per conversation and per
   step (a follow-up or the closing). Goal: a bounded number per step, whatever the number of steps.
2. Every AWS request the timers make (Meter of the broadcast benchmark: DynamoDB units from the items as
   stored, Lambda requests and GB-seconds from each invocation's wall time at the function's memory) is
   priced at the broadcast benchmark's prices and scaled to 1,000,000 conversations, with the transitions
   at $0.025 per 1,000. The outbound message that starts a timer, and the provider's own price of each
   message, are not follow-up costs and are left out; the arming the API does (one conditional write, one
   StartExecution) is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
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
SCALE = 1_000_000
TRANSITIONS_PER_STEP_GOAL = 3  # Wait, Step, Continue
IDLE_SECONDS = 10  # longer than sending the outbound messages takes, so no step runs while they are measured


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=int, default=30, help="idle conversations followed up (at most 100)")
    parser.add_argument("--follow-ups", type=int, default=3, help="follow-ups per conversation before closing")
    parser.add_argument("--output", type=Path, default=RESULTS / "follow_ups.json")


def _progress(message: str, began: float) -> None:
    print(f"[{time.perf_counter() - began:4.0f} s] {message}", file=sys.stderr, flush=True)


def _template(name: str) -> dict[str, Any]:
    return {"template": {"name": name, "language": "en", "body": ["Sari"]}}


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import broadcast_send as bench
    from benchmarks import importdata
    from devstack.testing import local_stack

    began = time.perf_counter()
    stub, graph, sink = bench.TelegramStub(), bench.GraphStub(), bench._Sink()
    try:
        with (
            contextlib.redirect_stdout(sink),
            local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack,
            bench.environment(stub, graph),
        ):
            meter = bench.Meter(stack)
            with meter.installed():
                _progress("setup: an org, a WhatsApp connection, contacts and rules through the API", began)
                org = bench.new_org(stack, "Follow-ups")
                phone_number_id = "106540399000001"
                connection_id = bench.whatsapp_connection(org, phone_number_id)
                bench.whatsapp_contacts(org, args.conversations, 3_000_000)
                contacts = org.call("GET", "/contacts", params={"take": 100})["items"][: args.conversations]
                rules = {
                    "enabled": True,
                    "idle_seconds": IDLE_SECONDS,
                    "intervals_seconds": [1],
                    "max_follow_ups": args.follow_ups,
                    "messages": [_template(f"follow_up_{n + 1}") for n in range(args.follow_ups)],
                    "closing": {"after_seconds": 1, "message": _template("closing_survey")},
                }
                org.call("PUT", "/follow-up-rules", json=rules)
                bench.fast_forward_streams(stack)
                _progress(f"{len(contacts)} outbound messages (each starts a timer)", began)
                with meter.measuring("arming"):
                    for contact in contacts:
                        org.call(
                            "POST",
                            f"/contacts/{contact['id']}/messages",
                            201,
                            json={"connection_id": connection_id, **_template("order_update")},
                        )
                _progress("timers running to their end", began)
                with meter.measuring("timers"):
                    stack.drain(timeout=120 + 10 * args.follow_ups)
                sfn = stack.client("stepfunctions")
                arn = stack.resources["FollowUpStateMachine"]
                executions = sfn.list_executions(stateMachineArn=arn)["executions"]
                found = [bench.transitions(stack, e["executionArn"]) for e in executions]
                statuses = sorted({e["status"] for e in executions})
                sent = len(graph.of(phone_number_id))
    finally:
        stub.close()
        graph.close()

    steps = args.follow_ups + 1  # the follow-ups and the closing
    per_conversation = [f["transitions"] for f in found]
    by_state: dict[str, int] = {}
    for f in found:
        for name, count in f["by_state"].items():
            by_state[name] = by_state.get(name, 0) + count
    median = statistics.median(per_conversation)
    timers = bench.bill(meter.usage["timers"], meter.memory, len(contacts), 0)
    arming = bench.bill(meter.usage["arming"], meter.memory, len(contacts), 0)
    sfn_usd = median * bench.PRICES["sfn_transition"] * SCALE
    result = {
        "code_version": importdata.code_version(),
        "conversations": len(contacts),
        "follow_ups": args.follow_ups,
        "steps_per_conversation": steps,
        "execution_statuses": statuses,
        "messages_sent": sent,
        "messages_expected": len(contacts) * (1 + steps),
        "transitions": {
            "per_conversation_median": median,
            "per_conversation_max": max(per_conversation),
            "per_step": round((median - 1) / steps, 2),  # the final Succeed is entered once
            "by_state": {k: round(v / len(found), 2) for k, v in sorted(by_state.items())},
            "goal_per_step": TRANSITIONS_PER_STEP_GOAL,
        },
        "cost_per_million_conversations": {
            "step_functions_usd": round(sfn_usd, 2),
            "timers_usd": timers["usd_per_million"],
            "timers_services": timers["services"],
            "timers_functions": timers["functions"],
            "total_usd": round(sfn_usd + timers["usd_per_million"], 2),
            # Lambda billed by CPU time instead of wall time: on this machine the functions share two cores
            # with moto, so their wall time is mostly waiting; on Lambda it would be closer to this.
            "lambda_cpu_gb_seconds_usd": round(
                sum(f["cpu_gb_seconds_per_recipient"] for f in timers["functions"].values())
                * bench.PRICES["lambda_gb_second"]
                * SCALE,
                2,
            ),
            "arming_in_api_usd": arming["usd_per_million"],
            "arming_requests": {
                op: round(n / len(contacts), 3)
                for (fn, op), n in sorted(meter.usage["arming"].requests.items())
                if op.startswith(("stepfunctions", "sfn"))
            },
        },
        "elapsed_seconds": round(time.perf_counter() - began, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    met = (
        result["transitions"]["per_step"] <= TRANSITIONS_PER_STEP_GOAL
        and sent == result["messages_expected"]
        and statuses == ["SUCCEEDED"]
    )
    cost = result["cost_per_million_conversations"]
    expected = result["messages_expected"]
    per_step = result["transitions"]["per_step"]
    print(f"conversations: {len(contacts)}, {args.follow_ups} follow-ups and a closing each")
    print(f"messages sent: {sent} of {expected}")
    print(f"transitions per conversation: {median} (max {max(per_conversation)}); per step: {per_step}")
    print(f"by state, per conversation: {result['transitions']['by_state']}")
    print(
        f"cost per million conversations: ${cost['total_usd']} (Step Functions ${cost['step_functions_usd']}, "
        f"the rest ${cost['timers_usd']}); arming in the API ${cost['arming_in_api_usd']}"
    )
    goal = f"at most {TRANSITIONS_PER_STEP_GOAL} transitions a step, every message sent once"
    print(f"goal ({goal}): {'met' if met else 'MISSED'}")
    return met
