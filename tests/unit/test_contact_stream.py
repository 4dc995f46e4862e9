"""The contact stream consumer: purges a removed contact's partition, idempotently, and fails loudly."""

import json
from pathlib import Path

import boto3
import pytest

from audience.contacts.stream import PurgeIncompleteError, purge_partition

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_remove_record_purges_the_partition_and_a_redelivery_is_harmless(org, stack):
    contact = org.client.post("/orgs/c/contacts", json={"email": "a@x.io"}).json()
    org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"first_name": "A"})
    table = boto3.resource("dynamodb").Table(stack.resources["ContactsTable"])
    pk = f"O#{org.org_id}#C#{contact['id']}"
    assert org.client.delete(f"/orgs/c/contacts/{contact['id']}").status_code == 204
    left = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": pk})["Items"]
    assert [i["sk"][:2] for i in left] == ["A#", "A#"]  # activity waits for the stream

    event = json.loads((EVENTS / "contact_stream_remove.json").read_text())
    record = event["Records"][0]
    record["dynamodb"]["Keys"] = {"pk": {"S": pk}, "sk": {"S": "#CONTACT"}}
    for _ in range(2):  # at-least-once delivery: the second run finds nothing and succeeds
        assert stack.invoke("ContactStreamFunction", event) == {"batchItemFailures": []}
    assert table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": pk})["Items"] == []


def test_other_records_are_ignored(stack):
    event = json.loads((EVENTS / "contact_stream_insert.json").read_text())
    assert stack.invoke("ContactStreamFunction", event) == {"batchItemFailures": []}


class _Throttled:
    """A client whose BatchWriteItem never processes anything, as under sustained throttling."""

    def __init__(self, items):
        self.items = items

    def query(self, **_):
        return {"Items": self.items}

    def batch_write_item(self, RequestItems):
        return {"UnprocessedItems": RequestItems}


def test_purge_gives_up_loudly_when_deletes_stay_unprocessed(monkeypatch):
    monkeypatch.setattr("audience.contacts.stream.time.sleep", lambda _: None)
    client = _Throttled([{"pk": {"S": "p"}, "sk": {"S": f"A#{i}"}} for i in range(3)])
    with pytest.raises(PurgeIncompleteError, match="3 writes still unprocessed"):
        purge_partition(client, "contacts", "p")


def _record(event_name, old_status=None, new_status=None, sk="#CONTACT"):
    data = {"Keys": {"pk": {"S": "O#org_1#C#ct_1"}, "sk": {"S": sk}}}
    if old_status:
        data["OldImage"] = {"status": {"S": old_status}}
    if new_status:
        data["NewImage"] = {"status": {"S": new_status}}
    return {"eventName": event_name, "dynamodb": data}


@pytest.mark.parametrize(
    ("record", "stopped"),
    [
        (_record("REMOVE"), ("org_1", "ct_1")),
        (_record("MODIFY", "SUBSCRIBED", "UNSUBSCRIBED"), ("org_1", "ct_1")),
        (_record("MODIFY", "UNSUBSCRIBED", "BLOCKED"), ("org_1", "ct_1")),
        (_record("MODIFY", "UNSUBSCRIBED", "UNSUBSCRIBED"), None),  # another field changed
        (_record("MODIFY", "UNSUBSCRIBED", "SUBSCRIBED"), None),
        (_record("INSERT", None, "UNSUBSCRIBED"), None),
        (_record("REMOVE", sk="A#2026-11-24T10:00:00.000Z#x"), None),  # an activity item
    ],
)
def test_the_records_that_end_a_contacts_follow_ups(record, stopped):
    from audience.contacts.stream import contact_stopped

    assert contact_stopped(record) == stopped
