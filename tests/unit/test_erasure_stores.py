"""What a contact's deletion clears outside its partition: the provider-id items of its messages (only its
own), the personal fields of its broadcast recipient rows (not of rows still being sent) and the property
values uploaded for it."""

from __future__ import annotations

from typing import Any

from audience.broadcasts import keys as broadcast_keys
from audience.broadcasts.erasure import forget_recipients
from audience.contacts.stream import purge_partition

ORG = "org_erasure"


def _put(client: Any, table: str, item: dict[str, str]) -> None:
    client.put_item(TableName=table, Item={k: {"S": v} for k, v in item.items()})


def _get(client: Any, table: str, pk: str, sk: str) -> dict[str, Any] | None:
    found = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    return {k: next(iter(v.values())) for k, v in found.items()} if found else None


def test_purge_deletes_the_provider_id_items_of_the_contacts_own_messages(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["ContactsTable"]
    pk = f"O#{ORG}#C#ct_gone"
    # Given two logged messages of the contact, one of whose provider-id items names another contact
    for n, owner in ((1, "ct_gone"), (2, "ct_other")):
        _put(client, table, {"pk": pk, "sk": f"G#2026-05-01T10:00:0{n}.000Z#telegram#5550001:{n}"})
        _put(client, table, {"pk": f"O#{ORG}#P#telegram#5550001:{n}", "sk": "#MSG", "contact_id": owner})
    # When the partition is purged (twice: the stream delivers at least once)
    for _ in range(2):
        purge_partition(client, table, pk)
    # Then the contact's own provider-id item is gone and the other contact's stays
    assert _get(client, table, f"O#{ORG}#P#telegram#5550001:1", "#MSG") is None
    assert _get(client, table, f"O#{ORG}#P#telegram#5550001:2", "#MSG") == {
        "pk": f"O#{ORG}#P#telegram#5550001:2",
        "sk": "#MSG",
        "contact_id": "ct_other",
    }


def _row(broadcast: str, contact: str, status: str, message: str) -> dict[str, str]:
    return {
        "pk": f"O#{ORG}#B#{broadcast}#R#3",
        "sk": f"{contact}#telegram",
        "contact_id": contact,
        "channel": "telegram",
        "status": status,
        "to": "5550002",
        "provider_message_id": message,
        "gsi2pk": broadcast_keys.contact_partition(ORG, contact),
        "gsi2sk": f"2026-05-01T10:00:00.000Z#{broadcast}#{contact}#telegram",
    }


def test_a_deleted_contacts_recipient_rows_keep_their_status_without_address_or_message_id(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["BroadcastsTable"]
    # Given a delivered row and a row still pending of the contact, and a row of someone else
    delivered, pending, other = (
        _row("bc_1", "ct_gone", "DELIVERED", "5550002:7"),
        _row("bc_2", "ct_gone", "PENDING", ""),
        _row("bc_1", "ct_kept", "DELIVERED", "5550003:8"),
    )
    for row in (delivered, pending, other):
        _put(client, table, row)
    client.put_item(
        TableName=table,
        Item={
            "pk": {"S": broadcast_keys.message_pk(ORG, "telegram", "5550002:7")},
            "sk": {"S": "#R"},
            "recipient_pk": {"S": delivered["pk"]},
        },
    )
    client.update_item(
        TableName=table,
        Key={"pk": {"S": delivered["pk"]}, "sk": {"S": delivered["sk"]}},
        UpdateExpression="SET properties = :p",
        ExpressionAttributeValues={":p": {"M": {"code": {"S": "123456"}}}},
    )
    values = {
        "pk": broadcast_keys.values_pk(ORG, "bc_1", "v1", 3),
        "sk": "ct_gone",
        "gsi2pk": broadcast_keys.contact_values_partition(ORG, "ct_gone"),
        "gsi2sk": "bc_1#v1",
    }
    _put(client, table, values)
    # When the contact's rows are stripped (twice: the stream delivers at least once)
    for _ in range(2):
        forget_recipients(client, table, ORG, "ct_gone")
    # Then the delivered row keeps what the broadcast's counts and list need, and nothing of the person
    kept = _get(client, table, delivered["pk"], delivered["sk"])
    assert kept is not None
    assert {k: kept[k] for k in ("contact_id", "channel", "status")} == {
        "contact_id": "ct_gone",
        "channel": "telegram",
        "status": "DELIVERED",
    }
    assert not {"to", "properties", "provider_message_id"} & set(kept)
    assert _get(client, table, broadcast_keys.message_pk(ORG, "telegram", "5550002:7"), "#R") is None
    assert _get(client, table, values["pk"], values["sk"]) is None  # the values uploaded for the contact
    # ... the pending row is left to the sender (which finds the contact gone), and the other contact's row
    assert _get(client, table, pending["pk"], pending["sk"]) == pending
    assert _get(client, table, other["pk"], other["sk"]) == other
