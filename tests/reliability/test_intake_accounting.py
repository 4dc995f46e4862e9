"""The accounting of intake on the local stack: a contacts import and a stream of inbound WhatsApp webhook
calls, with and without injected faults (handlers raising before or after their work, SQS messages
delivered twice or late). After the drain every row and every message is accounted for exactly once, no
contact is duplicated, every counter equals its recount and no dead-letter queue holds anything."""

from __future__ import annotations

from typing import Any

from devstack.faults import FaultPlan
from tests.accounting import Ledger, dead_letters
from tests.accounting_intake import ImportScenario, InboundScenario

SEED = 20261124
IMPORT_ROWS = 200
INBOUND_MESSAGES = 60


def _account(stack: Any, scenarios: list[Any], plan: FaultPlan | None = None) -> tuple[list[Ledger], Any]:
    """Run the scenarios under `plan` (start, then drain and move each to its next phase until none needs
    another drain), stop the faults, drain once more and check: the ledgers and what was injected."""
    faults = stack.inject_faults(plan) if plan is not None else None
    for scenario in scenarios:
        scenario.start()
    for _ in range(10):
        stack.drain(timeout=600)
        if not [scenario for scenario in scenarios if scenario.next_phase()]:
            break
    else:
        raise AssertionError("the scenarios kept asking for another drain")
    stack.inject_faults(None)
    stack.drain(timeout=600)
    return [ledger for scenario in scenarios for ledger in scenario.check()], faults


def _assert_clean(stack: Any, ledgers: list[Ledger]) -> None:
    for ledger in ledgers:
        assert ledger.clean, ledger.as_dict()
        assert ledger.items_out == ledger.items_in, ledger.as_dict()
    assert dead_letters(stack) == {}


def test_under_faults_every_row_and_every_message_comes_out_once(stack, org, other_org):
    # Given an import with every kind of row and a stream of retried webhook calls, while handlers fail
    # before and after their work and SQS delivers messages twice or late
    plan = FaultPlan(seed=SEED, raise_before=0.1, raise_after=0.1, sqs_duplicate=0.1, sqs_late=0.1)
    scenarios = [
        ImportScenario(stack, org, size=IMPORT_ROWS, seed=SEED),
        InboundScenario(stack, other_org, size=INBOUND_MESSAGES, seed=SEED),
    ]

    # When everything has drained
    ledgers, faults = _account(stack, scenarios, plan)

    # Then faults were injected, yet nothing is lost, doubled or miscounted
    assert faults.total > 0
    assert [ledger.name for ledger in ledgers] == ["import", "inbound messages"]
    _assert_clean(stack, ledgers)


def test_import_tasks_and_api_calls_failing_before_and_after_their_work_change_no_outcome(stack, org):
    # The import's own functions fail often: the API (a client sends the call again), and each task of
    # the import state machine (analyse, split, chunk, finish), which Step Functions retries.
    plan = FaultPlan(
        seed=SEED, raise_before=0.3, raise_after=0.3, functions=frozenset({"ApiFunction", "ImportFunction"})
    )
    ledgers, faults = _account(stack, [ImportScenario(stack, org, size=80, seed=SEED + 1)], plan)
    assert faults.total > 0
    _assert_clean(stack, ledgers)


def test_without_faults_the_planted_outcomes_come_out(stack, org, other_org):
    ledgers, _ = _account(
        stack,
        [
            ImportScenario(stack, org, size=60, seed=SEED + 2),
            InboundScenario(stack, other_org, size=20, seed=SEED + 2),
        ],
    )
    _assert_clean(stack, ledgers)
