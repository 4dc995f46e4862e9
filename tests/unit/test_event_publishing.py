"""The stream consumers when EventBridge refuses events: the batch is reported failed from the first record
that has events, so Lambda retries from there (ids stay the same on the retry); and a record that fails on
its own (its duty, or its events cannot be worked out) does not hold back the events of the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from audience.events import PublishError

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _refuse(self: Any, events: Any) -> int:
    raise PublishError("EventBridge refused 1 of 1 events: ThrottlingException")


def _activity_record(sequence: str) -> dict[str, Any]:
    """A record that states no event (an activity entry of no interest)."""
    pk = {"S": "O#org_1#C#ct_1"}
    sk = {"S": "A#2026-11-23T10:00:00.000Z#x"}
    return {
        "eventID": f"e{sequence}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": pk, "sk": sk},
            "NewImage": {"pk": pk, "sk": sk, "type": {"S": "updated"}, "at": {"S": "2026-11-23T10:00:00.000Z"}},
            "SequenceNumber": sequence,
            "ApproximateCreationDateTime": 1795428900,
        },
    }


def test_contact_stream_retries_from_the_first_record_with_events(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    insert = json.loads((EVENTS / "contact_stream_insert.json").read_text())["Records"][0]
    batch = {"Records": [_activity_record("1"), insert, _activity_record("9" * 21)]}
    assert stack.invoke("ContactStreamFunction", batch) == {"batchItemFailures": []}

    monkeypatch.setattr("audience.events.publisher.EventPublisher.publish", _refuse)
    failed = stack.invoke("ContactStreamFunction", batch)
    assert failed == {"batchItemFailures": [{"itemIdentifier": insert["dynamodb"]["SequenceNumber"]}]}


def test_broadcast_stream_retries_from_the_first_record_with_events(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = json.loads((EVENTS / "broadcast_stream_batch.json").read_text())
    assert stack.invoke("BroadcastStreamFunction", batch) == {"batchItemFailures": []}

    monkeypatch.setattr("audience.events.publisher.EventPublisher.publish", _refuse)
    failed = stack.invoke("BroadcastStreamFunction", batch)
    assert failed == {"batchItemFailures": [{"itemIdentifier": batch["Records"][0]["dynamodb"]["SequenceNumber"]}]}


def _contact_record(sequence: str, name: str, contact_id: str, **image: Any) -> dict[str, Any]:
    pk = {"S": f"O#org_1#C#{contact_id}"}
    item = {"pk": pk, "sk": {"S": "#CONTACT"}, "type": {"S": "contact"}, "org_id": {"S": "org_1"}, **image}
    return {
        "eventID": f"e{sequence}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": pk, "sk": {"S": "#CONTACT"}},
            "OldImage" if name == "REMOVE" else "NewImage": item,
            "SequenceNumber": sequence,
            "ApproximateCreationDateTime": 1795428900,
        },
    }


def _created(sequence: str, contact_id: str) -> dict[str, Any]:
    return _contact_record(
        sequence,
        "INSERT",
        contact_id,
        id={"S": contact_id},
        status={"S": "SUBSCRIBED"},
        created_at={"S": "2026-11-23T10:15:00.412Z"},
        version={"N": "1"},
    )


class _Capture:
    def __init__(self, refuse: bool = False) -> None:
        self.published: list[Any] = []
        self.refuse = refuse

    @property
    def publish(self) -> Any:
        """A replacement for EventPublisher.publish (a function, so it binds as a method)."""

        def publish(publisher: Any, events: Any, deadline: Any = None) -> int:
            return self._publish(events)

        return publish

    def _publish(self, events: Any) -> int:
        if self.refuse:
            raise PublishError("EventBridge refused 1 of 1 events: ThrottlingException")
        found = list(events)
        self.published.extend(found)
        return len(found)


class _Broken:
    """A DynamoDB client whose every call fails (so a deleted contact's purge keeps failing)."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("dynamodb unavailable")

        return fail


def _failing_purges(monkeypatch: pytest.MonkeyPatch) -> None:
    from audience import aws

    real = aws.client
    monkeypatch.setattr("audience.aws.client", lambda service: _Broken() if service == "dynamodb" else real(service))


def test_a_record_whose_duty_keeps_failing_does_not_hold_back_the_events_of_later_records(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = _Capture()
    monkeypatch.setattr("audience.events.publisher.EventPublisher.publish", capture.publish)
    _failing_purges(monkeypatch)
    deleted = _contact_record("100", "REMOVE", "ct_gone", id={"S": "ct_gone"}, version={"N": "4"})
    batch = {"Records": [_created("50", "ct_a"), deleted, _created("200", "ct_b")]}
    assert stack.invoke("ContactStreamFunction", batch) == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    # The events of the records before and after the failed one are out; the failed one's come on its retry.
    assert [(e.detail_type, e.detail["data"]["contact_id"]) for e in capture.published] == [
        ("contact.created", "ct_a"),
        ("contact.created", "ct_b"),
    ]


def test_when_publishing_fails_too_the_lowest_record_is_reported(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audience.events.publisher.EventPublisher.publish", _Capture(refuse=True).publish)
    _failing_purges(monkeypatch)
    deleted = _contact_record("100", "REMOVE", "ct_gone", id={"S": "ct_gone"}, version={"N": "4"})
    failed = stack.invoke("ContactStreamFunction", {"Records": [deleted, _created("200", "ct_b")]})
    assert failed["batchItemFailures"][0] == {"itemIdentifier": "100"}
    failed = stack.invoke("ContactStreamFunction", {"Records": [_created("50", "ct_a"), deleted]})
    assert failed["batchItemFailures"][0] == {"itemIdentifier": "50"}


def test_an_odd_record_fails_alone(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = _Capture()
    monkeypatch.setattr("audience.events.publisher.EventPublisher.publish", capture.publish)
    odd = _contact_record("100", "INSERT", "ct_odd", status={"S": "SUBSCRIBED"})  # no id, no created_at
    batch = {"Records": [_created("50", "ct_a"), odd, _created("200", "ct_b")]}
    assert stack.invoke("ContactStreamFunction", batch) == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert [e.detail["data"]["contact_id"] for e in capture.published] == ["ct_a", "ct_b"]


def test_an_odd_broadcast_record_fails_alone(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = _Capture()
    monkeypatch.setattr("audience.events.publisher.EventPublisher.publish", capture.publish)
    batch = json.loads((EVENTS / "broadcast_stream_batch.json").read_text())
    good = batch["Records"]
    odd = json.loads(json.dumps(good[0]))
    del odd["dynamodb"]["NewImage"]["status"]  # a summary with no status: its event cannot be worked out
    odd["dynamodb"]["SequenceNumber"] = "1"
    failed = stack.invoke("BroadcastStreamFunction", {"Records": [odd, *good]})
    assert failed == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert len(capture.published) == 2
