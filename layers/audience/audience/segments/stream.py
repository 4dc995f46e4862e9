"""Which contacts a batch of contacts-table stream records asks the segment consumer to re-evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from audience.contacts import keys
from audience.segments.repository import EVENT_SEQUENCE_SK


def evaluation_target(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(org id, contact id) when the record changes what segment rules read: the contact itself (created
    or updated) or its event sequence (an event was recorded). Memberships, activity and index items,
    and deletions (the contacts stream consumer purges those), are not evaluated."""
    key = record.get("dynamodb", {}).get("Keys", {})
    pk = key.get("pk", {}).get("S", "")
    sk = key.get("sk", {}).get("S", "")
    if "#C#" not in pk or record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    if sk != keys.CONTACT_SK and sk != EVENT_SEQUENCE_SK:
        return None
    return pk.split("#", 2)[1], keys.contact_id_from_pk(pk)


def evaluation_targets(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Each contact to evaluate once, with the sequence number of its first record, in stream order."""
    targets: dict[tuple[str, str], str] = {}
    for record in records:
        target = evaluation_target(record)
        if target is not None and target not in targets:
            targets[target] = record["dynamodb"]["SequenceNumber"]
    return targets


# What recording a reachability or engagement fact changes on the contact item (ContactsRepository.record_signal).
FACT_ATTRIBUTES = frozenset({"reach", "engagement", "version"})


def facts_only(record: Mapping[str, Any]) -> bool:
    """Whether the record is a contact item change of its quality facts and nothing else: only segments
    that read quality attributes can change with it."""
    if record.get("eventName") != "MODIFY":
        return False
    images = record.get("dynamodb", {})
    old, new = images.get("OldImage"), images.get("NewImage")
    if old is None or new is None or images.get("Keys", {}).get("sk", {}).get("S") != keys.CONTACT_SK:
        return False
    changed = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
    return changed <= FACT_ATTRIBUTES


def facts_only_targets(records: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """The contacts every record of which, in this batch, changed only quality facts."""
    only: dict[tuple[str, str], bool] = {}
    for record in records:
        target = evaluation_target(record)
        if target is not None:
            only[target] = only.get(target, True) and facts_only(record)
    return {target for target, value in only.items() if value}
