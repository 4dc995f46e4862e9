"""Sending under faults: a marketing broadcast and transactional sends, with handlers raising before and
after their work, SQS messages delivered twice and late, Step Functions tasks retried, and a provider that
rate-limits, fails in bursts and loses answers; then receipts. Every ledger must come out clean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.faults import FaultPlan
from tests.accounting import dead_letters
from tests.accounting_sends import (
    GraphStandIn,
    MarketingScenario,
    ProviderFaults,
    TransactionalScenario,
    close_graph_stand_in,
    graph_stand_in,
)

SEED = 7
PLAN = FaultPlan(seed=SEED, raise_before=0.08, raise_after=0.08, sqs_duplicate=0.15, sqs_late=0.1)
PROVIDER = ProviderFaults(rate_limited=0.02, server_error=0.03, response_lost=0.03)


@pytest.fixture
def graph(stack: Any) -> Iterator[GraphStandIn]:
    yield graph_stand_in(SEED)
    close_graph_stand_in()


def test_every_send_comes_out_once_or_as_a_counted_duplicate(
    stack: Any, org: Any, other_org: Any, graph: GraphStandIn
) -> None:
    # Given a marketing broadcast to 150 contacts and 30 transactional sends, set up with no faults
    scenarios = [
        MarketingScenario(stack, org, size=150, seed=SEED, provider_faults=PROVIDER, graph=graph),
        TransactionalScenario(stack, other_org, size=30, seed=SEED + 1, provider_faults=PROVIDER, graph=graph),
    ]

    # When the work is accepted and drained while every kind of fault is injected
    faults = stack.inject_faults(PLAN)
    for scenario in scenarios:
        scenario.start()
    stack.drain(timeout=600)
    while any([scenario.next_phase() for scenario in scenarios]):
        stack.drain(timeout=600)
    stack.inject_faults(None)

    # Then every kind of fault happened, and every ledger is clean
    injected = faults.by_kind()
    assert all(count > 0 for count in injected.values()), faults.summary()
    assert all(graph.injected[kind] > 0 for kind in ("rate_limited", "server_error", "response_lost")), graph.injected
    ledgers = [ledger for scenario in scenarios for ledger in scenario.check()]
    report = json.dumps([ledger.as_dict() for ledger in ledgers], indent=1)
    assert all(ledger.clean for ledger in ledgers), report
    assert [ledger.items_out for ledger in ledgers] == [150, 150, 30, 30], report
    assert dead_letters(stack) == {}
