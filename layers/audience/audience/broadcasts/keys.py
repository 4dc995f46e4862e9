"""Key formats of the broadcasts table (no I/O): the repository owns them, the sender and the inbound
status path share them.

| item                | pk                              | sk                | index keys                            |
|---------------------|---------------------------------|-------------------|---------------------------------------|
| summary             | `O#{org}#B#{id}`                | `#S`              | gsi1 `O#{org}#BROADCASTS` `{at}#{id}` |
| content             | `O#{org}#B#{id}`                | `#C`              |                                       |
| counter shard       | `O#{org}#B#{id}`                | `#N#{s}`          |                                       |
| plan cursor         | `O#{org}#B#{id}`                | `#P#{run}`        |                                       |
| batch planned       | `O#{org}#B#{id}`                | `Q#{batch}`       |                                       |
| batch tallied       | `O#{org}#B#{id}`                | `T#{batch}`       |                                       |
| recipient           | `O#{org}#B#{id}#R#{s}`          | `{key}#{channel}` | gsi2 `O#{org}#C#{contact}#BR` `{at}#.` |
| message → recipient | `O#{org}#P#{channel}#{message}` | `#R` (TTL)        |                                       |
| idempotency key     | `O#{org}#B#{id}#K#{sha256}`     | `#K` (TTL 24 h)   |                                       |
| rate window         | `O#{org}#B#{id}#W#{window}`     | `#W` (TTL)        |                                       |
| property values     | `O#{org}#B#{id}#V{version}#{s}` | `{contact}`       | gsi2 `O#{org}#C#{contact}#BV` (TTL)   |
| org activity        | `O#{org}#ACT#{s}`               | `D#{day}`         |                                       |
| pacing schedule     | `PACE#{connection}`             | `#P` (TTL)        |                                       |
| daily cap           | `PACE#{connection}#D#{day}`     | `#P` (TTL)        |                                       |
| frequency cap takes | `O#{org}#FC#{contact}`          | `#FC` (TTL)       |                                       |
| sandbox message     | `O#{org}#SBX#{connection}`      | `{at}#{message}`  | (TTL 7 days)                          |
| unsubscribe link    | `U#{token}`                     | `#U` (TTL 1 year) |                                       |

`{s}` is a shard (0-15). A recipient's `{key}` is its contact id in a marketing broadcast and the send's id
in a transactional one (a contact gets many OTPs). The summary is small (status, schedule, names) and is
what transitions write and the list index projects; the content (templates up to 256 KB of HTML) is written
only while the broadcast is a draft. The list index (gsi1) projects summaries; the contact index (gsi2)
holds keys only, so a recipient's status moves never write an index. One query on the broadcast's
partition with `sk < "$"` reads summary, content and counters together; batch markers (`Q#`, `T#`) sort
after them. A contact's frequency cap item holds the marketing messages it was sent in the org's window
(`takes`: key → epoch seconds, `version` for optimistic writes; audience/policies/frequency.py).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

SHARDS = 16
SUMMARY_SK = "#S"
CONTENT_SK = "#C"
COUNTER_PREFIX = "#N#"
PLAN_PREFIX = "#P#"
PLANNED_PREFIX = "Q#"
TALLY_PREFIX = "T#"
HEAD_END = "$"  # sorts after every "#..." key and before "Q#"/"T#"
MESSAGE_SK = "#R"
IDEMPOTENCY_SK = "#K"
WINDOW_SK = "#W"
PACE_SK = "#P"
UNSUBSCRIBE_SK = "#U"
FREQUENCY_SK = "#FC"


def broadcast_pk(org_id: str, broadcast_id: str) -> str:
    return f"O#{org_id}#B#{broadcast_id}"


def list_partition(org_id: str) -> str:
    return f"O#{org_id}#BROADCASTS"


def counter_sk(shard: int) -> str:
    return f"{COUNTER_PREFIX}{shard}"


def shard_of(value: str) -> int:
    return zlib.crc32(value.encode()) % SHARDS


def recipient_pk(org_id: str, broadcast_id: str, shard: int) -> str:
    return f"O#{org_id}#B#{broadcast_id}#R#{shard}"


def recipient_sk(key: str, channel: str) -> str:
    return f"{key}#{channel}"


def is_marketing_row(row: dict[str, Any]) -> bool:
    """A marketing recipient row is keyed by its contact; a transactional one by its send id."""
    return str(row.get("sk", "")).split("#", 1)[0] == row.get("contact_id")


def contact_partition(org_id: str, contact_id: str) -> str:
    return f"O#{org_id}#C#{contact_id}#BR"


def contact_values_partition(org_id: str, contact_id: str) -> str:
    """The contact index partition of a contact's property values (found and deleted with the contact)."""
    return f"O#{org_id}#C#{contact_id}#BV"


def message_pk(org_id: str, channel: str, provider_id: str) -> str:
    return f"O#{org_id}#P#{channel}#{provider_id}"


def idempotency_pk(org_id: str, broadcast_id: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"O#{org_id}#B#{broadcast_id}#K#{digest}"


def window_pk(org_id: str, broadcast_id: str, window: int) -> str:
    return f"O#{org_id}#B#{broadcast_id}#W#{window}"


def values_pk(org_id: str, broadcast_id: str, version: str, shard: int) -> str:
    return f"O#{org_id}#B#{broadcast_id}#V{version}#{shard}"


def activity_pk(org_id: str, shard: int) -> str:
    return f"O#{org_id}#ACT#{shard}"


def activity_sk(day: str) -> str:
    return f"D#{day}"


def pace_pk(connection_id: str) -> str:
    return f"PACE#{connection_id}"


def cap_pk(connection_id: str, day: str) -> str:
    return f"PACE#{connection_id}#D#{day}"


def frequency_pk(org_id: str, contact_id: str) -> str:
    return f"O#{org_id}#FC#{contact_id}"


def unsubscribe_pk(token: str) -> str:
    return f"U#{token}"


def sandbox_pk(org_id: str, connection_id: str) -> str:
    return f"O#{org_id}#SBX#{connection_id}"
