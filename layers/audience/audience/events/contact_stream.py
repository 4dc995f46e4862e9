"""Events read from the contacts table stream: contacts, segment memberships and finished imports.

One stream record gives at most a few events, each with an id derived from the fact it states (a contact
and its version, a membership and when it began, an import run and its outcome), so a redelivered record
or a replayed batch publishes the same ids again.

Personal data stays out: contact events carry the contact's id, its status and the *names* of the fields
that changed, never their values; a receiver that needs the values reads the contact through the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audience.contacts import keys
from audience.events.envelope import Event, make
from audience.events.images import image, occurred_at, recorded_at
from audience.events.images import keys as record_keys

# Attributes that are bookkeeping or derived facts, not the contact's own fields: a write that changes only
# these (engagement and reachability metrics, the phone's number type) is not a contact.updated.
IGNORED = frozenset(
    {
        "pk",
        "sk",
        "type",
        "id",
        "org_id",
        "version",
        "created_at",
        "updated_at",
        "engagement",
        "reach",
        "phone_type",
        "import_run",  # the import run that last wrote the contact (imports/writer.py), to skip a retried write
    }
)
_IMPORTS_SUFFIX = "#IMPORTS"
_IMPORT_RUNNING = ("importing", "cancelling")
_IMPORT_FINAL = ("completed", "failed", "cancelled")


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Names of the contact fields that differ between two images, sorted; a custom field as
    `custom_fields.<name>`. Bookkeeping, metrics and index attributes (gsi*) are ignored."""
    changed: set[str] = set()
    for name in old.keys() | new.keys():
        if name in IGNORED or name.startswith("gsi") or old.get(name) == new.get(name):
            continue
        if name == "custom_fields":
            before, after = old.get(name) or {}, new.get(name) or {}
            changed |= {f"custom_fields.{k}" for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        else:
            changed.add(name)
    return sorted(changed)


def _org_of(pk: str) -> str:
    return pk.split("#", 2)[1]


def events_of(record: Mapping[str, Any]) -> list[Event]:
    """The domain events a contacts table stream record states (most records state none)."""
    pk, sk = record_keys(record)
    if not pk.startswith("O#"):
        return []
    if sk == keys.CONTACT_SK:
        return _contact(record, _org_of(pk))
    if "#C#" in pk and sk.startswith(keys.MEMBER_PREFIX):
        return _membership(record, _org_of(pk), keys.contact_id_from_pk(pk), sk[len(keys.MEMBER_PREFIX) :])
    if "#C#" in pk and sk.startswith(keys.ACTIVITY_PREFIX) and record.get("eventName") == "INSERT":
        return _merged(record, _org_of(pk), keys.contact_id_from_pk(pk))
    if pk.endswith(_IMPORTS_SUFFIX) and record.get("eventName") == "MODIFY":
        return _import_finished(record, _org_of(pk))
    return []


def _versioned(data: dict[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with the contact's `version` (which orders one contact's events) when the item has one."""
    if isinstance(item.get("version"), int):
        data["version"] = item["version"]
    return data


def _contact(record: Mapping[str, Any], org_id: str) -> list[Event]:
    name = record.get("eventName")
    old, new = image(record, "OldImage"), image(record, "NewImage")
    if name == "INSERT":
        data = _versioned({"contact_id": new["id"], "status": new.get("status")}, new)
        return [
            make("contact.created", key=(org_id, new["id"]), org_id=org_id, occurred_at=new["created_at"], data=data)
        ]
    if name == "REMOVE":
        contact_id = old.get("id") or keys.contact_id_from_pk(record_keys(record)[0])
        return [
            make(
                "contact.deleted",
                key=(org_id, contact_id),
                org_id=org_id,
                occurred_at=occurred_at(record, old.get("updated_at"), old.get("created_at")),
                data=_versioned({"contact_id": contact_id}, old),
            )
        ]
    if name != "MODIFY":
        return []
    contact_id, version, at = new["id"], new.get("version"), new.get("updated_at") or recorded_at(record)
    found: list[Event] = []
    changed = changed_fields(old, new)
    if changed:
        found.append(
            make(
                "contact.updated",
                key=(org_id, contact_id, version, at),
                org_id=org_id,
                occurred_at=at,
                data=_versioned({"contact_id": contact_id, "changed": changed, "status": new.get("status")}, new),
            )
        )
    if old.get("status") != new.get("status"):
        found.append(
            make(
                "contact.subscription_changed",
                key=(org_id, contact_id, version, at),
                org_id=org_id,
                occurred_at=at,
                data=_versioned(
                    {"contact_id": contact_id, "previous_status": old.get("status"), "status": new.get("status")}, new
                ),
            )
        )
    return found


def _membership(record: Mapping[str, Any], org_id: str, contact_id: str, segment_id: str) -> list[Event]:
    name = record.get("eventName")
    if name == "INSERT":
        item, type_ = image(record, "NewImage"), "segment.member_added"
    elif name == "REMOVE":
        item, type_ = image(record, "OldImage"), "segment.member_removed"
    else:
        return []  # the same membership rewritten (its source changed): no one joined or left
    added_at = item.get("added_at") or ""
    at = added_at if type_ == "segment.member_added" and added_at else occurred_at(record, added_at)
    data = {"segment_id": segment_id, "contact_id": contact_id, "source": item.get("source")}
    # The membership is identified by when it began: joining again later is another fact.
    return [make(type_, key=(org_id, segment_id, contact_id, added_at), org_id=org_id, occurred_at=at, data=data)]


def _merged(record: Mapping[str, Any], org_id: str, contact_id: str) -> list[Event]:
    entry = image(record, "NewImage")
    source_id = (entry.get("data") or {}).get("source_contact_id")
    if entry.get("type") != "merged" or not source_id:
        return []
    # The merge's activity entry is written once, in the transaction that deletes the merged contact.
    data = {"contact_id": contact_id, "merged_contact_id": source_id}
    return [
        make("contact.merged", key=(org_id, contact_id, source_id), org_id=org_id, occurred_at=entry["at"], data=data)
    ]


def _import_finished(record: Mapping[str, Any], org_id: str) -> list[Event]:
    old, new = image(record, "OldImage"), image(record, "NewImage")
    if old.get("status") not in _IMPORT_RUNNING or new.get("status") not in _IMPORT_FINAL:
        return []
    run = new.get("run") or {}
    data = {
        "import_id": new["id"],
        "kind": new.get("kind"),
        "status": new["status"],
        "run_id": run.get("id"),
        "rows": run.get("rows"),
        "counts": run.get("counts") or {},
        "error": new.get("error"),
    }
    occurred_at = run.get("finished_at") or recorded_at(record)
    return [
        make(
            "import.finished", key=(org_id, new["id"], run.get("id")), org_id=org_id, occurred_at=occurred_at, data=data
        )
    ]
