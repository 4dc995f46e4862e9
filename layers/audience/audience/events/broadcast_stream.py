"""Events read from the broadcasts table stream: a broadcast's status and its recipients' statuses.

The stream is where every status move lands once, whichever writer made it (the API, the planner, the
sender, a receipt from a channel), so these events cost no reads and add no latency to any of them. Ids
derive from the thing and its new state: a broadcast's version, a recipient's run and status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audience.broadcasts import keys
from audience.events.envelope import Event, make
from audience.events.images import image, occurred_at, recorded_at
from audience.events.images import keys as record_keys

# The statuses a recipient rests in that receivers care about (PENDING and SENDING are internal steps;
# CANCELLED follows from the broadcast's own broadcast.status_changed).
RECIPIENT_STATUSES = ("SENT", "DELIVERED", "READ", "FAILED", "SKIPPED")


def events_of(record: Mapping[str, Any]) -> list[Event]:
    """The domain events a broadcasts table stream record states (most records state none)."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return []
    pk, sk = record_keys(record)
    parts = pk.split("#")
    # O#{org}#B#{id} (summary) and O#{org}#B#{id}#R#{shard} (recipients)
    if len(parts) == 4 and parts[0] == "O" and parts[2] == "B" and sk == keys.SUMMARY_SK:
        return _broadcast(record, parts[1], parts[3])
    if len(parts) == 6 and parts[0] == "O" and parts[2] == "B" and parts[4] == "R":
        return _recipient(record, parts[1], parts[3], sk)
    return []


def _broadcast(record: Mapping[str, Any], org_id: str, broadcast_id: str) -> list[Event]:
    old, new = image(record, "OldImage"), image(record, "NewImage")
    if record.get("eventName") == "INSERT" or old.get("status") == new.get("status"):
        return []  # created as a draft (no move yet), or another field changed
    data: dict[str, Any] = {
        "broadcast_id": broadcast_id,
        "broadcast_type": new.get("type"),
        "previous_status": old.get("status"),
        "status": new["status"],
        "run_id": new.get("run"),
    }
    if isinstance(new.get("version"), int):
        data["version"] = new["version"]  # orders one broadcast's moves
    if new.get("error"):
        data["error"] = new["error"]
    return [
        make(
            "broadcast.status_changed",
            key=(org_id, broadcast_id, new.get("version"), new["status"]),
            org_id=org_id,
            occurred_at=occurred_at(
                record, *(new.get(name) for name in ("updated_at", "finished_at", "cancelled_at", "sending_started_at"))
            ),
            data=data,
        )
    ]


def _recipient(record: Mapping[str, Any], org_id: str, broadcast_id: str, sk: str) -> list[Event]:
    old, new = image(record, "OldImage"), image(record, "NewImage")
    status = new.get("status")
    if status not in RECIPIENT_STATUSES or old.get("status") == status:
        return []
    key, _, channel = sk.rpartition("#")
    contact_id = new.get("contact_id")
    data: dict[str, Any] = {
        "broadcast_id": broadcast_id,
        "contact_id": contact_id,
        "channel": new.get("channel") or channel,
        "previous_status": old.get("status"),
        "status": status,
        "run_id": new.get("run"),
    }
    if key != contact_id:
        data["send_id"] = key  # a transactional send (a contact receives many)
    if new.get("provider_message_id"):
        data["message_id"] = new["provider_message_id"]
    for name in ("error_code", "reason"):
        if new.get(name) and status in ("FAILED", "SKIPPED"):
            data[name] = new[name]
    stamp = new.get(f"{status.lower()}_at")
    return [
        make(
            "recipient.status_changed",
            key=(org_id, broadcast_id, sk, new.get("run") or "", status),
            org_id=org_id,
            occurred_at=stamp or recorded_at(record),
            data=data,
        )
    ]
