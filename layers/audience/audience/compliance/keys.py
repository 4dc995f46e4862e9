"""Key formats of do-not-contact entries and consent records, and the consent item's layout.

Kept free of heavy imports (no models, no boto3): the contact service writes consent records on every
status change, and queue consumers import the contact service. The key design is in repository.py.
"""

from __future__ import annotations

import zlib
from typing import Any

from audience.contacts import keys as contact_keys

SHARDS = contact_keys.SHARDS
ANY = "*"
DNC_ID_SK = "#DNC"
COUNTERS_SK = "#COUNTERS"
CONSENT_PREFIX = "K#"


def shard_of(entry_id: str) -> int:
    return zlib.crc32(entry_id.encode()) % SHARDS


def entry_pk(org_id: str, identifier_type: str, identifier: str) -> str:
    return f"O#{org_id}#D#{identifier_type}#{identifier}"


def entry_sk(channel: str | None, sender: str | None) -> str:
    return f"{channel or ANY}#{sender or ANY}"


def id_pk(org_id: str, entry_id: str) -> str:
    return f"O#{org_id}#DI#{entry_id}"


def list_partition(org_id: str, kind: str, value: str, shard: int) -> str:
    return f"O#{org_id}#DL#{kind}#{value}#{shard}"


def identifier_partition(org_id: str, shard: int) -> str:
    return f"O#{org_id}#DX#{shard}"


def counters_pk(org_id: str, shard: int) -> str:
    return f"O#{org_id}#DN#{shard}"


def lookup_keys(
    org_id: str, identifier_type: str, identifier: str, channel: str | None, sender: str | None
) -> list[tuple[str, str]]:
    """The keys of every entry that covers (identifier, channel, sender): blank or equal channel and sender."""
    pk = entry_pk(org_id, identifier_type, identifier)
    channels = dict.fromkeys([channel, None])
    senders = dict.fromkeys([sender, None])
    return [(pk, entry_sk(c, s)) for c in channels for s in senders]


def consent_position(at: str, record_id: str) -> str:
    """A record's place among its contact's records, oldest first: `{at}#{ulid}`."""
    return f"{at}#{record_id.split('_', 1)[1]}"


def consent_item(
    org_id: str,
    *,
    record_id: str,
    contact_id: str,
    channel: str,
    opted_in: bool,
    source: str,
    proof: str,
    at: str,
    recorded_at: str,
) -> dict[str, Any]:
    """The item of a consent record, in its contact's partition."""
    return {
        "pk": contact_keys.contact_pk(org_id, contact_id),
        "sk": f"{CONSENT_PREFIX}{channel}#{consent_position(at, record_id)}",
        "type": "consent",
        "id": record_id,
        "contact_id": contact_id,
        "channel": channel,
        "opted_in": opted_in,
        "source": source,
        "proof": proof or None,
        "at": at,
        "recorded_at": recorded_at,
    }
