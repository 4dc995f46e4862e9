"""Marketing runs end to end on the module's local stack: the planner's audience (overlapping segments,
exclusions), the sender's guarantees under redelivery, crashes, provider faults, blocked chats, cancels and
late opt-outs, and the counters, which must always add up and agree with the recipient rows.

Some tests hold SendQueue's messages back (the state machine runs in moto's own thread, so a run is planned
without `drain()`), change something, and put them back before draining."""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections import Counter
from typing import Any

import pytest

from tests.channels import BotApiStub, Tenant
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast

STATUSES = ("pending", "sent", "delivered", "read", "failed", "skipped", "cancelled")
SHARDS = 16
RETRIES = 3  # audience.broadcasts.sender.RETRIES: provider calls per attempt on a transient fault
MAX_RECEIVES = 10  # SendQueue's maxReceiveCount in template.yaml
BAD_GATEWAY = (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
TOO_MANY = (
    429,
    {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    },
)


# -- helpers --------------------------------------------------------------------------------------------


def _url(org: Tenant, suffix: str = "") -> str:
    return f"/orgs/{org.org_id}/broadcasts{suffix}"


def _get(org: Tenant, broadcast_id: str) -> dict[str, Any]:
    answer = org.client.get(_url(org, f"/{broadcast_id}"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _schedule(org: Tenant, broadcast_id: str) -> None:
    answer = org.client.post(_url(org, f"/{broadcast_id}/schedule"), json={})
    assert answer.status_code == 200, answer.text
    # The run may have begun by the time the answer is read (moto starts it in its own thread at once).
    assert answer.json()["status"] in ("SCHEDULED", "SENDING")


def _cancel(org: Tenant, broadcast_id: str) -> None:
    answer = org.client.post(_url(org, f"/{broadcast_id}/cancel"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "CANCELLED"


def _recipients(org: Tenant, broadcast_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"take": 100}
        if cursor:
            params["cursor"] = cursor
        answer = org.client.get(_url(org, f"/{broadcast_id}/recipients"), params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        rows.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


def _by_contact(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["contact_id"]: row for row in rows}


def _audited(org: Tenant, broadcast_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The broadcast and its recipient rows by contact, once the counters are checked against each other and
    against a recount of the rows."""
    view = _get(org, broadcast_id)
    stats = view["stats"]
    rows = _recipients(org, broadcast_id)
    assert sum(stats["by_status"].values()) == stats["total"], stats
    assert len(rows) == stats["total"], (len(rows), stats)
    assert sum(stats["by_channel"].values()) == stats["total"], stats
    recount = Counter(row["status"].lower() for row in rows)
    assert {name: recount.get(name, 0) for name in STATUSES} == stats["by_status"], (recount, stats)
    duplicates = [r for r in rows if r.get("possible_duplicate") and r["status"] in ("SENT", "DELIVERED", "READ")]
    assert len(duplicates) == stats["possible_duplicates"], stats
    by_contact = _by_contact(rows)
    assert len(by_contact) == len(rows), "a contact has two rows on one channel"
    return view, by_contact


def _chats(bot_api: BotApiStub, token: str) -> list[int]:
    """Chat ids the bot's messages reached, in order."""
    return [int(body["chat_id"]) for body in bot_api.sent(token)]


def _executions(stack: Any, broadcast_id: str) -> list[dict[str, Any]]:
    sfn = stack.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=stack.outputs["BroadcastStateMachineArn"], maxResults=1000)
    return [e for e in listed["executions"] if e["name"].startswith(f"{broadcast_id}-")]


def _wait_planned(stack: Any, broadcast_id: str, runs: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    """Wait until the broadcast's `runs` executions ended (planning done) without draining anything."""
    deadline = time.monotonic() + timeout
    while True:
        executions = _executions(stack, broadcast_id)
        if len(executions) >= runs and all(e["status"] != "RUNNING" for e in executions):
            return executions
        assert time.monotonic() < deadline, executions
        time.sleep(0.05)


def _take(stack: Any) -> list[dict[str, Any]]:
    """Every message on SendQueue, deleted from it: the batches the planner sent."""
    sqs, url = stack.client("sqs"), stack.outputs["SendQueueUrl"]
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.extend(json.loads(m["Body"]) for m in messages)
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    return bodies


def _put(stack: Any, bodies: list[dict[str, Any]], url: str | None = None) -> None:
    sqs = stack.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=url or stack.outputs["SendQueueUrl"], MessageBody=json.dumps(body))


def _queued(stack: Any, url: str) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _sqs_event(stack: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One SendQueue message as Lambda's SQS event gives it (as devstack's SqsPoller builds it)."""
    queue_arn = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.outputs["SendQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    text = json.dumps(body)
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "local-receipt",
                "body": text,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": stack.region,
            }
        ]
    }


def _static_segment(org: Tenant, name: str, contact_ids: list[str]) -> str:
    created = org.client.post(f"/orgs/{org.org_id}/segments", json={"name": name, "type": "static"})
    assert created.status_code == 201, created.text
    segment_id = created.json()["id"]
    added = org.client.post(f"/orgs/{org.org_id}/segments/{segment_id}/contacts", json={"contact_ids": contact_ids})
    assert added.status_code == 200, added.text
    assert added.json()["changed"] == len(contact_ids), added.text
    return segment_id


def _patch_contact(org: Tenant, contact_id: str, **fields: Any) -> None:
    answer = org.client.patch(f"/orgs/{org.org_id}/contacts/{contact_id}", json=fields)
    assert answer.status_code == 200, answer.text


def _shard(contact_id: str) -> int:
    return zlib.crc32(contact_id.encode()) % SHARDS


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sender's back-off waits, recorded instead of slept (the pacer still paces)."""
    from audience import container

    waited: list[float] = []
    monkeypatch.setattr(container.broadcast_sender(), "_sleep", waited.append)
    return waited


# -- the audience ---------------------------------------------------------------------------------------


def test_two_overlapping_segments_send_each_contact_once(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 9, start=1)
    first = _static_segment(org, "First", contacts[:6])  # chats 1-6
    second = _static_segment(org, "Second", contacts[3:])  # chats 4-9: 4, 5 and 6 are in both
    draft = text_broadcast(org, connection_id, segment_ids=[first, second])
    stack.drain()

    _schedule(org, draft["id"])
    stack.drain()

    chats = _chats(bot_api, token)
    assert sorted(chats) == list(range(1, 10))
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["total"] == 9
    assert view["stats"]["by_status"]["sent"] == 9
    assert view["stats"]["excluded"] == {}
    assert set(rows) == set(contacts)
    assert {row["attempts"] for row in rows.values()} == {1}


def test_exclusions_are_counted_by_reason_and_never_sent(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    eligible = telegram_contacts(org, 3, start=1)
    unsubscribed, blocked, listed = telegram_contacts(org, 3, start=4)
    _patch_contact(org, unsubscribed, status="UNSUBSCRIBED")
    _patch_contact(org, blocked, status="BLOCKED")
    dnc = org.client.post(f"/orgs/{org.org_id}/do-not-contact", json={"identifier": "6", "channel": "telegram"})
    assert dnc.status_code == 201, dnc.text
    email_only = org.client.post(f"/orgs/{org.org_id}/contacts", json={"first_name": "E", "email": "e@example.com"})
    assert email_only.status_code == 201, email_only.text
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    _schedule(org, draft["id"])
    stack.drain()

    assert sorted(_chats(bot_api, token)) == [1, 2, 3]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["total"] == 3
    assert view["stats"]["by_status"]["sent"] == 3
    assert view["stats"]["excluded"] == {"unsubscribed": 1, "blocked": 1, "do_not_contact": 1, "no_address": 1}
    assert set(rows) == set(eligible)
    assert not {unsubscribed, blocked, listed, email_only.json()["id"]} & set(rows)


def test_no_eligible_contact_ends_sent_with_nothing_to_send(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    (gone,) = telegram_contacts(org, 1, start=1)
    _patch_contact(org, gone, status="UNSUBSCRIBED")
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    _schedule(org, draft["id"])
    _wait_planned(stack, draft["id"])
    assert _queued(stack, stack.outputs["SendQueueUrl"]) == 0  # no batch without recipients
    stack.drain()

    assert bot_api.sent(token) == []
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["total"] == 0
    assert view["stats"]["by_status"] == dict.fromkeys(STATUSES, 0)
    assert view["stats"]["excluded"] == {"unsubscribed": 1}
    assert rows == {}


# -- redelivery and crashes -----------------------------------------------------------------------------


def test_every_batch_delivered_twice_sends_each_recipient_once(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 6, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    _schedule(org, draft["id"])
    _wait_planned(stack, draft["id"])
    batches = _take(stack)
    assert len(batches) == len({_shard(c) for c in contacts})  # a page per shard holding contacts
    assert sum(len(b["recipients"]) for b in batches) == 6
    _put(stack, batches + batches)
    counts = stack.drain()

    assert counts["SenderFunction:Marketing"] == 2 * len(batches)
    assert sorted(_chats(bot_api, token)) == [1, 2, 3, 4, 5, 6]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 6
    assert view["stats"]["possible_duplicates"] == 0
    assert [r.get("possible_duplicate") for r in rows.values()] == [None] * 6
    assert {row["attempts"] for row in rows.values()} == {1}


def test_a_crash_between_the_send_and_its_record_resends_as_possible_duplicate(
    stack: Any, bot_api: BotApiStub, org: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience.broadcasts import sender
    from audience.broadcasts.repository import BroadcastsRepository

    monkeypatch.setattr(sender, "LEASE_SECONDS", 1)  # the stopped attempt's hold runs out in a second
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 5, start=1)
    victims = set(contacts[:2])  # chats 1 and 2
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    finish = BroadcastsRepository.finish
    crashed: list[str] = []

    def crash_once(self: Any, item: dict[str, Any], outcome: str, at: str, **fields: Any) -> dict[str, Any]:
        if outcome == "SENT" and item["contact_id"] in victims and item["contact_id"] not in crashed:
            crashed.append(item["contact_id"])
            raise RuntimeError("the sender stopped after the provider took the message")
        return finish(self, item, outcome, at, **fields)

    monkeypatch.setattr(BroadcastsRepository, "finish", crash_once)
    _schedule(org, draft["id"])
    counts = stack.drain()

    assert sorted(crashed) == sorted(victims)
    # A batch per shard holding contacts, and one redelivery per crash.
    assert counts["SenderFunction:Marketing"] == len({_shard(c) for c in contacts}) + 2
    assert sorted(_chats(bot_api, token)) == [1, 1, 2, 2, 3, 4, 5]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 5
    assert view["stats"]["possible_duplicates"] == 2
    for contact_id in contacts:
        row = rows[contact_id]
        assert row["status"] == "SENT"
        assert row.get("possible_duplicate") == (True if contact_id in victims else None)
        assert row["attempts"] == (2 if contact_id in victims else 1)


def test_a_batch_delivered_again_while_still_sending_sends_nobody_twice(
    stack: Any, bot_api: BotApiStub, org: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience import container
    from audience.broadcasts import sender
    from audience.broadcasts.repository import BroadcastsRepository

    monkeypatch.setattr(sender, "LEASE_SECONDS", 3)
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 1, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()
    _schedule(org, draft["id"])
    _wait_planned(stack, draft["id"])
    (batch,) = _take(stack)

    link = BroadcastsRepository.link_message
    overlapped: list[threading.Thread] = []
    second: list[Any] = []

    def second_delivery_meanwhile(self: Any, *args: Any, **kwargs: Any) -> None:
        # The first delivery has handed the message to Telegram and not yet recorded it: a second sender
        # (another execution environment) gets the same batch now, and runs alongside.
        if not overlapped:
            other = container.broadcast_sender.__wrapped__()
            thread = threading.Thread(target=lambda: second.append(other.process(json.loads(json.dumps(batch)))))
            overlapped.append(thread)
            thread.start()
            time.sleep(0.3)  # the second delivery reads the row while the first still holds it
        link(self, *args, **kwargs)

    monkeypatch.setattr(BroadcastsRepository, "link_message", second_delivery_meanwhile)
    _put(stack, [batch])
    stack.drain()
    overlapped[0].join(10)

    assert len(overlapped) == 1
    assert [row["status"] for row in second[0]] == ["SENT"]  # it waited for the first and saw it sent
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert _chats(bot_api, token) == [1]
    assert [r.get("possible_duplicate") for r in rows.values()] == [None]


# -- provider faults ------------------------------------------------------------------------------------


def test_rate_limited_once_waits_retry_after_then_sends_everyone_once(
    stack: Any, bot_api: BotApiStub, org: Tenant, sleeps: list[float]
) -> None:
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 3, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    bot_api.faults.append(TOO_MANY)
    _schedule(org, draft["id"])
    stack.drain()

    assert bot_api.faults == []
    assert sleeps == [1.0]  # the retry_after Telegram gave
    assert sorted(_chats(bot_api, token)) == [1, 2, 3]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 3
    assert view["stats"]["by_status"]["failed"] == 0
    assert {row["attempts"] for row in rows.values()} == {1}


def test_a_burst_of_5xx_shorter_than_the_retries_sends_everyone_once(
    stack: Any, bot_api: BotApiStub, org: Tenant, sleeps: list[float]
) -> None:
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 3, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    bot_api.faults.extend([BAD_GATEWAY] * (RETRIES - 1))
    _schedule(org, draft["id"])
    stack.drain()

    assert bot_api.faults == []
    assert sleeps == [0.5, 1.0]  # backing off within the one attempt
    assert sorted(_chats(bot_api, token)) == [1, 2, 3]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 3
    assert view["stats"]["by_status"]["failed"] == 0
    assert {row["attempts"] for row in rows.values()} == {1}


def test_a_longer_5xx_outage_releases_the_row_and_sqs_retries_until_sent(
    stack: Any, bot_api: BotApiStub, org: Tenant, sleeps: list[float]
) -> None:
    connection_id, token = telegram_connection(org)
    (contact,) = telegram_contacts(org, 1, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    bot_api.faults.extend([BAD_GATEWAY] * (2 * RETRIES + 1))  # two whole attempts and one more fault
    _schedule(org, draft["id"])
    counts = stack.drain()

    assert bot_api.faults == []
    assert counts["SenderFunction:Marketing"] == 3  # the batch, received three times
    assert _chats(bot_api, token) == [1]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 1
    assert view["stats"]["possible_duplicates"] == 0
    assert rows[contact]["attempts"] == 3
    assert rows[contact].get("possible_duplicate") is None
    assert _queued(stack, stack.outputs["SendDLQUrl"]) == 0


def test_an_outage_outlasting_every_receive_parks_the_batch_in_the_dlq_until_redriven(
    stack: Any, bot_api: BotApiStub, org: Tenant, sleeps: list[float]
) -> None:
    connection_id, token = telegram_connection(org)
    (contact,) = telegram_contacts(org, 1, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()
    dlq = stack.outputs["SendDLQUrl"]
    assert _queued(stack, dlq) == 0

    bot_api.faults.extend([BAD_GATEWAY] * (RETRIES * MAX_RECEIVES + 5))
    _schedule(org, draft["id"])
    counts = stack.drain()

    assert counts["SenderFunction:Marketing"] == MAX_RECEIVES
    assert len(bot_api.faults) == 5  # each receive called Telegram RETRIES times
    assert bot_api.sent(token) == []
    assert _queued(stack, dlq) == 1
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENDING"
    assert view["stats"]["by_status"]["pending"] == 1
    assert rows[contact]["status"] == "PENDING"
    assert rows[contact]["attempts"] == MAX_RECEIVES

    # The outage is over: redrive the DLQ onto SendQueue.
    bot_api.faults.clear()
    parked = stack.client("sqs").receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    _put(stack, [json.loads(m["Body"]) for m in parked])
    stack.client("sqs").delete_message(QueueUrl=dlq, ReceiptHandle=parked[0]["ReceiptHandle"])
    stack.drain()

    assert _chats(bot_api, token) == [1]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 1
    assert view["stats"]["possible_duplicates"] == 0
    assert rows[contact]["attempts"] == MAX_RECEIVES + 1


def test_a_blocked_chat_fails_with_403_and_the_others_are_sent(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 4, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    bot_api.blocked.add("3")
    _schedule(org, draft["id"])
    stack.drain()

    assert sorted(_chats(bot_api, token)) == [1, 2, 4]
    attempted = [b for p, b in bot_api.calls if p == f"/bot{token}/sendMessage" and str(b.get("chat_id")) == "3"]
    assert len(attempted) == 1  # a permanent refusal is not retried
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 3
    assert view["stats"]["by_status"]["failed"] == 1
    assert view["stats"]["failed"] == 1
    blocked = rows[contacts[2]]
    assert blocked["status"] == "FAILED"
    assert blocked["error_code"] == "403"
    assert "blocked" in blocked["error_title"]
    assert [rows[c]["status"] for c in contacts if c != contacts[2]] == ["SENT"] * 3
    # The bot blocked is a reachability fact: the contact is unreachable on Telegram, the others are not.
    quality = org.client.get(f"/orgs/c/contacts/{contacts[2]}").json()["quality"]
    assert quality["reachability"]["telegram"] == 10
    assert "unreachable_telegram" in quality["system_tags"]
    assert org.client.get(f"/orgs/c/contacts/{contacts[0]}").json()["quality"]["reachability"]["telegram"] == 50


# -- cancel and late opt-outs ---------------------------------------------------------------------------


def test_cancel_midway_cancels_the_rest_and_a_new_run_sends_only_them(
    stack: Any, bot_api: BotApiStub, org: Tenant
) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 8, start=1)
    chat_of = {contact_id: n for n, contact_id in enumerate(contacts, start=1)}
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    _schedule(org, draft["id"])
    _wait_planned(stack, draft["id"])
    batches = _take(stack)
    assert len(batches) >= 2
    assert sum(len(b["recipients"]) for b in batches) == 8
    first, rest = batches[0], batches[1:]
    answer = stack.invoke("SenderFunction", _sqs_event(stack, first))
    assert answer == {"batchItemFailures": []}
    sent_first = sorted(_chats(bot_api, token))
    assert len(sent_first) == len(first["recipients"])
    view, _ = _audited(org, draft["id"])
    assert view["status"] == "SENDING"
    assert view["stats"]["by_status"]["pending"] == 8 - len(sent_first)

    _cancel(org, draft["id"])
    _put(stack, rest)
    stack.drain()

    assert sorted(_chats(bot_api, token)) == sent_first  # nothing left after the cancel
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "CANCELLED"
    assert view["stats"]["by_status"]["sent"] == len(sent_first)
    assert view["stats"]["by_status"]["cancelled"] == 8 - len(sent_first)
    assert view["stats"]["by_status"]["pending"] == 0
    cancelled = {c for c, row in rows.items() if row["status"] == "CANCELLED"}
    assert sorted(chat_of[c] for c in set(contacts) - cancelled) == sent_first

    _schedule(org, draft["id"])
    stack.drain()

    chats = _chats(bot_api, token)
    assert sorted(chats) == list(range(1, 9))  # everyone once: the second run sent only the cancelled
    assert sorted(chats[len(sent_first) :]) == sorted(chat_of[c] for c in cancelled)
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["total"] == 8
    assert view["stats"]["by_status"]["sent"] == 8
    assert view["stats"]["by_status"]["cancelled"] == 0
    assert view["stats"]["possible_duplicates"] == 0
    assert len(_executions(stack, draft["id"])) == 2


def test_cancel_during_a_batch_stops_its_next_message(
    stack: Any, bot_api: BotApiStub, org: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience.broadcasts.repository import BroadcastsRepository

    connection_id, token = telegram_connection(org)
    # Two contacts of one shard: the planner puts them in one batch.
    by_shard: dict[int, list[str]] = {}
    chat_of: dict[str, int] = {}
    n = 0
    while max((len(v) for v in by_shard.values()), default=0) < 2:
        n += 1
        (contact_id,) = telegram_contacts(org, 1, start=n)
        chat_of[contact_id] = n
        by_shard.setdefault(_shard(contact_id), []).append(contact_id)
    pair = next(v for v in by_shard.values() if len(v) == 2)
    segment_id = _static_segment(org, "Pair", pair)
    draft = text_broadcast(org, connection_id, segment_ids=[segment_id])
    stack.drain()

    link = BroadcastsRepository.link_message

    def cancel_after_first(self: Any, *args: Any, **kwargs: Any) -> None:
        link(self, *args, **kwargs)
        if _get(org, draft["id"])["status"] == "SENDING":
            _cancel(org, draft["id"])

    monkeypatch.setattr(BroadcastsRepository, "link_message", cancel_after_first)
    _schedule(org, draft["id"])
    stack.drain()

    view, rows = _audited(org, draft["id"])
    assert view["status"] == "CANCELLED"
    assert len(_chats(bot_api, token)) == 1
    assert view["stats"]["by_status"]["cancelled"] == 1
    assert sorted(row["status"] for row in rows.values()) == ["CANCELLED", "SENT"]


def test_an_unsubscribe_after_planning_skips_the_recipient(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 3, start=1)
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    _schedule(org, draft["id"])
    _wait_planned(stack, draft["id"])
    batches = _take(stack)
    planned, _ = _audited(org, draft["id"])
    assert planned["stats"]["by_status"]["pending"] == 3
    _patch_contact(org, contacts[1], status="UNSUBSCRIBED")
    _put(stack, batches)
    stack.drain()

    assert sorted(_chats(bot_api, token)) == [1, 3]
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["total"] == 3
    assert view["stats"]["by_status"]["sent"] == 2
    assert view["stats"]["by_status"]["skipped"] == 1
    assert view["stats"]["excluded"] == {}
    skipped = rows[contacts[1]]
    assert skipped["status"] == "SKIPPED"
    assert skipped["reason"] == "unsubscribed"
    assert skipped.get("attempts") is None  # never handed to Telegram


def test_a_rescheduled_run_counts_each_excluded_contact_once(stack: Any, bot_api: BotApiStub, org: Tenant) -> None:
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 3, start=1)
    _patch_contact(org, contacts[2], status="UNSUBSCRIBED")
    draft = text_broadcast(org, connection_id, audience_all=True)
    stack.drain()

    _schedule(org, draft["id"])
    _wait_planned(stack, draft["id"])
    batches = _take(stack)
    _cancel(org, draft["id"])
    _put(stack, batches)
    stack.drain()
    view, _ = _audited(org, draft["id"])
    assert view["stats"]["by_status"]["cancelled"] == 2
    assert view["stats"]["excluded"] == {"unsubscribed": 1}

    _schedule(org, draft["id"])
    stack.drain()

    assert sorted(_chats(bot_api, token)) == [1, 2]
    view, _ = _audited(org, draft["id"])
    assert view["status"] == "SENT"
    assert view["stats"]["by_status"]["sent"] == 2
    assert view["stats"]["excluded"] == {"unsubscribed": 1}


# -- the state machine ----------------------------------------------------------------------------------


def test_a_run_takes_the_same_few_transitions_whatever_the_audience_size(
    stack: Any, bot_api: BotApiStub, org: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audience.broadcasts import planner

    connection_id, token = telegram_connection(org)

    def run(chats: int) -> tuple[list[str], int]:
        draft = text_broadcast(org, connection_id, audience_all=True)
        stack.drain()
        _schedule(org, draft["id"])
        counts = stack.drain()
        view, _ = _audited(org, draft["id"])
        assert view["status"] == "SENT"
        assert view["stats"]["by_status"]["sent"] == chats
        (execution,) = _executions(stack, draft["id"])
        assert execution["status"] == "SUCCEEDED"
        history = stack.client("stepfunctions").get_execution_history(
            executionArn=execution["executionArn"], maxResults=1000
        )["events"]
        return [e["type"] for e in history], counts["SenderFunction:Marketing"]

    telegram_contacts(org, 5, start=1)
    small, small_batches = run(5)
    # A page of one contact: 30 contacts take as many pages as 3,000 would at the planner's 100 a page.
    monkeypatch.setattr(planner, "PAGE", 1)
    telegram_contacts(org, 25, start=6)
    large, large_batches = run(30)

    assert len(_chats(bot_api, token)) == 35
    assert small_batches <= 5
    assert large_batches == 30  # one batch per page
    assert abs(len(large) - len(small)) <= 2
    assert len(small) <= 25
    assert Counter(large)["TaskScheduled"] == Counter(small)["TaskScheduled"] == 2  # Start, then one Plan
