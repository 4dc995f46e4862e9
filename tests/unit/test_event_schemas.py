"""Domain events: every type has a valid committed schema, the events the stream consumers derive validate
against it, ids are stable under redelivery, and metrics-only contact writes publish nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from boto3.dynamodb.types import TypeSerializer

from audience.events import TYPES, EventPublisher, PublishError, broadcast_stream, contact_stream, make, schema_file
from tests.bus import SCHEMAS, validate

_SERIALIZER = TypeSerializer()
ORG = "org_1"
CONTACT_PK = f"O#{ORG}#C#ct_1"


def _image(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _SERIALIZER.serialize(v) for k, v in values.items() if v is not None}


def record(name: str, pk: str, sk: str, old: dict | None = None, new: dict | None = None, seq: str = "1") -> dict:
    data: dict[str, Any] = {
        "Keys": _image({"pk": pk, "sk": sk}),
        "SequenceNumber": seq,
        "ApproximateCreationDateTime": 1795000000,
    }
    if old is not None:
        data["OldImage"] = _image({"pk": pk, "sk": sk, **old})
    if new is not None:
        data["NewImage"] = _image({"pk": pk, "sk": sk, **new})
    return {"eventID": f"ev-{seq}", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": data}


def contact(**changes: Any) -> dict[str, Any]:
    base = {
        "type": "contact",
        "id": "ct_1",
        "org_id": ORG,
        "status": "SUBSCRIBED",
        "first_name": "Ayu",
        "email": "ayu@example.com",
        "custom_fields": {"plan": "gold", "city": "Bandung"},
        "gsi1pk": f"O#{ORG}#F#all##3",
        "version": Decimal(3),
        "created_at": "2026-11-01T10:00:00.000Z",
        "updated_at": "2026-11-02T10:00:00.000Z",
    }
    return {**base, **changes}


def types_of(events: list[Any]) -> list[str]:
    return [e.detail_type for e in events]


# -- the schemas themselves ------------------------------------------------------------------------------


def test_every_catalogued_type_has_exactly_one_valid_schema_and_nothing_else_is_there() -> None:
    files = sorted(p.name for p in SCHEMAS.glob("*.json"))
    assert files == sorted(schema_file(name) for name in TYPES)
    ids = set()
    for name in TYPES:
        schema = json.loads((SCHEMAS / schema_file(name)).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["type"] == {"const": name}
        assert schema["properties"]["version"] == {"const": TYPES[name].version}
        assert set(schema["required"]) == {"id", "type", "version", "org_id", "occurred_at", "data"}
        ids.add(schema["$id"])
    assert len(ids) == len(TYPES)


def test_sources_are_the_domains() -> None:
    assert {t.source for t in TYPES.values()} == {
        "audience.contacts",
        "audience.segments",
        "audience.imports",
        "audience.broadcasts",
        "audience.inbound",
        "audience.webhooks",
    }


def test_an_envelope_with_a_field_the_schema_does_not_know_is_refused() -> None:
    event = make("contact.deleted", key=("x",), org_id=ORG, occurred_at="2026-11-02T10:00:00.000Z", data={})
    with pytest.raises(jsonschema.ValidationError):
        validate(event.detail)  # contact_id missing
    event.detail["data"] = {"contact_id": "ct_1", "email": "ayu@example.com"}
    with pytest.raises(jsonschema.ValidationError):
        validate(event.detail)  # personal data the type does not carry


def test_a_webhook_test_event_validates() -> None:
    event = make(
        "webhook.test",
        key=("wh_1", "attempt-1"),
        org_id=ORG,
        occurred_at="2026-11-02T10:00:00.000Z",
        data={"webhook_id": "wh_1", "message": "test delivery"},
    )
    validate(event.detail)
    assert (event.source, event.detail_type) == ("audience.webhooks", "webhook.test")


# -- contacts table stream -------------------------------------------------------------------------------


def test_a_new_contact_is_contact_created() -> None:
    events = contact_stream.events_of(record("INSERT", CONTACT_PK, "#CONTACT", new=contact(version=Decimal(1))))
    assert types_of(events) == ["contact.created"]
    detail = events[0].detail
    validate(detail)
    assert (events[0].source, detail["org_id"], detail["occurred_at"]) == (
        "audience.contacts",
        ORG,
        "2026-11-01T10:00:00.000Z",
    )
    assert detail["data"] == {"contact_id": "ct_1", "status": "SUBSCRIBED", "version": 1}


def test_an_edit_is_contact_updated_with_the_names_of_the_changed_fields_only() -> None:
    new = contact(
        first_name="Ayu S.",
        custom_fields={"plan": "silver", "city": "Bandung"},
        version=Decimal(4),
        updated_at="2026-11-03T09:00:00.000Z",
    )
    events = contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=contact(), new=new))
    assert types_of(events) == ["contact.updated"]
    validate(events[0].detail)
    assert events[0].detail["data"] == {
        "contact_id": "ct_1",
        "changed": ["custom_fields.plan", "first_name"],
        "status": "SUBSCRIBED",
        "version": 4,
    }
    assert "Ayu" not in json.dumps(events[0].detail)
    assert "silver" not in json.dumps(events[0].detail)


@pytest.mark.parametrize(
    "changes",
    [
        {"engagement": {"inbound": Decimal(3), "last_inbound_at": "2026-11-03T09:00:00.000Z"}},
        {"reach": {"whatsapp": {"state": "reachable", "at": "2026-11-03T09:00:00.000Z"}}},
        {"phone_type": "mobile", "gsi1pk": f"O#{ORG}#F#all##4"},
        {},  # a rewrite that changes nothing but version and updated_at
    ],
)
def test_a_metrics_only_write_is_not_contact_updated(changes: dict[str, Any]) -> None:
    new = contact(**changes, version=Decimal(4), updated_at="2026-11-03T09:00:00.000Z")
    assert contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=contact(), new=new)) == []


def test_an_unsubscribe_is_contact_updated_and_contact_subscription_changed() -> None:
    new = contact(status="UNSUBSCRIBED", version=Decimal(4), updated_at="2026-11-03T09:00:00.000Z")
    events = contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=contact(), new=new))
    assert types_of(events) == ["contact.updated", "contact.subscription_changed"]
    for event in events:
        validate(event.detail)
    assert events[1].detail["data"] == {
        "contact_id": "ct_1",
        "previous_status": "SUBSCRIBED",
        "status": "UNSUBSCRIBED",
        "version": 4,
    }
    assert events[0].detail["id"] != events[1].detail["id"]


def test_a_deleted_contact_is_contact_deleted() -> None:
    events = contact_stream.events_of(record("REMOVE", CONTACT_PK, "#CONTACT", old=contact()))
    assert types_of(events) == ["contact.deleted"]
    validate(events[0].detail)
    assert events[0].detail["data"] == {"contact_id": "ct_1", "version": 3}
    assert events[0].detail["occurred_at"] == "2026-11-18T11:06:40.000Z"  # the stream's ApproximateCreationDateTime


def test_a_removal_in_the_same_second_as_the_last_write_does_not_seem_to_precede_it() -> None:
    # The stream's ApproximateCreationDateTime is whole seconds (1795000000 = 11:06:40); the contact's last
    # update and the membership's start were later within that second.
    updated = contact(updated_at="2026-11-18T11:06:40.700Z", version=Decimal(7))
    deleted = contact_stream.events_of(record("REMOVE", CONTACT_PK, "#CONTACT", old=updated))
    assert deleted[0].detail["occurred_at"] == "2026-11-18T11:06:40.700Z"
    assert deleted[0].detail["data"]["version"] == 7
    member = {"source": "rules", "added_at": "2026-11-18T11:06:40.700Z"}
    added = contact_stream.events_of(record("INSERT", CONTACT_PK, "M#sg_1", new=member))
    removed = contact_stream.events_of(record("REMOVE", CONTACT_PK, "M#sg_1", old=member, seq="2"))
    assert added[0].detail["occurred_at"] <= removed[0].detail["occurred_at"] == "2026-11-18T11:06:40.700Z"
    moved = broadcast_stream.events_of(
        record(
            "MODIFY",
            BROADCAST_PK,
            "#S",
            old=_summary("SCHEDULED", 2),
            new={**_summary("SENDING", 3), "updated_at": "2026-11-18T11:06:40.250Z"},
        )
    )
    validate(moved[0].detail)
    assert moved[0].detail["occurred_at"] == "2026-11-18T11:06:40.250Z"
    # An older stamp on the item never pulls the time back before the stream's record.
    older = contact_stream.events_of(record("REMOVE", CONTACT_PK, "#CONTACT", old=contact()))
    assert older[0].detail["occurred_at"] == "2026-11-18T11:06:40.000Z"


def test_the_import_run_marker_is_not_a_changed_field() -> None:
    new = contact(import_run="run_1", version=Decimal(4), updated_at="2026-11-03T09:00:00.000Z")
    assert contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=contact(), new=new)) == []
    edited = contact(import_run="run_2", first_name="Ayu S.", version=Decimal(5))
    events = contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=new, new=edited))
    assert events[0].detail["data"]["changed"] == ["first_name"]


def test_a_merge_is_one_contact_merged_from_its_activity_entry() -> None:
    entry = {"type": "merged", "at": "2026-11-03T09:00:00.000Z", "data": {"source_contact_id": "ct_2"}}
    events = contact_stream.events_of(record("INSERT", CONTACT_PK, "A#2026-11-03T09:00:00.000Z#x", new=entry))
    assert types_of(events) == ["contact.merged"]
    validate(events[0].detail)
    assert events[0].detail["data"] == {"contact_id": "ct_1", "merged_contact_id": "ct_2"}
    other = {"type": "updated", "at": "2026-11-03T09:00:00.000Z", "data": {"fields": ["first_name"]}}
    assert contact_stream.events_of(record("INSERT", CONTACT_PK, "A#2026-11-03T09:00:00.000Z#y", new=other)) == []
    # The purge of the merged contact's partition removes activity: that is not a merge.
    assert contact_stream.events_of(record("REMOVE", CONTACT_PK, "A#2026-11-03T09:00:00.000Z#x", old=entry)) == []


def test_memberships_joining_and_leaving_are_segment_events() -> None:
    member = {"source": "rules", "added_at": "2026-11-03T09:00:00.000Z", "gsi1pk": "x", "gsi1sk": "y"}
    added = contact_stream.events_of(record("INSERT", CONTACT_PK, "M#sg_1", new=member))
    removed = contact_stream.events_of(record("REMOVE", CONTACT_PK, "M#sg_1", old=member, seq="2"))
    assert types_of(added) == ["segment.member_added"]
    assert types_of(removed) == ["segment.member_removed"]
    for event in added + removed:
        validate(event.detail)
        assert event.source == "audience.segments"
        assert event.detail["data"] == {"segment_id": "sg_1", "contact_id": "ct_1", "source": "rules"}
    assert added[0].detail["occurred_at"] == "2026-11-03T09:00:00.000Z"
    rejoined = contact_stream.events_of(
        record("INSERT", CONTACT_PK, "M#sg_1", new={**member, "added_at": "2026-11-04T09:00:00.000Z"}, seq="3")
    )
    assert rejoined[0].detail["id"] != added[0].detail["id"]  # joining again later is another fact
    assert contact_stream.events_of(record("MODIFY", CONTACT_PK, "M#sg_1", old=member, new=member)) == []


def _import(status: str, **run: Any) -> dict[str, Any]:
    return {
        "type": "import",
        "id": "im_1",
        "org_id": ORG,
        "kind": "contacts",
        "status": status,
        "file_name": "people.csv",
        "run": {"id": "run_1", "kind": "import", "started_at": "2026-11-03T09:00:00.000Z", **run},
        "version": Decimal(5),
    }


def test_an_import_reaching_its_end_is_import_finished_once() -> None:
    finished = _import(
        "completed",
        rows=Decimal(3),
        counts={"created": Decimal(2), "invalid": Decimal(1)},
        finished_at="2026-11-03T09:05:00.000Z",
    )
    events = contact_stream.events_of(
        record("MODIFY", f"O#{ORG}#IMPORTS", "im_1", old=_import("importing"), new=finished)
    )
    assert types_of(events) == ["import.finished"]
    validate(events[0].detail)
    assert events[0].detail["data"] == {
        "import_id": "im_1",
        "kind": "contacts",
        "status": "completed",
        "run_id": "run_1",
        "rows": 3,
        "counts": {"created": 2, "invalid": 1},
        "error": None,
    }
    assert events[0].detail["occurred_at"] == "2026-11-03T09:05:00.000Z"
    # Written again once finished (its expiry moved, say): nothing new.
    assert contact_stream.events_of(record("MODIFY", f"O#{ORG}#IMPORTS", "im_1", old=finished, new=finished)) == []
    # A dry run finishing is not an import finishing.
    assert (
        contact_stream.events_of(
            record("MODIFY", f"O#{ORG}#IMPORTS", "im_1", old=_import("validating"), new=_import("validated"))
        )
        == []
    )


def test_redelivered_records_give_the_same_ids() -> None:
    new = contact(status="BLOCKED", last_name="S", version=Decimal(4), updated_at="2026-11-03T09:00:00.000Z")
    first = contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=contact(), new=new, seq="7"))
    again = contact_stream.events_of(record("MODIFY", CONTACT_PK, "#CONTACT", old=contact(), new=new, seq="7"))
    assert [e.detail for e in first] == [e.detail for e in again]
    later = contact_stream.events_of(
        record("MODIFY", CONTACT_PK, "#CONTACT", old=new, new={**new, "last_name": "T", "version": Decimal(5)}, seq="8")
    )
    assert later[0].detail["id"] != first[0].detail["id"]


# -- broadcasts table stream -----------------------------------------------------------------------------

BROADCAST_PK = f"O#{ORG}#B#bc_1"
RECIPIENT_PK = f"O#{ORG}#B#bc_1#R#5"


def _summary(status: str, version: int) -> dict[str, Any]:
    return {
        "id": "bc_1",
        "org_id": ORG,
        "type": "marketing",
        "status": status,
        "version": Decimal(version),
        "run": "r1",
    }


def test_a_broadcast_moving_is_broadcast_status_changed() -> None:
    events = broadcast_stream.events_of(
        record("MODIFY", BROADCAST_PK, "#S", old=_summary("SCHEDULED", 2), new=_summary("SENDING", 3))
    )
    assert types_of(events) == ["broadcast.status_changed"]
    validate(events[0].detail)
    assert events[0].detail["data"] == {
        "broadcast_id": "bc_1",
        "broadcast_type": "marketing",
        "previous_status": "SCHEDULED",
        "status": "SENDING",
        "run_id": "r1",
        "version": 3,
    }
    renamed = {**_summary("SENDING", 4), "name": "Renamed"}
    assert (
        broadcast_stream.events_of(record("MODIFY", BROADCAST_PK, "#S", old=_summary("SENDING", 3), new=renamed)) == []
    )
    assert broadcast_stream.events_of(record("INSERT", BROADCAST_PK, "#S", new=_summary("DRAFT", 1))) == []


def _row(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "broadcast_id": "bc_1",
        "contact_id": "ct_1",
        "channel": "whatsapp",
        "status": status,
        "run": "r1",
        **fields,
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (_row("SENDING"), _row("SENT", sent_at="2026-11-03T09:00:00.000Z", provider_message_id="wamid.1"), "SENT"),
        (_row("SENT"), _row("DELIVERED", delivered_at="2026-11-03T09:00:01.000Z"), "DELIVERED"),
        (_row("DELIVERED"), _row("READ", read_at="2026-11-03T09:00:02.000Z"), "READ"),
        (_row("SENDING"), _row("FAILED", failed_at="2026-11-03T09:00:00.000Z", error_code="131026"), "FAILED"),
        (_row("PENDING"), _row("SKIPPED", skipped_at="2026-11-03T09:00:00.000Z", reason="unsubscribed"), "SKIPPED"),
        (_row("PENDING"), _row("SENDING"), None),
        (_row("SENDING"), _row("SENDING", attempts=Decimal(2)), None),
        (_row("DELIVERED"), _row("DELIVERED", outcome="SENT"), None),  # the sender's outcome after a receipt
    ],
)
def test_a_recipient_resting_in_a_new_status_is_recipient_status_changed(old, new, expected) -> None:
    events = broadcast_stream.events_of(record("MODIFY", RECIPIENT_PK, "ct_1#whatsapp", old=old, new=new))
    assert types_of(events) == ([] if expected is None else ["recipient.status_changed"])
    if expected:
        validate(events[0].detail)
        data = events[0].detail["data"]
        assert (data["contact_id"], data["channel"], data["status"]) == ("ct_1", "whatsapp", expected)
        assert "send_id" not in data
        assert "to" not in data


def test_a_transactional_recipient_names_its_send() -> None:
    new = _row("SENT", run=None, sent_at="2026-11-03T09:00:00.000Z")
    events = broadcast_stream.events_of(record("MODIFY", RECIPIENT_PK, "sd_9#whatsapp", old=_row("SENDING"), new=new))
    validate(events[0].detail)
    assert events[0].detail["data"]["send_id"] == "sd_9"


def test_other_broadcast_items_publish_nothing() -> None:
    pace = {"until": Decimal(5)}
    assert broadcast_stream.events_of(record("MODIFY", "PACE#ch_1", "#P", old=pace, new=pace)) == []
    assert broadcast_stream.events_of(record("MODIFY", BROADCAST_PK, "#N#3", old={"sent": 1}, new={"sent": 2})) == []
    assert broadcast_stream.events_of(record("REMOVE", RECIPIENT_PK, "ct_1#whatsapp", old=_row("SENT"))) == []


# -- the publisher ---------------------------------------------------------------------------------------


class _Events:
    """PutEvents refusing the first `refuse` entries of each of its first `times` calls."""

    def __init__(self, refuse: int = 0, times: int = 1, code: str = "ThrottlingException") -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse, self.times, self.code = refuse, times, code

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        refuse = min(self.refuse, len(Entries)) if len(self.calls) <= self.times else 0
        refused = [{"ErrorCode": self.code, "ErrorMessage": "slow down"}] * refuse
        return {"FailedEntryCount": refuse, "Entries": refused + [{"EventId": "x"}] * (len(Entries) - refuse)}


def _deleted(n: int) -> Any:
    return make(
        "contact.deleted", key=(n,), org_id=ORG, occurred_at="2026-11-03T09:00:00.000Z", data={"contact_id": f"ct_{n}"}
    )


def test_the_publisher_puts_in_tens_and_raises_when_any_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Events()
    monkeypatch.setattr("audience.aws.client", lambda service: client)
    assert EventPublisher("bus").publish([_deleted(n) for n in range(23)]) == 23
    assert [len(c) for c in client.calls] == [10, 10, 3]
    entry = client.calls[0][0]
    assert (entry["EventBusName"], entry["Source"], entry["DetailType"]) == (
        "bus",
        "audience.contacts",
        "contact.deleted",
    )
    assert json.loads(entry["Detail"])["data"] == {"contact_id": "ct_0"}

    _frozen_time(monkeypatch)
    monkeypatch.setattr("audience.aws.client", lambda service: _Events(refuse=1, times=10**6))
    with pytest.raises(PublishError, match="refused 1 of 1"):
        EventPublisher("bus").publish([_deleted(1)])


def _frozen_time(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A fake monotonic clock that sleeping advances; the pauses taken."""
    now = [1000.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    monkeypatch.setattr("audience.events.publisher._clock", lambda: now[0])
    monkeypatch.setattr("audience.events.publisher._sleep", sleep)
    return pauses


def test_the_publisher_puts_only_the_refused_entries_again_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses = _frozen_time(monkeypatch)
    client = _Events(refuse=3, times=3)  # the first three entries are throttled three calls running
    monkeypatch.setattr("audience.aws.client", lambda service: client)
    assert EventPublisher("bus").publish([_deleted(n) for n in range(5)]) == 5
    assert [len(c) for c in client.calls] == [5, 3, 3, 3]
    assert [json.loads(e["Detail"])["data"]["contact_id"] for e in client.calls[-1]] == ["ct_0", "ct_1", "ct_2"]
    assert len(pauses) == 3
    assert all(0 <= pause <= bound for pause, bound in zip(pauses, [0.1, 0.2, 0.4]))


def test_the_publisher_gives_up_after_its_time_or_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses = _frozen_time(monkeypatch)
    client = _Events(refuse=1, times=10**6)
    monkeypatch.setattr("audience.aws.client", lambda service: client)
    with pytest.raises(PublishError, match="ThrottlingException"):
        EventPublisher("bus").publish([_deleted(1)])
    assert len(client.calls) > 5
    assert sum(pauses) <= 10.0  # RETRY_FOR

    pauses.clear()
    client.calls.clear()
    from audience.events.publisher import _clock

    with pytest.raises(PublishError):
        EventPublisher("bus").publish([_deleted(1)], deadline=_clock() + 0.05)
    assert sum(pauses) <= 0.05
    assert len(client.calls) >= 1


def test_the_publisher_does_not_retry_an_entry_refused_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses = _frozen_time(monkeypatch)
    client = _Events(refuse=1, times=10**6, code="MalformedDetail")
    monkeypatch.setattr("audience.aws.client", lambda service: client)
    with pytest.raises(PublishError, match="MalformedDetail"):
        EventPublisher("bus").publish([_deleted(1)])
    assert (len(client.calls), pauses) == (1, [])


def test_the_deadline_comes_from_the_lambda_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from audience.events.publisher import deadline_of

    monkeypatch.setattr("audience.events.publisher._clock", lambda: 100.0)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    assert deadline_of(Context()) == 125.0  # less a 5 s margin to report the batch
    assert deadline_of(None) is None


def test_without_a_bus_nothing_is_put(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audience.aws.client", lambda service: pytest.fail("no client without a bus"))
    assert EventPublisher("").publish([_deleted(1)]) == 0


def test_the_sample_broadcast_stream_batch_gives_a_broadcast_and_a_recipient_event() -> None:
    batch = json.loads((SCHEMAS.parents[4] / "events" / "broadcast_stream_batch.json").read_text())
    events = [e for r in batch["Records"] for e in broadcast_stream.events_of(r)]
    assert types_of(events) == ["broadcast.status_changed", "recipient.status_changed"]
    for event in events:
        validate(event.detail)
    assert events[1].detail["data"]["message_id"].startswith("wamid.")
    assert "6281234567890" not in json.dumps(events[1].detail)  # the address stays in the table
