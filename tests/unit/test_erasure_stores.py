"""What a contact's deletion clears outside its partition: the provider-id items of its messages (only its
own; a tombstone stays that later statuses leave alone), the personal fields of its broadcast recipient rows
(a row still being sent is stripped when the sender records its outcome) and the property values uploaded for
it; and what a merge leaves (the absorbed contact's rows stay as they are)."""

from __future__ import annotations

from typing import Any

from audience.broadcasts import keys as broadcast_keys
from audience.broadcasts.erasure import erase_removed_contact, forget_recipients
from audience.broadcasts.repository import BroadcastsRepository
from audience.contacts.repository import serialize
from audience.contacts.stream import merged_marker, purge_partition
from audience.inbound.repository import InboundRepository

ORG = "org_erasure"


def _put(client: Any, table: str, item: dict[str, str]) -> None:
    client.put_item(TableName=table, Item={k: {"S": v} for k, v in item.items()})


def _get(client: Any, table: str, pk: str, sk: str) -> dict[str, Any] | None:
    found = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
    return {k: next(iter(v.values())) for k, v in found.items()} if found else None


def test_purge_empties_the_provider_id_items_of_the_contacts_own_messages(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["ContactsTable"]
    pk = f"O#{ORG}#C#ct_gone"
    # Given two logged messages of the contact, one of whose provider-id items names another contact
    for n, owner in ((1, "ct_gone"), (2, "ct_other")):
        _put(client, table, {"pk": pk, "sk": f"G#2026-05-01T10:00:0{n}.000Z#telegram#5550001:{n}"})
        _put(client, table, {"pk": f"O#{ORG}#P#telegram#5550001:{n}", "sk": "#MSG", "contact_id": owner})
    # When the partition is purged (twice: the stream delivers at least once)
    for _ in range(2):
        purge_partition(client, table, pk)
    # Then the contact's own provider-id item is a tombstone (its key only) and the other contact's stays
    tombstone = _get(client, table, f"O#{ORG}#P#telegram#5550001:1", "#MSG")
    assert tombstone is not None
    assert set(tombstone) == {"pk", "sk", "erased", "expires_at"}
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
    # ... the pending row keeps its address for the sender (which finds the contact gone), marked to be
    # stripped when it ends, and the other contact's row is untouched
    assert _get(client, table, pending["pk"], pending["sk"]) == {**pending, "erase_on_finish": True}
    assert _get(client, table, other["pk"], other["sk"]) == other
    # ... and only the row still being sent is left in the contact's index (a retry walks nothing else)
    assert _indexed(client, table, "ct_gone") == [pending["sk"]]


def _indexed(client: Any, table: str, contact: str) -> list[str]:
    found = client.query(
        TableName=table,
        IndexName="gsi2",
        KeyConditionExpression="gsi2pk = :pk",
        ExpressionAttributeValues={":pk": {"S": broadcast_keys.contact_partition(ORG, contact)}},
    )["Items"]
    return sorted(item["sk"]["S"] for item in found)


def test_a_failed_row_keeps_its_error_code_but_not_the_providers_error_text(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["BroadcastsTable"]
    failed = {**_row("bc_3", "ct_failed", "FAILED", ""), "error_code": "403", "error_title": "chat 5550002 blocked"}
    _put(client, table, failed)
    forget_recipients(client, table, ORG, "ct_failed")
    kept = _get(client, table, failed["pk"], failed["sk"])
    assert kept is not None
    assert kept["error_code"] == "403"
    assert not {"error_title", "to", "gsi2pk", "gsi2sk"} & set(kept)


def test_a_row_being_sent_is_stripped_when_the_sender_records_its_outcome(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["BroadcastsTable"]
    repo = BroadcastsRepository(table)
    sending = {**_row("bc_4", "ct_sending", "SENDING", ""), "broadcast_id": "bc_4"}
    del sending["provider_message_id"]
    _put(client, table, sending)
    # Given the contact deleted while its row is SENDING (the provider call is out)
    assert forget_recipients(client, table, ORG, "ct_sending") == 0
    row = repo.row(sending["pk"], sending["sk"])
    assert row is not None
    assert row["to"] == "5550002"
    assert row["erase_on_finish"] is True
    # When the sender records that the message went
    repo.link_message(ORG, "telegram", "5550002:9", row, 0)
    ended = repo.finish(row, "SENT", "2026-05-01T10:00:01.000Z", provider_message_id="5550002:9")
    # Then the row is SENT without the address, the message id or its place in the contact index
    assert ended["status"] == "SENT"
    assert ended["erase_on_finish"] is True
    assert not {"to", "provider_message_id", "gsi2pk", "gsi2sk"} & set(ended)
    assert repo.row(sending["pk"], sending["sk"]) == ended


def test_a_row_skipped_because_its_contact_is_gone_loses_the_persons_data(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["BroadcastsTable"]
    repo = BroadcastsRepository(table)
    # A row written after the deletion was consumed (a send that read the contact just before): unmarked
    pending = {**_row("bc_5", "ct_late", "PENDING", ""), "broadcast_id": "bc_5"}
    del pending["provider_message_id"]
    _put(client, table, pending)
    row = repo.row(pending["pk"], pending["sk"])
    assert row is not None
    ended = repo.finish(row, "SKIPPED", "2026-05-01T10:00:01.000Z", reason="contact_deleted")
    assert (ended["status"], ended["reason"]) == ("SKIPPED", "contact_deleted")
    assert not {"to", "gsi2pk", "gsi2sk"} & set(ended)


def test_a_merged_away_contacts_rows_move_to_the_survivor_and_go_when_it_is_deleted(stack: Any) -> None:
    client = stack.client("dynamodb")
    contacts, broadcasts = stack.resources["ContactsTable"], stack.resources["BroadcastsTable"]
    rows = {c: _row("bc_6", c, "DELIVERED", f"555000{n}:1") for n, c in enumerate(("ct_merged", "ct_deleted"))}
    for row in rows.values():
        _put(client, broadcasts, row)
    client.put_item(TableName=contacts, Item=serialize(merged_marker(ORG, "ct_merged", "ct_survivor", 0)))

    def removed(contact: str) -> dict[str, Any]:
        key = {"pk": {"S": f"O#{ORG}#C#{contact}"}, "sk": {"S": "#CONTACT"}}
        return {"eventName": "REMOVE", "dynamodb": {"Keys": key}}

    kwargs = {"contacts_table": contacts, "broadcasts_table": broadcasts}
    # The contact merged into another keeps its row, now in the survivor's index; the one deleted loses its
    # address (twice: the stream delivers at least once)
    for _ in range(2):
        assert erase_removed_contact(client, removed("ct_merged"), **kwargs) == 0
        erase_removed_contact(client, removed("ct_deleted"), **kwargs)
    merged = rows["ct_merged"]
    assert _get(client, broadcasts, merged["pk"], merged["sk"]) == {
        **merged,
        "gsi2pk": broadcast_keys.contact_partition(ORG, "ct_survivor"),
    }
    assert "to" not in (_get(client, broadcasts, rows["ct_deleted"]["pk"], rows["ct_deleted"]["sk"]) or {})
    # ... and a replay once the merged contact's partition is purged (the marker gone) erases nothing
    purge_partition(client, contacts, f"O#{ORG}#C#ct_merged")
    assert erase_removed_contact(client, removed("ct_merged"), **kwargs) == 0
    assert _get(client, broadcasts, merged["pk"], merged["sk"])["to"] == "5550002"  # type: ignore[index]
    # When the survivor is deleted, the merged contact's row is erased with its own
    assert forget_recipients(client, broadcasts, ORG, "ct_survivor") == 1
    assert "to" not in (_get(client, broadcasts, merged["pk"], merged["sk"]) or {})


def test_a_status_after_the_purge_does_not_bring_the_message_item_back(stack: Any) -> None:
    client, table = stack.client("dynamodb"), stack.resources["ContactsTable"]
    pk, provider_id = f"O#{ORG}#C#ct_status", "5550009:4"
    message_pk = f"O#{ORG}#P#telegram#{provider_id}"
    _put(client, table, {"pk": pk, "sk": f"G#2026-05-01T10:00:00.000Z#telegram#{provider_id}"})
    client.put_item(
        TableName=table,
        Item={
            **serialize({"pk": message_pk, "sk": "#MSG", "contact_id": "ct_status", "provider_id": provider_id}),
            "expires_at": {"N": "1900000000"},
        },
    )
    purge_partition(client, table, pk)
    tombstone = {"pk": message_pk, "sk": "#MSG", "erased": True, "expires_at": 1900000000}
    assert _get(client, table, message_pk, "#MSG") == {**tombstone, "expires_at": "1900000000"}
    # A status arriving later (forward, or not) leaves the tombstone as it is
    inbound = InboundRepository(table)
    for status in ("delivered", "sent"):
        assert inbound.apply_status(ORG, "telegram", provider_id, status, "2026-05-01T10:00:05.000Z") is None
    assert _get(client, table, message_pk, "#MSG") == {**tombstone, "expires_at": "1900000000"}
