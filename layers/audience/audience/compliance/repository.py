"""DynamoDB access for do-not-contact (DNC) entries and consent records (both in the contacts table).

Key design (table `ContactsTable`, keys `pk`/`sk`, KEYS_ONLY GSI `gsi1` on `gsi1pk`/`gsi1sk`). `{type}` is
`phone` (E.164), `email` (lower case) or, for a channel user id, the channel's name; `{ch}` is the entry's
channel or `*` (every channel), `{snd}` its sender or `*` (every sender); `{val}` the identifier itself;
`{fv}` the facet's value (a channel name or `all`, a source); `{s}` the entry's shard, crc32(entry id) mod
16, as for contacts (contacts/keys.py).

| item      | pk                       | sk                        | gsi1pk                        | gsi1sk            |
|-----------|--------------------------|---------------------------|-------------------------------|-------------------|
| entry     | `O#{org}#D#{type}#{val}` | `{ch}#{snd}`              | `O#{org}#DL#all##{s}`         | `{added_at}#{id}` |
| facet     | `O#{org}#D#{type}#{val}` | `F#{kind}#{ch}#{snd}`     | `O#{org}#DL#{kind}#{fv}#{s}`  | `{added_at}#{id}` |
| by value  | `O#{org}#D#{type}#{val}` | `X#{ch}#{snd}`            | `O#{org}#DX#{s}`              | `{val}#{id}`      |
| entry id  | `O#{org}#DI#{id}`        | `#DNC`                    |                               |                   |
| counters  | `O#{org}#DN#{s}`         | `#COUNTERS`               |                               |                   |
| consent   | `O#{org}#C#{contact}`    | `K#{channel}#{at}#{ulid}` |                               |                   |

- Is this identifier on the list for (channel, sender)? Point reads of the entry keys `{ch}#{snd}` with
  `ch` in (channel, `*`) and `snd` in (sender, `*`): at most four keys per identifier, one BatchGetItem.
- Entries of an org, newest or oldest first, optionally by channel (`all` for entries without one) or
  source (facets `channel`, `source`): the sixteen shards of the facet partition, merged; the cursor is the
  last sort key returned. In identifier order (and identifier prefix search): the sixteen `DX` shards,
  whose sort keys hold the identifier in lower case.
  Other filters are applied to the entries read back, a bounded number of rounds per request.
- An entry by id: the `DI` item names the entry's keys; another org's id is another key, so never found.
- Counters (total, per channel `c#`, per source `s#`) are sharded and updated in the entry's transaction.
- Consent records live in the contact's partition, written with `attribute_not_exists` (append only) and
  a check that the contact exists, so deleting the contact purges them with the rest of its partition
  (contacts/stream.py). The latest record of a channel is the first item of a descending query on
  `K#{channel}#`; `all` is a channel of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.compliance import keys
from audience.compliance.keys import (
    CONSENT_PREFIX,
    COUNTERS_SK,
    DNC_ID_SK,
    SHARDS,
    counters_pk,
    entry_pk,
    entry_sk,
    id_pk,
    identifier_partition,
    list_partition,
    shard_of,
)
from audience.compliance.models import ConsentRecord, DncEntry
from audience.contacts import keys as contact_keys
from audience.contacts.repository import deserialize, serialize
from audience.errors import ConcurrentUpdateError, NotFoundError

FACETS: tuple[str, ...] = ("channel", "source")
# Entries per transaction when many are added at once: 5 items each, plus one counter update.
_CHUNK = 19
_ATTEMPTS = 5


def _index_entry_key(pk: str, sk: str) -> tuple[str, str]:
    """The entry an index row (the entry, one of its facets, its identifier row) belongs to."""
    if sk.startswith("F#"):
        return pk, sk.split("#", 2)[2]
    if sk.startswith("X#"):
        return pk, sk[2:]
    return pk, sk


def facet_value(entry: DncEntry, kind: str) -> str:
    if kind == "channel":
        return entry.channel or "all"
    return entry.source


# -- item mapping -----------------------------------------------------------------------------------


def entry_items(entry: DncEntry) -> list[dict[str, Any]]:
    """The entry item and its index items (facets, identifier order)."""
    pk = entry_pk(entry.org_id, entry.identifier_type, entry.identifier)
    sk = entry_sk(entry.channel, entry.sender)
    shard = shard_of(entry.id)
    by_time = f"{entry.added_at}#{entry.id}"
    items: list[dict[str, Any]] = [
        {
            "pk": pk,
            "sk": sk,
            "gsi1pk": list_partition(entry.org_id, "all", "", shard),
            "gsi1sk": by_time,
            "type": "dnc",
            "id": entry.id,
            "org_id": entry.org_id,
            "identifier_type": entry.identifier_type,
            "identifier": entry.identifier,
            "channel": entry.channel,
            "sender": entry.sender,
            "source": entry.source,
            "added_at": entry.added_at,
        }
    ]
    for kind in FACETS:
        items.append(
            {
                "pk": pk,
                "sk": f"F#{kind}#{sk}",
                "gsi1pk": list_partition(entry.org_id, kind, facet_value(entry, kind), shard),
                "gsi1sk": by_time,
            }
        )
    items.append(
        {
            "pk": pk,
            "sk": f"X#{sk}",
            "gsi1pk": identifier_partition(entry.org_id, shard),
            "gsi1sk": f"{entry.identifier.lower()}#{entry.id}",
        }
    )
    return items


def entry_from_item(item: dict[str, Any]) -> DncEntry:
    return DncEntry(
        id=item["id"],
        org_id=item["org_id"],
        identifier_type=item["identifier_type"],
        identifier=item["identifier"],
        channel=item.get("channel"),
        sender=item.get("sender"),
        source=item["source"],
        added_at=item["added_at"],
    )


def counter_values(entry: DncEntry) -> dict[str, int]:
    return {"total": 1, f"c#{facet_value(entry, 'channel')}": 1, f"s#{entry.source}": 1}


def consent_item(org_id: str, record: ConsentRecord) -> dict[str, Any]:
    """The item of a consent record, in its contact's partition."""
    return keys.consent_item(
        org_id,
        record_id=record.id,
        contact_id=record.contact_id,
        channel=record.channel,
        opted_in=record.opted_in,
        source=record.source,
        proof=record.proof,
        at=record.at,
        recorded_at=record.recorded_at,
    )


def consent_from_item(item: dict[str, Any]) -> ConsentRecord:
    return ConsentRecord(
        id=item["id"],
        contact_id=item["contact_id"],
        channel=item["channel"],
        opted_in=bool(item["opted_in"]),
        source=item["source"],
        proof=item.get("proof") or "",
        at=item["at"],
        recorded_at=item["recorded_at"],
    )


# -- do-not-contact ---------------------------------------------------------------------------------


class DoNotContactRepository:
    """Do-not-contact entries, their index items and counters in the contacts table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- reads --------------------------------------------------------------------------------------

    def get_by_id(self, org_id: str, entry_id: str) -> DncEntry:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": id_pk(org_id, entry_id), "sk": DNC_ID_SK}),
            ConsistentRead=True,
        )
        entry = None
        if "Item" in response:
            pointer = deserialize(response["Item"])
            key = (pointer["entry_pk"], pointer["entry_sk"])
            entry = self.get_many([key]).get(key)
        if entry is None or entry.id != entry_id:
            raise NotFoundError(f"do-not-contact entry {entry_id} not found")
        return entry

    def get_many(self, entry_keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DncEntry]:
        """The entries among `entry_keys` (pk, sk) that exist, by key (strongly consistent)."""
        wanted = list(dict.fromkeys(entry_keys))
        found: dict[tuple[str, str], DncEntry] = {}
        for start in range(0, len(wanted), 100):
            pending: dict[str, Any] = {
                self._table_name: {
                    "Keys": [serialize({"pk": pk, "sk": sk}) for pk, sk in wanted[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                response = self._client.batch_get_item(RequestItems=pending)
                for raw in response["Responses"].get(self._table_name, []):
                    item = deserialize(raw)
                    found[(item["pk"], item["sk"])] = entry_from_item(item)
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:
                raise ConcurrentUpdateError("the contacts table is throttling reads; retry shortly")
        return found

    def index_page(
        self,
        partitions: list[str],
        *,
        lower: str,
        upper: str,
        forward: bool,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[tuple[str, tuple[str, str]]], bool]:
        """Up to `limit` (index sort key, entry key) across `partitions`, in order, strictly after `after`,
        and whether more follow."""
        if after is not None:
            lower, upper = (max(lower, after), upper) if forward else (lower, min(upper, after))
        if lower > upper:
            return [], False
        candidates: list[tuple[str, tuple[str, str]]] = []
        for partition in partitions:
            response = self._client.query(
                TableName=self._table_name,
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :pk AND gsi1sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues=serialize({":pk": partition, ":lo": lower, ":hi": upper}),
                ScanIndexForward=forward,
                Limit=limit + (2 if after else 1),  # BETWEEN also returns `after` itself; it is dropped
            )
            for item in response["Items"]:
                sort_key = item["gsi1sk"]["S"]
                if sort_key != after:
                    candidates.append((sort_key, _index_entry_key(item["pk"]["S"], item["sk"]["S"])))
        candidates.sort(key=lambda c: c[0], reverse=not forward)
        return candidates[:limit], len(candidates) > limit

    def counters(self, org_id: str) -> dict[str, int]:
        pending: dict[str, Any] = {
            self._table_name: {
                "Keys": [serialize({"pk": counters_pk(org_id, s), "sk": COUNTERS_SK}) for s in range(SHARDS)],
                "ConsistentRead": True,
            }
        }
        totals: dict[str, int] = {}
        for _ in range(10):
            response = self._client.batch_get_item(RequestItems=pending)
            for raw in response["Responses"].get(self._table_name, []):
                for name, value in deserialize(raw).items():
                    if name not in ("pk", "sk") and isinstance(value, int):
                        totals[name] = totals.get(name, 0) + value
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return totals
        raise ConcurrentUpdateError("the contacts table is throttling reads; retry shortly")

    # -- writes -------------------------------------------------------------------------------------

    def add(self, entry: DncEntry) -> DncEntry | None:
        """Write a new entry; when one with the same identifier, channel and sender exists, return it
        (and write nothing)."""
        ops = self._add_ops(entry)
        ops.append(self._counter_op(entry.org_id, shard_of(entry.id), counter_values(entry)))
        try:
            self._transact(ops)
        except ClientError as error:
            if not _condition_failed(error):
                raise
            existing = self._existing(entry)
            if existing is None:  # removed again in between: the caller may retry
                raise ConcurrentUpdateError("the entry changed while it was being written; retry") from None
            return existing
        return None

    def add_many(self, entries: list[DncEntry]) -> list[DncEntry | None]:
        """Add many entries; for each (in order) None when written, else the entry that already existed.
        Entries must not repeat a natural key.

        Entries are grouped by shard and each group written by one worker, in transactions of up to 19
        entries with one counter update: no two transactions in flight touch the same counter item.
        """
        groups: dict[int, list[int]] = {}
        for index, entry in enumerate(entries):
            groups.setdefault(shard_of(entry.id), []).append(index)
        results: list[DncEntry | None] = [None] * len(entries)

        def write(indexes: list[int]) -> None:
            for start in range(0, len(indexes), _CHUNK):
                chunk = [entries[i] for i in indexes[start : start + _CHUNK]]
                ops = [op for entry in chunk for op in self._add_ops(entry)]
                deltas: dict[str, int] = {}
                for entry in chunk:
                    for name, value in counter_values(entry).items():
                        deltas[name] = deltas.get(name, 0) + value
                ops.append(self._counter_op(chunk[0].org_id, shard_of(chunk[0].id), deltas))
                try:
                    self._transact(ops)
                except ClientError as error:
                    if not _condition_failed(error):
                        raise
                    # Someone added one of these meanwhile: one at a time, each reporting what it found.
                    for index in indexes[start : start + _CHUNK]:
                        results[index] = self.add(entries[index])

        work = list(groups.values())
        if len(work) <= 1:
            for indexes in work:
                write(indexes)
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(work))) as pool:
                list(pool.map(write, work))
        return results

    def remove(self, entry: DncEntry) -> None:
        """Delete the entry with its index items and counts; NotFoundError when it is already gone."""
        pk = entry_pk(entry.org_id, entry.identifier_type, entry.identifier)
        ops: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": pk, "sk": entry_sk(entry.channel, entry.sender)}),
                    "ConditionExpression": "id = :id",
                    "ExpressionAttributeValues": serialize({":id": entry.id}),
                }
            }
        ]
        for item in entry_items(entry)[1:]:
            ops.append({"Delete": {"TableName": self._table_name, "Key": serialize({"pk": pk, "sk": item["sk"]})}})
        ops.append(
            {
                "Delete": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": id_pk(entry.org_id, entry.id), "sk": DNC_ID_SK}),
                }
            }
        )
        ops.append(
            self._counter_op(entry.org_id, shard_of(entry.id), {k: -v for k, v in counter_values(entry).items()})
        )
        try:
            self._transact(ops)
        except ClientError as error:
            if _condition_failed(error):
                raise NotFoundError(f"do-not-contact entry {entry.id} not found") from None
            raise

    # -- helpers ------------------------------------------------------------------------------------

    def _transact(self, ops: list[dict[str, Any]]) -> None:
        """TransactWriteItems, retried with backoff while it conflicts with other transactions (counters
        are shared by the entries of a shard)."""
        for attempt in range(_ATTEMPTS):
            try:
                self._client.transact_write_items(TransactItems=ops)
                return
            except ClientError as error:
                if not _conflicted(error) or attempt == _ATTEMPTS - 1:
                    if _conflicted(error):
                        raise ConcurrentUpdateError("the do-not-contact list is busy; retry shortly") from None
                    raise
            time.sleep(min(1.0, 0.025 * 2**attempt))

    def _existing(self, entry: DncEntry) -> DncEntry | None:
        key = (entry_pk(entry.org_id, entry.identifier_type, entry.identifier), entry_sk(entry.channel, entry.sender))
        return self.get_many([key]).get(key)

    def _add_ops(self, entry: DncEntry) -> list[dict[str, Any]]:
        items = entry_items(entry)
        ops: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(items[0]),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        ops.extend({"Put": {"TableName": self._table_name, "Item": serialize(item)}} for item in items[1:])
        pointer = {
            "pk": id_pk(entry.org_id, entry.id),
            "sk": DNC_ID_SK,
            "entry_pk": items[0]["pk"],
            "entry_sk": items[0]["sk"],
        }
        ops.append(
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(pointer),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        )
        return ops

    def _counter_op(self, org_id: str, shard: int, deltas: dict[str, int]) -> dict[str, Any]:
        names = {f"#c{i}": name for i, name in enumerate(deltas)}
        values = {f":c{i}": delta for i, delta in enumerate(deltas.values())}
        return {
            "Update": {
                "TableName": self._table_name,
                "Key": serialize({"pk": counters_pk(org_id, shard), "sk": COUNTERS_SK}),
                "UpdateExpression": "ADD " + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True)),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": serialize(values),
            }
        }


# -- consent ----------------------------------------------------------------------------------------


class ConsentRepository:
    """Consent records, appended to their contact's partition."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def append(self, org_id: str, record: ConsentRecord) -> None:
        """Append a record; NotFoundError when the contact does not exist (or is deleted meanwhile)."""
        item = consent_item(org_id, record)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self._table_name,
                            "Key": serialize({"pk": item["pk"], "sk": contact_keys.CONTACT_SK}),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table_name,
                            "Item": serialize(item),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise NotFoundError(f"contact {record.contact_id} not found") from None
            raise ConcurrentUpdateError("the consent record could not be appended; retry") from None

    def latest(self, org_id: str, contact_id: str, channel: str) -> ConsentRecord | None:
        """The newest record (by `at`) of one channel (`all` is a channel of its own)."""
        response = self._client.query(
            TableName=self._table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=serialize(
                {":pk": contact_keys.contact_pk(org_id, contact_id), ":prefix": f"{CONSENT_PREFIX}{channel}#"}
            ),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response["Items"]
        return consent_from_item(deserialize(items[0])) if items else None

    def page(
        self, org_id: str, contact_id: str, channels: Iterable[str], *, after: str | None = None, limit: int = 50
    ) -> tuple[list[ConsentRecord], bool]:
        """Up to `limit` records of `channels`, newest first, strictly before the position `after`
        (`{at}#{ulid}`), and whether more follow."""
        pk = contact_keys.contact_pk(org_id, contact_id)
        candidates: list[tuple[str, dict[str, Any]]] = []
        for channel in channels:
            prefix = f"{CONSENT_PREFIX}{channel}#"
            upper = prefix + (after if after else "~")  # "~" sorts after every timestamp
            response = self._client.query(
                TableName=self._table_name,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues=serialize({":pk": pk, ":lo": prefix, ":hi": upper}),
                ScanIndexForward=False,
                Limit=limit + (2 if after else 1),
            )
            for raw in response["Items"]:
                item = deserialize(raw)
                position = item["sk"][len(prefix) :]
                if position != after:
                    candidates.append((position, item))
        candidates.sort(key=lambda c: c[0], reverse=True)
        return [consent_from_item(item) for _, item in candidates[:limit]], len(candidates) > limit


def _condition_failed(error: ClientError) -> bool:
    code = error.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons") or []
    return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)


def _conflicted(error: ClientError) -> bool:
    """A transaction cancelled only because another one touched the same items at the same time."""
    if error.response["Error"]["Code"] != "TransactionCanceledException":
        return False
    codes = {r.get("Code") for r in error.response.get("CancellationReasons") or []} - {"None", None}
    return bool(codes) and codes <= {"TransactionConflict"}
