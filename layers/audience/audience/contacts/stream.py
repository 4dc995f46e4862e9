"""Reactions to contact changes read from the contacts table stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audience.contacts import keys
from audience.contacts.repository import purge_partition


def contact_removed(record: Mapping[str, Any]) -> str | None:
    """The partition key of a contact the stream record deletes, or None for any other record."""
    if record.get("eventName") != "REMOVE":
        return None
    key = record.get("dynamodb", {}).get("Keys", {})
    if key.get("sk", {}).get("S") != keys.CONTACT_SK:
        return None
    return key["pk"]["S"]


def purge_removed_contact(client: Any, table_name: str, record: Mapping[str, Any]) -> int:
    """Delete what a deleted (or merged-away) contact left in its partition; 0 for other records."""
    pk = contact_removed(record)
    return purge_partition(client, table_name, pk) if pk else 0
