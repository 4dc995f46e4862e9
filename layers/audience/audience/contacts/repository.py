"""DynamoDB access for contacts.

Key design (table `ContactsTable`, keys `pk`/`sk`, KEYS_ONLY GSI `gsi1` on `gsi1pk`/`gsi1sk`, stream
NEW_AND_OLD_IMAGES, TTL `expires_at`). `{s}` is the contact's shard, crc32(contact id) mod 16.

| item        | pk                         | sk                 | gsi1pk                         | gsi1sk              |
|-------------|----------------------------|--------------------|--------------------------------|---------------------|
| contact     | `O#{org}#C#{id}`           | `#CONTACT`         | `O#{org}#F#all##{s}`           | `{created_at}#{id}` |
| facet       | `O#{org}#C#{id}`           | `F#{kind}#{value}` | `O#{org}#F#{kind}#{value}#{s}` | `{created_at}#{id}` |
| search term | `O#{org}#C#{id}`           | `X#{term}`         | `O#{org}#X#{s}`                | `{term}#{id}`       |
| activity    | `O#{org}#C#{id}`           | `A#{at}#{ulid}`    |                                |                     |
| identity    | `O#{org}#I#{type}#{value}` | `#IDENTITY`        |                                |                     |
| counters    | `O#{org}#N#{s}`            | `#COUNTERS`        |                                |                     |

- Contact by id: get `#CONTACT`; another org's id is simply a different key, so it is never found.
- Contact by identity: get the identity item (phone E.164, email lower case, channel user id). Identity
  items are written with `attribute_not_exists(pk) OR contact_id = :me` in the same transaction as the
  contact, so two concurrent creates with one phone yield one contact.
- Contacts of an org, newest first, optionally by status, tag or channel (facets) and created range:
  query the sixteen shards of the facet partition and merge; the cursor is the last sort key returned.
- Name/identifier prefix search: `begins_with` on the sixteen search partitions.
- Counters (total, per status, tag and channel) are sharded items updated in the contact's transaction,
  so counts are exact and never come from scans.
- Everything a contact owns lives in its partition, so deleting it is one query away; the stream
  consumer purges what the delete transaction does not (activity, later memberships).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import time
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from audience import aws, clock, ids
from audience.contacts import keys, quality
from audience.contacts.models import Activity, Contact, Identity, Page
from audience.contacts.normalize import fold, national_digits
from audience.contacts.stream import merged_marker, purge_partition, write_all
from audience.errors import ConcurrentUpdateError, ConflictError, NotFoundError, ValidationError

MAX_TRANSACTION_ITEMS = 100
_SIGNAL_ATTEMPTS = 6
_FUTURE_TOLERANCE = timedelta(minutes=5)
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
_SEARCH_END = "\U0010ffff"


class IdentityTakenError(ConflictError):
    """An identity of the contact being written already belongs to another contact."""

    def __init__(self, identity: Identity, owner_id: str | None) -> None:
        super().__init__(
            f"{identity.type} {identity.value!r} already belongs to contact {owner_id}",
            identity_type=identity.type,
            identity_value=identity.value,
            contact_id=owner_id,
        )
        self.identity = identity
        self.owner_id = owner_id


# -- item mapping ---------------------------------------------------------------------------------


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def _attribute(value: Any) -> dict[str, Any]:
    """One attribute value in DynamoDB's wire form: strings, integers, booleans, and lists and maps of
    strings (most of what is written) directly, anything else through boto3's TypeSerializer."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int:
        return {"N": str(value)}
    if kind is bool:
        return {"BOOL": value}
    if kind is list and all(type(v) is str for v in value):
        return {"L": [{"S": v} for v in value]}
    if kind is dict and all(type(v) is str for v in value.values()):
        return {"M": {k: {"S": v} for k, v in value.items()}}
    return _SERIALIZER.serialize(_to_dynamo(value))


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's wire form; None values are left out."""
    return {k: _attribute(v) for k, v in item.items() if v is not None}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_DESERIALIZER.deserialize(v)) for k, v in item.items()}


def query_all(client: Any, table_name: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a query returns, page after page, deserialized."""
    items: list[dict[str, Any]] = []
    while True:
        response = client.query(TableName=table_name, **kwargs)
        items.extend(deserialize(i) for i in response["Items"])
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def add_op(table_name: str, key: dict[str, Any], deltas: dict[str, int]) -> dict[str, Any]:
    """A transaction's Update that ADDs `deltas` to the counters of the item at `key`."""
    names = {f"#c{i}": name for i, name in enumerate(deltas)}
    values = {f":c{i}": delta for i, delta in enumerate(deltas.values())}
    return {
        "Update": {
            "TableName": table_name,
            "Key": serialize(key),
            "UpdateExpression": "ADD " + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True)),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": serialize(values),
        }
    }


def contact_to_item(contact: Contact) -> dict[str, Any]:
    shard = keys.shard_of(contact.id)
    return {
        "pk": keys.contact_pk(contact.org_id, contact.id),
        "sk": keys.CONTACT_SK,
        "gsi1pk": keys.facet_partition(contact.org_id, "all", "", shard),
        "gsi1sk": f"{contact.created_at}#{contact.id}",
        "type": "contact",
        "id": contact.id,
        "org_id": contact.org_id,
        "status": contact.status,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "full_name": contact.full_name,
        "original_name": contact.original_name,
        "email": contact.email,
        "phone": contact.phone,
        "country": contact.country,
        "channels": contact.channels or None,
        "custom_fields": contact.custom_fields or None,
        "tags": contact.tags or None,
        "extra_identities": [{"type": i.type, "value": i.value} for i in contact.extra_identities] or None,
        "phone_type": contact.phone_type if contact.phone else None,
        "reach": contact.reach or None,
        "engagement": contact.engagement or None,
        "version": contact.version,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def contact_from_item(item: dict[str, Any]) -> Contact:
    return Contact(
        id=item["id"],
        org_id=item["org_id"],
        status=item["status"],
        first_name=item.get("first_name"),
        last_name=item.get("last_name"),
        full_name=item.get("full_name"),
        original_name=item.get("original_name"),
        email=item.get("email"),
        phone=item.get("phone"),
        country=item.get("country"),
        channels=list(item.get("channels") or []),
        custom_fields=dict(item.get("custom_fields") or {}),
        tags=list(item.get("tags") or []),
        extra_identities=[Identity(i["type"], i["value"]) for i in item.get("extra_identities") or []],
        phone_type=item.get("phone_type"),
        reach=dict(item.get("reach") or {}),
        engagement=dict(item.get("engagement") or {}),
        version=int(item.get("version", 0)),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
    )


def search_terms(contact: Contact) -> list[str]:
    """The prefixes a contact is found by: its name and each of its words, email and phone digits."""
    terms: list[str] = []
    name = contact.display_name()
    if name:
        folded = fold(name)
        terms.append(folded)
        terms.extend(folded.split(" ")[:4])
    if contact.email:
        terms.append(fold(contact.email))
    if contact.phone:
        terms.append(contact.phone.lstrip("+"))
        terms.append(national_digits(contact.phone))
    return [t[:200] for t in dict.fromkeys(terms) if t]


def facets(contact: Contact) -> list[tuple[str, str]]:
    """(kind, value) pairs a contact can be listed by; each is also a maintained counter."""
    found = [("status", contact.status)]
    found.extend(("tag", tag) for tag in contact.tags)
    found.extend(("channel", ch) for ch in dict.fromkeys(c["channel"] for c in contact.channels))
    return found


def derived_items(contact: Contact) -> dict[tuple[str, str], dict[str, Any]]:
    """Facet and search items of a contact, keyed by (pk, sk)."""
    pk = keys.contact_pk(contact.org_id, contact.id)
    shard = keys.shard_of(contact.id)
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, value in facets(contact):
        sk = f"{keys.FACET_PREFIX}{kind}#{value}"
        items[(pk, sk)] = {
            "pk": pk,
            "sk": sk,
            "gsi1pk": keys.facet_partition(contact.org_id, kind, value, shard),
            "gsi1sk": f"{contact.created_at}#{contact.id}",
        }
    for term in search_terms(contact):
        sk = f"{keys.SEARCH_PREFIX}{term}"
        items[(pk, sk)] = {
            "pk": pk,
            "sk": sk,
            "gsi1pk": keys.search_partition(contact.org_id, shard),
            "gsi1sk": f"{term}#{contact.id}",
        }
    return items


def counter_values(contact: Contact | None) -> dict[str, int]:
    if contact is None:
        return {}
    values = {"total": 1}
    if contact.created_at:
        values[f"{keys.GROWTH_PREFIX}{contact.created_at[:7]}"] = 1  # contacts created that month (still here)
    for kind, value in facets(contact):
        values[f"{kind[0]}#{value}"] = 1
    return values


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": sort_key}).encode()).decode().rstrip("=")


_CURSOR_KEY = re.compile(r"^.{1,512}#ct_[0-9a-z]{26}$", re.S)
_ACTIVITY_KEY = re.compile(r"^A#\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z#[0-9a-z]{26}$")


def decode_cursor(cursor: str | None, shape: re.Pattern[str] = _CURSOR_KEY) -> str | None:
    """The sort key a cursor carries; anything this API did not hand out is a 422."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        value = None
    if not isinstance(value, str) or not shape.match(value):
        raise ValidationError.for_field("cursor", cursor, "is not a cursor this API returned")
    return value


def decode_activity_cursor(cursor: str | None) -> str | None:
    return decode_cursor(cursor, _ACTIVITY_KEY)


# -- repository -----------------------------------------------------------------------------------


class ContactsRepository:
    """Contacts, identities, facets, search terms, activity and counters in the contacts table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- reads --------------------------------------------------------------------------------------

    def get(self, org_id: str, contact_id: str, *, consistent: bool = True) -> Contact:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.contact_pk(org_id, contact_id), "sk": keys.CONTACT_SK}),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            raise NotFoundError(f"contact {contact_id} not found")
        return contact_from_item(deserialize(response["Item"]))

    def get_many(self, org_id: str, contact_ids: Iterable[str]) -> dict[str, Contact]:
        """The contacts among `contact_ids` that exist in the org, by id."""
        return {cid: contact_from_item(item) for cid, item in self.get_items(org_id, contact_ids).items()}

    def get_items(self, org_id: str, contact_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The contact items (as stored, with any attribute a writer added) among `contact_ids`, by id."""
        wanted = list(dict.fromkeys(contact_ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 100):
            request_keys = [
                serialize({"pk": keys.contact_pk(org_id, cid), "sk": keys.CONTACT_SK})
                for cid in wanted[start : start + 100]
            ]
            for item in self._batch_get(request_keys):
                found[item["id"]] = item
        return found

    def put_items(self, items: list[dict[str, Any]]) -> int:
        """Put items with BatchWriteItem, 25 a request, retrying what DynamoDB leaves unprocessed; returns
        the number of requests made. Only for items whose rewrite is harmless (the same item again)."""
        requests = 0
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": serialize(i)}} for i in items[start : start + 25]]
            requests += write_all(self._client, {self._table_name: batch})
        return requests

    def owners(self, org_id: str, identities: Iterable[Identity]) -> dict[Identity, str]:
        """Which contact owns each identity (strongly consistent); unowned identities are absent."""
        wanted = list(dict.fromkeys(identities))
        by_pk = {keys.identity_pk(org_id, i.type, i.value): i for i in wanted}
        owners: dict[Identity, str] = {}
        pks = list(by_pk)
        for start in range(0, len(pks), 100):
            request_keys = [serialize({"pk": pk, "sk": keys.IDENTITY_SK}) for pk in pks[start : start + 100]]
            for item in self._batch_get(request_keys):
                owners[by_pk[item["pk"]]] = item["contact_id"]
        return owners

    def _batch_get(self, request_keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pending: dict[str, Any] = {self._table_name: {"Keys": request_keys, "ConsistentRead": True}}
        for _ in range(10):
            if not pending:
                break
            response = self._client.batch_get_item(RequestItems=pending)
            items.extend(deserialize(i) for i in response["Responses"].get(self._table_name, []))
            pending = response.get("UnprocessedKeys") or {}
        if pending:
            raise ConcurrentUpdateError("the contacts table is throttling reads; retry shortly")
        return items

    def counters(self, org_id: str) -> dict[str, int]:
        request_keys = [
            serialize({"pk": keys.counters_pk(org_id, s), "sk": keys.COUNTERS_SK}) for s in range(keys.SHARDS)
        ]
        totals: dict[str, int] = {}
        for item in self._batch_get(request_keys):
            for name, value in item.items():
                if name not in ("pk", "sk") and isinstance(value, int):
                    totals[name] = totals.get(name, 0) + value
        return totals

    def list_entries(
        self,
        org_id: str,
        *,
        facet: tuple[str, str] = ("all", ""),
        created_from: str | None = None,
        created_to: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[tuple[str, str]], bool]:
        """Up to `limit` (sort key, contact id) of a facet, newest first, and whether more follow."""
        lower = created_from or "0"  # below any ISO timestamp; DynamoDB refuses empty key values
        upper = f"{created_to}~" if created_to else "~"  # "~" sorts after "#{id}" and every timestamp
        if after is not None and after < upper:
            upper = after
        if lower > upper:
            return [], False
        candidates: list[str] = []
        for shard in range(keys.SHARDS):
            response = self._client.query(
                TableName=self._table_name,
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :pk AND gsi1sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues=serialize(
                    {":pk": keys.facet_partition(org_id, facet[0], facet[1], shard), ":lo": lower, ":hi": upper}
                ),
                ScanIndexForward=False,
                Limit=limit + (2 if after else 1),  # BETWEEN also returns `after` itself; it is dropped
            )
            candidates.extend(sk for sk in (i["gsi1sk"]["S"] for i in response["Items"]) if after is None or sk < after)
        candidates.sort(reverse=True)
        return [(sk, sk.rsplit("#", 1)[1]) for sk in candidates[:limit]], len(candidates) > limit

    def shard_entries(
        self, org_id: str, facet: tuple[str, str], shard: int, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[tuple[str, str]], bool]:
        """Up to `limit` (sort key, contact id) of one shard of a facet, newest first, after the sort
        key `after`; for jobs that walk an org's contacts (or a segment's members) shard by shard."""
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": keys.facet_partition(org_id, facet[0], facet[1], shard)}),
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if after is not None:
            kwargs["KeyConditionExpression"] += " AND gsi1sk < :after"
            kwargs["ExpressionAttributeValues"] = serialize(
                {":pk": keys.facet_partition(org_id, facet[0], facet[1], shard), ":after": after}
            )
        items = self._client.query(**kwargs)["Items"]
        entries = [(sk, sk.rsplit("#", 1)[1]) for sk in (i["gsi1sk"]["S"] for i in items)]
        return entries[:limit], len(entries) > limit

    def search_entries(
        self, org_id: str, prefix: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[tuple[str, str]], bool]:
        """Up to `limit` (term#id, contact id) whose term starts with `prefix`, in term order, and
        whether more follow. A contact appears once per matching term."""
        lower = max(prefix, after) if after else prefix
        candidates: list[str] = []
        for shard in range(keys.SHARDS):
            response = self._client.query(
                TableName=self._table_name,
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :pk AND gsi1sk BETWEEN :lo AND :hi",
                ExpressionAttributeValues=serialize(
                    {":pk": keys.search_partition(org_id, shard), ":lo": lower, ":hi": prefix + _SEARCH_END}
                ),
                Limit=limit + (2 if after else 1),  # BETWEEN also returns `after` itself; it is dropped
            )
            candidates.extend(sk for sk in (i["gsi1sk"]["S"] for i in response["Items"]) if sk != after)
        candidates.sort()
        return [(sk, sk.rsplit("#", 1)[1]) for sk in candidates[:limit]], len(candidates) > limit

    def activity(self, org_id: str, contact_id: str, *, after: str | None = None, limit: int = 50) -> Page:
        pk = keys.contact_pk(org_id, contact_id)
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :a)",
            "ExpressionAttributeValues": serialize({":pk": pk, ":a": keys.ACTIVITY_PREFIX}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = serialize({"pk": pk, "sk": after})
        response = self._client.query(**kwargs)
        entries = [deserialize(i) for i in response["Items"]]
        items = [Activity(e["type"], e["at"], e.get("data") or {}, e["sk"]) for e in entries]
        last = response.get("LastEvaluatedKey")
        return Page(items, entries[-1]["sk"] if last and entries else None)

    # -- writes -------------------------------------------------------------------------------------

    def save(
        self,
        new: Contact,
        old: Contact | None,
        *,
        activity: Iterable[Activity] = (),
        absorbed: Contact | None = None,
        consent: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Write `new` (replacing `old`, or creating it) in one transaction.

        The transaction claims new identities, releases dropped ones, rewrites facet and search items,
        adjusts counters and appends activity. `absorbed` is a contact being merged into `new`: it is
        deleted in the same transaction and its identities are handed over rather than released.
        `consent` holds consent record items (audience.compliance.status.status_consent), appended with
        `attribute_not_exists` so that a record is never rewritten.
        Raises IdentityTakenError when an identity belongs to another contact and ConcurrentUpdateError
        when either contact changed since it was read.
        """
        ops, identity_ops, deltas = self.write_ops(new, old, activity=activity, absorbed=absorbed, consent=consent)
        if counter_op := self._counter_op(new.org_id, new.id, deltas):
            ops.append(counter_op)
        self.transact(ops, identity_ops)

    def write_ops(
        self,
        new: Contact,
        old: Contact | None,
        *,
        activity: Iterable[Activity] = (),
        absorbed: Contact | None = None,
        consent: Iterable[dict[str, Any]] = (),
    ) -> tuple[list[dict[str, Any]], list[tuple[int, Identity]], dict[str, int]]:
        """The transaction items of `save` without the counter update: (items, the index of each identity
        claim, the counter deltas). The contact's Put is the first item. Imports add their own items (and
        take the deltas into their ledger) before calling `transact`."""
        ops: list[dict[str, Any]] = []
        owners = {new.id} | ({absorbed.id} if absorbed else set())
        contact_item = contact_to_item(new)
        contact_cond: dict[str, Any]
        if old is None:
            contact_cond = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            contact_cond = {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": serialize({":v": old.version}),
            }
        ops.append({"Put": {"TableName": self._table_name, "Item": serialize(contact_item), **contact_cond}})

        # Identities: claim what is new (conditionally), release what was dropped.
        before = set(old.identities() if old else []) | set(absorbed.identities() if absorbed else [])
        after = set(new.identities())
        identity_ops: list[tuple[int, Identity]] = []
        for identity in new.identities():
            if old is not None and identity in set(old.identities()):
                continue
            identity_ops.append((len(ops), identity))
            ops.append(self.claim_identity(new.org_id, identity, new.id, owners))
        for identity in before - after:
            ops.append(self._release_identity(new.org_id, identity, owners))

        # Facets and search items: the contact's own partition.
        old_derived = derived_items(old) if old else {}
        new_derived = derived_items(new)
        for key, item in new_derived.items():
            if old_derived.get(key) != item:
                ops.append({"Put": {"TableName": self._table_name, "Item": serialize(item)}})
        for key in old_derived.keys() - new_derived.keys():
            ops.append({"Delete": {"TableName": self._table_name, "Key": serialize({"pk": key[0], "sk": key[1]})}})

        if absorbed is not None:
            ops.extend(self._delete_contact_ops(absorbed, keep_identities=True))
            # Tells the stream consumer this deletion is a merge: the absorbed contact's messages are not erased.
            marker = merged_marker(absorbed.org_id, absorbed.id, new.id, int(time.time()))
            ops.append({"Put": {"TableName": self._table_name, "Item": serialize(marker)}})

        deltas = _subtract(counter_values(new), counter_values(old))
        if absorbed is not None:
            deltas = _subtract(deltas, counter_values(absorbed))
        for entry in activity:
            ops.append({"Put": {"TableName": self._table_name, "Item": serialize(self.activity_item(new, entry))}})
        for item in consent:
            ops.append(
                {
                    "Put": {
                        "TableName": self._table_name,
                        "Item": serialize(item),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        return ops, identity_ops, deltas

    def delete(self, contact: Contact) -> None:
        """Delete the contact with its identities, facets, search items and counts, in one transaction.

        Activity is left to the stream consumer, which purges the partition once the contact is gone.
        """
        ops = self._delete_contact_ops(contact, keep_identities=False)
        deltas = _subtract({}, counter_values(contact))
        if counter_op := self._counter_op(contact.org_id, contact.id, deltas):
            ops.append(counter_op)
        self.transact(ops, [])

    def purge_partition(self, pk: str) -> int:
        """Delete every item left in a contact's partition; returns how many were deleted."""
        return purge_partition(self._client, self._table_name, pk)

    # -- helpers ------------------------------------------------------------------------------------

    def claim_identity(self, org_id: str, identity: Identity, contact_id: str, owners: set[str]) -> dict[str, Any]:
        values = {f":o{i}": owner for i, owner in enumerate(sorted(owners))}
        condition = "attribute_not_exists(pk) OR contact_id IN (" + ", ".join(values) + ")"
        return {
            "Put": {
                "TableName": self._table_name,
                "Item": serialize(
                    {
                        "pk": keys.identity_pk(org_id, identity.type, identity.value),
                        "sk": keys.IDENTITY_SK,
                        "contact_id": contact_id,
                        "identity_type": identity.type,
                    }
                ),
                "ConditionExpression": condition,
                "ExpressionAttributeValues": serialize(values),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _release_identity(self, org_id: str, identity: Identity, owners: set[str]) -> dict[str, Any]:
        values = {f":o{i}": owner for i, owner in enumerate(sorted(owners))}
        return {
            "Delete": {
                "TableName": self._table_name,
                "Key": serialize(
                    {"pk": keys.identity_pk(org_id, identity.type, identity.value), "sk": keys.IDENTITY_SK}
                ),
                "ConditionExpression": "attribute_not_exists(pk) OR contact_id IN (" + ", ".join(values) + ")",
                "ExpressionAttributeValues": serialize(values),
            }
        }

    def _delete_contact_ops(self, contact: Contact, *, keep_identities: bool) -> list[dict[str, Any]]:
        pk = keys.contact_pk(contact.org_id, contact.id)
        ops: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": pk, "sk": keys.CONTACT_SK}),
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": serialize({":v": contact.version}),
                }
            }
        ]
        for key in derived_items(contact):
            ops.append({"Delete": {"TableName": self._table_name, "Key": serialize({"pk": key[0], "sk": key[1]})}})
        if not keep_identities:
            ops.extend(self._release_identity(contact.org_id, i, {contact.id}) for i in contact.identities())
        return ops

    def _counter_op(self, org_id: str, contact_id: str, deltas: dict[str, int]) -> dict[str, Any] | None:
        changes = {name: delta for name, delta in deltas.items() if delta}
        if not changes:
            return None
        names = {f"#c{i}": name for i, name in enumerate(changes)}
        values = {f":c{i}": delta for i, delta in enumerate(changes.values())}
        return {
            "Update": {
                "TableName": self._table_name,
                "Key": serialize({"pk": keys.counters_pk(org_id, keys.shard_of(contact_id)), "sk": keys.COUNTERS_SK}),
                "UpdateExpression": "ADD " + ", ".join(f"{n} {v}" for n, v in zip(names, values, strict=True)),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": serialize(values),
            }
        }

    def record_signal(self, org_id: str, contact_id: str, signal: quality.Signal) -> bool:
        """Apply a reachability / engagement fact to the contact: one read and one conditional write of the
        contact item (its version moves, so a concurrent full write of the contact retries rather than
        dropping the fact). False when the contact is gone."""
        key = serialize({"pk": keys.contact_pk(org_id, contact_id), "sk": keys.CONTACT_SK})
        now = clock.now()
        latest = clock.iso(now + _FUTURE_TOLERANCE)
        if signal.at > latest:  # a payload's own time ahead of the clock: it would outrank every later fact
            signal = dataclasses.replace(signal, at=latest)
        for _ in range(_SIGNAL_ATTEMPTS):
            response = self._client.get_item(
                TableName=self._table_name,
                Key=key,
                ProjectionExpression="version, reach, engagement",
                ConsistentRead=True,
            )
            if "Item" not in response:
                return False
            item = deserialize(response["Item"])
            reach, engagement = quality.apply(item.get("reach"), item.get("engagement"), signal, now.date())
            if reach == (item.get("reach") or {}) and engagement == (item.get("engagement") or {}):
                return True  # a fact applied before (a retried record): nothing to write
            try:
                self._client.update_item(
                    TableName=self._table_name,
                    Key=key,
                    UpdateExpression="SET reach = :reach, engagement = :engagement, version = :next",
                    ConditionExpression="version = :version",
                    ExpressionAttributeValues=serialize(
                        {
                            ":reach": reach,
                            ":engagement": engagement,
                            ":version": item["version"],
                            ":next": item["version"] + 1,
                        }
                    ),
                )
                return True
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise ConcurrentUpdateError("the contact keeps changing while a fact about it is recorded; retry")

    def activity_item(self, contact: Contact, entry: Activity) -> dict[str, Any]:
        return {
            "pk": keys.contact_pk(contact.org_id, contact.id),
            "sk": f"{keys.ACTIVITY_PREFIX}{entry.at}#{entry.id or ids.ulid()}",
            "type": entry.type,
            "at": entry.at,
            "data": entry.data or None,
        }

    def transact(self, ops: list[dict[str, Any]], identity_ops: list[tuple[int, Identity]]) -> None:
        """Run a transaction of contact items, mapping its failures to IdentityTakenError (a claim in
        `identity_ops` failed), ConcurrentUpdateError and ValidationError."""
        if len(ops) > MAX_TRANSACTION_ITEMS:
            raise ValidationError(
                "the contact has too many identities, tags and channels to write at once "
                f"({len(ops)} items; at most {MAX_TRANSACTION_ITEMS})"
            )
        try:
            self._client.transact_write_items(TransactItems=ops)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "ValidationException":  # for example an item over DynamoDB's 400 KB
                raise ValidationError(f"the contact cannot be stored: {error.response['Error']['Message']}") from None
            if code != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons") or []
            for index, identity in identity_ops:
                if index < len(reasons) and reasons[index].get("Code") == "ConditionalCheckFailed":
                    owner = reasons[index].get("Item", {}).get("contact_id", {}).get("S")
                    raise IdentityTakenError(identity, owner) from None
            codes = {reason.get("Code") for reason in reasons}
            if codes & {"ConditionalCheckFailed", "TransactionConflict"}:
                raise ConcurrentUpdateError("the contact changed while it was being written; retry") from None
            invalid = next((r for r in reasons if r.get("Code") == "ValidationError"), None)
            if invalid is not None:
                raise ValidationError(
                    f"the contact cannot be stored: {invalid.get('Message', 'invalid item')}"
                ) from None
            raise


def _subtract(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    result = dict(a)
    for name, value in b.items():
        result[name] = result.get(name, 0) - value
    return result
