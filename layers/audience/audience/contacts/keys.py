"""Key formats of the contacts table, shared by the repository and the stream consumer.

Kept free of heavy imports so that the stream function's cold start stays close to `import boto3`.
"""

from __future__ import annotations

import zlib

# Org-wide index partitions (lists, facets, search, counters) are spread over this many shards so that
# a single org importing thousands of contacts per second never concentrates writes on one key.
SHARDS = 16

CONTACT_SK = "#CONTACT"
IDENTITY_SK = "#IDENTITY"
COUNTERS_SK = "#COUNTERS"
ACTIVITY_PREFIX = "A#"
FACET_PREFIX = "F#"
SEARCH_PREFIX = "X#"
MEMBER_PREFIX = "M#"  # a contact's segment memberships (segments/repository.py)
GROWTH_PREFIX = "m#"  # contacts by the month they were created (YYYY-MM) on the counter items
SEGMENT_COUNTER_PREFIX = "g#"  # a segment's member count on the counter items


def segment_counter(segment_id: str) -> str:
    return f"{SEGMENT_COUNTER_PREFIX}{segment_id}"


def contact_pk(org_id: str, contact_id: str) -> str:
    return f"O#{org_id}#C#{contact_id}"


def identity_pk(org_id: str, kind: str, value: str) -> str:
    return f"O#{org_id}#I#{kind}#{value}"


def counters_pk(org_id: str, shard: int) -> str:
    return f"O#{org_id}#N#{shard}"


def shard_of(contact_id: str) -> int:
    return zlib.crc32(contact_id.encode()) % SHARDS


def facet_partition(org_id: str, kind: str, value: str, shard: int) -> str:
    return f"O#{org_id}#F#{kind}#{value}#{shard}"


def search_partition(org_id: str, shard: int) -> str:
    return f"O#{org_id}#X#{shard}"


def contact_id_from_pk(pk: str) -> str:
    return pk.rsplit("#C#", 1)[1]
