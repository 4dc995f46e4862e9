"""DynamoDB access for segments, segment memberships and contact events (the contacts table).

Key design (keys `pk`/`sk`, KEYS_ONLY GSI `gsi1`). `{s}` is the contact's shard (contacts/keys.py) and
`{day}` a UTC date `YYYY-MM-DD`.

| item         | pk                    | sk                               | gsi1pk                        | gsi1sk   |
|--------------|-----------------------|----------------------------------|-------------------------------|----------|
| segment      | `O#{org}#SEGMENTS`    | `S#{segment}`                    |                               |          |
| membership   | `O#{org}#C#{contact}` | `M#{segment}`                    | `O#{org}#F#segment#{seg}#{s}` | `{c}#{id}` |
| event count  | `O#{org}#C#{contact}` | `E#{name}#{day}`, `E#{name}#ALL` |                               |          |
| event        | `O#{org}#C#{contact}` | `V#{name}#{at}#{ulid}`           |                               |          |
| event dedupe | `O#{org}#C#{contact}` | `D#{event id}` (TTL 30 days)     |                               |          |

`{c}` is the contact's `created_at`, as in its facet items.
Segment counts are attributes `g#{segment}` of the contact counter items (`O#{org}#N#{s}`, `#COUNTERS`).

- An org's segments: one query on `O#{org}#SEGMENTS` (at most 500 items).
- Members of a segment, page by page: the sixteen membership partitions on `gsi1`, exactly like a
  contact facet, so `ContactsRepository.list_entries(facet=("segment", id))` lists them newest first.
- A contact's segments: `begins_with(sk, "M#")` in its partition. Memberships live with the contact, so
  deleting it purges them (the contacts stream consumer also takes them off the counters).
- Event counts per name and day, plus an all-time count per name (`ALL`); the name `*` counts every
  event. "More than 2 times within the last 7 days" reads `E#{name}#{day}` from 7 days ago up to
  `E#{name}#ALL` (which sorts after every day): at most 9 items, whatever the history length. Event
  items (`V#`) keep each event's properties, for clauses with property conditions.
- `E#*#ALL`'s `n` is the contact's event sequence: every recorded event increments it, so a membership
  written "as of n events" can be refused when another event arrived since.

Every membership write is one transaction: the membership item (conditional, so replays change nothing),
the segment counter, and checks that the segment still has the version the decision used and that the
contact (its version and event sequence) is still the one evaluated. A stale decision writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from botocore.exceptions import ClientError

from audience import aws, ids
from audience.contacts import keys
from audience.contacts.models import Contact
from audience.contacts.repository import add_op, contact_from_item, deserialize, query_all, serialize
from audience.errors import ConflictError, NotFoundError, ValidationError
from audience.segments.history import ALL, ANY, Bucket, Event
from audience.segments.models import (
    BY_CLIENT,
    DELETING,
    STATIC,
    MembershipChange,
    RecordedEvent,
    Segment,
)

SEGMENT_PREFIX = "S#"
MEMBER_PREFIX = keys.MEMBER_PREFIX
COUNT_PREFIX = "E#"
EVENT_PREFIX = "V#"
DEDUPE_PREFIX = "D#"
DEDUPE_SECONDS = 30 * 86400
EVENT_SEQUENCE_SK = f"{COUNT_PREFIX}{ANY}#{ALL}"


def segments_pk(org_id: str) -> str:
    return f"O#{org_id}#SEGMENTS"


def counter_name(segment_id: str) -> str:
    return keys.segment_counter(segment_id)


# -- results ----------------------------------------------------------------------------------------

WRITTEN, UNCHANGED, STALE_CONTACT, STALE_SEGMENT = "written", "unchanged", "stale_contact", "stale_segment"


@dataclass(frozen=True, slots=True)
class Guard:
    """What a membership decision was based on; the write is refused if any of it changed.

    `contact_version` None only requires the contact to exist; `events_seen` None skips the event check;
    `segment_version` None only requires the segment to exist (and not be deleting, for an add).
    """

    contact_version: int | None = None
    events_seen: int | None = None
    segment_version: int | None = None


@dataclass(slots=True)
class ContactState:
    """Everything segment rules read about one contact, as of one moment."""

    contact: Contact
    events_seen: int = 0
    counts: dict[str, dict[str, Bucket]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    memberships: dict[str, str] = field(default_factory=dict)  # segment id -> source


# -- item mapping -----------------------------------------------------------------------------------


def segment_to_item(segment: Segment) -> dict[str, Any]:
    return {
        "pk": segments_pk(segment.org_id),
        "sk": f"{SEGMENT_PREFIX}{segment.id}",
        "id": segment.id,
        "org_id": segment.org_id,
        "name": segment.name,
        "type": segment.type,
        "description": segment.description,
        "rules": segment.rules,
        "timezone": segment.timezone,
        "predefined": segment.predefined,
        "state": segment.state,
        "version": segment.version,
        "locks": segment.locks,
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
    }


def segment_from_item(item: dict[str, Any]) -> Segment:
    return Segment(
        id=item["id"],
        org_id=item["org_id"],
        name=item["name"],
        type=item["type"],
        description=item.get("description"),
        rules=item.get("rules"),
        timezone=item.get("timezone", "UTC"),
        predefined=item.get("predefined"),
        state=item.get("state", "ready"),
        version=int(item.get("version", 1)),
        locks=dict(item.get("locks") or {}),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
    )


def event_day(at: str) -> str:
    return at[:10]


def _event_from_item(item: dict[str, Any]) -> Event:
    at = datetime.fromisoformat(item["at"].replace("Z", "+00:00"))
    return Event(item["name"], at, dict(item.get("properties") or {}))


def state_from_items(contact_item: dict[str, Any], items: Iterable[dict[str, Any]]) -> ContactState:
    """A contact's state from its own items (as a query or a scan of its partition returns them)."""
    state = ContactState(contact_from_item(contact_item))
    for item in items:
        sk = item["sk"]
        if sk.startswith(MEMBER_PREFIX):
            state.memberships[sk[len(MEMBER_PREFIX) :]] = item.get("source", BY_CLIENT)
        elif sk.startswith(COUNT_PREFIX):
            name, key = sk[len(COUNT_PREFIX) :].rsplit("#", 1)
            state.counts.setdefault(name, {})[key] = Bucket(int(item.get("n", 0)))
            if sk == EVENT_SEQUENCE_SK:
                state.events_seen = int(item.get("n", 0))
        elif sk.startswith(EVENT_PREFIX):
            state.events.append(_event_from_item(item))
    return state


# -- repository -------------------------------------------------------------------------------------


class SegmentsRepository:
    """Segments, memberships and events of contacts, in the contacts table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- segments -----------------------------------------------------------------------------------

    def list_segments(self, org_id: str) -> list[Segment]:
        """Every segment of the org, including those being deleted, in id order."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
            ExpressionAttributeValues=serialize({":pk": segments_pk(org_id), ":s": SEGMENT_PREFIX}),
            ConsistentRead=True,
        )
        return [segment_from_item(i) for i in items]

    def get_segment(self, org_id: str, segment_id: str) -> Segment:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment_id}"}),
            ConsistentRead=True,
        )
        if "Item" not in response:
            raise NotFoundError(f"segment {segment_id} not found")
        segment = segment_from_item(deserialize(response["Item"]))
        if segment.state == DELETING:
            raise NotFoundError(f"segment {segment_id} not found")
        return segment

    def existing_segments(self, org_id: str, segment_ids: Iterable[str]) -> set[str]:
        """Which of the segments (at most 100) exist and are not being deleted: one batch read."""
        wanted = list(dict.fromkeys(segment_ids))[:100]
        found: set[str] = set()
        if not wanted:
            return found
        keys = [serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{i}"}) for i in wanted]
        request: dict[str, Any] = {self._table_name: {"Keys": keys, "ConsistentRead": True}}
        for _ in range(5):
            answer = self._client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self._table_name, []):
                segment = segment_from_item(deserialize(item))
                if segment.state != DELETING:
                    found.add(segment.id)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        return found

    def create_segment(self, segment: Segment) -> bool:
        """Create the segment; False when one with its id already exists (predefined segments)."""
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item=serialize(segment_to_item(segment)),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def replace_segment(self, segment: Segment, *, expected_version: int, expected_updated_at: str) -> None:
        """Write `segment` over the stored one if nobody changed it since it was read (else 409)."""
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item=serialize(segment_to_item(segment)),
                ConditionExpression="version = :v AND updated_at = :u AND #st <> :deleting",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues=serialize(
                    {":v": expected_version, ":u": expected_updated_at, ":deleting": DELETING}
                ),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"segment {segment.id} changed while it was being updated; retry") from None
            raise

    def set_state(self, org_id: str, segment_id: str, state: str, *, version: int | None = None) -> bool:
        """Move the segment to `state` (only if it still has `version`, when given); False if it did not."""
        condition = "attribute_exists(pk)"
        values: dict[str, Any] = {":state": state, ":now": _now()}
        if version is not None:
            condition += " AND version = :v"
            values[":v"] = version
        if state != DELETING:
            condition += " AND #st <> :deleting"
            values[":deleting"] = DELETING
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment_id}"}),
                UpdateExpression="SET #st = :state, updated_at = :now",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_deleting(self, org_id: str, segment_id: str) -> None:
        """Stop the segment taking members, unless a broadcast holds it (409 naming the broadcasts)."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment_id}"}),
                UpdateExpression="SET #st = :deleting, updated_at = :now",
                ConditionExpression="attribute_exists(pk) AND #st <> :deleting AND (attribute_not_exists(#locks) "
                "OR size(#locks) = :zero)",
                ExpressionAttributeNames={"#st": "state", "#locks": "locks"},
                ExpressionAttributeValues=serialize({":deleting": DELETING, ":now": _now(), ":zero": 0}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")
            if not old or deserialize(old).get("state") == DELETING:
                raise NotFoundError(f"segment {segment_id} not found") from None
            raise _locked(segment_from_item(deserialize(old)), "deleted") from None

    def delete_segment_item(self, org_id: str, segment_id: str) -> None:
        self._client.delete_item(
            TableName=self._table_name,
            Key=serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment_id}"}),
        )

    def lock(self, org_id: str, segment_id: str, broadcast_id: str, name: str, status: str) -> None:
        """Record that a scheduled or sending broadcast targets the segment (idempotent)."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment_id}"}),
                UpdateExpression="SET #locks.#b = :info",
                ConditionExpression="attribute_exists(pk) AND #st <> :deleting",
                ExpressionAttributeNames={"#locks": "locks", "#b": broadcast_id, "#st": "state"},
                ExpressionAttributeValues=serialize({":info": {"name": name, "status": status}, ":deleting": DELETING}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise NotFoundError(f"segment {segment_id} not found") from None
            raise

    def unlock(self, org_id: str, segment_id: str, broadcast_id: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment_id}"}),
                UpdateExpression="REMOVE #locks.#b",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#locks": "locks", "#b": broadcast_id},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # -- memberships --------------------------------------------------------------------------------

    def memberships(self, org_id: str, contact_id: str) -> dict[str, str]:
        """The segments a contact belongs to: segment id -> source (`client` or `rules`)."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :m)",
            ExpressionAttributeValues=serialize({":pk": keys.contact_pk(org_id, contact_id), ":m": MEMBER_PREFIX}),
            ConsistentRead=True,
        )
        return {i["sk"][len(MEMBER_PREFIX) :]: i.get("source", BY_CLIENT) for i in items}

    def write_membership(self, org_id: str, change: MembershipChange, guard: Guard, *, static: bool = False) -> str:
        """Add or remove one membership in one transaction; returns WRITTEN, UNCHANGED (already so),
        STALE_CONTACT (the contact changed or is gone) or STALE_SEGMENT (the segment changed or is gone)."""
        pk = keys.contact_pk(org_id, change.contact_id)
        sk = f"{MEMBER_PREFIX}{change.segment_id}"
        shard = keys.shard_of(change.contact_id)
        ops: list[dict[str, Any]] = []
        if change.member:
            item = {
                "pk": pk,
                "sk": sk,
                "gsi1pk": keys.facet_partition(org_id, "segment", change.segment_id, shard),
                "gsi1sk": f"{change.contact_created_at}#{change.contact_id}",
                "source": change.source,
                "added_at": _now(),
            }
            ops.append(
                {
                    "Put": {
                        "TableName": self._table_name,
                        "Item": serialize(item),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        else:
            ops.append(
                {
                    "Delete": {
                        "TableName": self._table_name,
                        "Key": serialize({"pk": pk, "sk": sk}),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
            )
        ops.append(self._counter_update(org_id, shard, {counter_name(change.segment_id): 1 if change.member else -1}))

        segment_condition = ["attribute_exists(pk)"]
        segment_values: dict[str, Any] = {}
        names: dict[str, str] = {}
        if change.member:
            segment_condition.append("#st <> :deleting")
            segment_values[":deleting"] = DELETING
            names["#st"] = "state"
        if static:
            segment_condition.append("#ty = :static")
            segment_values[":static"] = STATIC
            names["#ty"] = "type"
        if guard.segment_version is not None:
            segment_condition.append("version = :v")
            segment_values[":v"] = guard.segment_version
        ops.append(
            {
                "ConditionCheck": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{change.segment_id}"}),
                    "ConditionExpression": " AND ".join(segment_condition),
                    **({"ExpressionAttributeNames": names} if names else {}),
                    **({"ExpressionAttributeValues": serialize(segment_values)} if segment_values else {}),
                }
            }
        )
        if change.member or guard.contact_version is not None:
            check: dict[str, Any] = {
                "TableName": self._table_name,
                "Key": serialize({"pk": pk, "sk": keys.CONTACT_SK}),
                "ConditionExpression": "attribute_exists(pk)",
            }
            if guard.contact_version is not None:
                check["ConditionExpression"] = "version = :cv"
                check["ExpressionAttributeValues"] = serialize({":cv": guard.contact_version})
            ops.append({"ConditionCheck": check})
        if guard.events_seen is not None:
            ops.append(
                {
                    "ConditionCheck": {
                        "TableName": self._table_name,
                        "Key": serialize({"pk": pk, "sk": EVENT_SEQUENCE_SK}),
                        "ConditionExpression": "attribute_not_exists(pk) OR n = :n"
                        if guard.events_seen == 0
                        else "n = :n",
                        "ExpressionAttributeValues": serialize({":n": guard.events_seen}),
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=ops)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
            failed = {i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"}
            if 2 in failed:
                return STALE_SEGMENT
            if failed & {3, 4}:
                return STALE_CONTACT
            if 0 in failed:
                return UNCHANGED
            if "TransactionConflict" in reasons:
                return STALE_CONTACT  # someone wrote the same items at the same moment: decide again
            raise
        return WRITTEN

    def drop_counter(self, org_id: str, segment_id: str) -> None:
        """Remove a deleted segment's counter from the org's counter items."""
        for shard in range(keys.SHARDS):
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": keys.counters_pk(org_id, shard), "sk": keys.COUNTERS_SK}),
                UpdateExpression="REMOVE #g",
                ExpressionAttributeNames={"#g": counter_name(segment_id)},
            )

    # -- events -------------------------------------------------------------------------------------

    def record_event(self, org_id: str, event: RecordedEvent) -> bool:
        """Store one event of an existing contact with its counts and a timeline entry, in one
        transaction. False when an event with the same `event_id` was already recorded."""
        pk = keys.contact_pk(org_id, event.contact_id)
        day = event_day(event.at)
        ops: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": pk, "sk": keys.CONTACT_SK}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            }
        ]
        if event.event_id:
            expires = int(datetime.now(UTC).timestamp()) + DEDUPE_SECONDS
            ops.append(
                {
                    "Put": {
                        "TableName": self._table_name,
                        "Item": serialize({"pk": pk, "sk": f"{DEDUPE_PREFIX}{event.event_id}", "expires_at": expires}),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        for name in (event.name, ANY):
            for key in (day, ALL):
                ops.append(
                    {
                        "Update": {
                            "TableName": self._table_name,
                            "Key": serialize({"pk": pk, "sk": f"{COUNT_PREFIX}{name}#{key}"}),
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": serialize({":one": 1}),
                        }
                    }
                )
        ulid = ids.ulid()
        ops.append(
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(
                        {
                            "pk": pk,
                            "sk": f"{EVENT_PREFIX}{event.name}#{event.at}#{ulid}",
                            "name": event.name,
                            "at": event.at,
                            "properties": event.properties or None,
                            "event_id": event.event_id,
                        }
                    ),
                }
            }
        )
        ops.append(
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(
                        {
                            "pk": pk,
                            "sk": f"{keys.ACTIVITY_PREFIX}{event.at}#{ulid}",
                            "type": "event",
                            "at": event.at,
                            "data": {"name": event.name, "properties": event.properties or None, "id": event.event_id},
                        }
                    ),
                }
            }
        )
        try:
            self._client.transact_write_items(TransactItems=ops)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                if error.response["Error"]["Code"] == "ValidationException":
                    raise ValidationError(f"the event cannot be stored: {error.response['Error']['Message']}") from None
                raise
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise NotFoundError(f"contact {event.contact_id} not found") from None
            if event.event_id and len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return False
            raise
        return True

    # -- evaluation state ---------------------------------------------------------------------------

    def load_state(
        self,
        org_id: str,
        contact_id: str,
        *,
        count_ranges: dict[str, date | None],
        detailed: Iterable[str] = (),
    ) -> ContactState | None:
        """The contact with what its rules need: event counts per name from `count_ranges[name]` (None:
        the all-time count only), every event of the `detailed` names, the event sequence and its
        memberships; None when the contact does not exist. All reads are strongly consistent."""
        pk = keys.contact_pk(org_id, contact_id)
        response = self._client.get_item(
            TableName=self._table_name, Key=serialize({"pk": pk, "sk": keys.CONTACT_SK}), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        items: list[dict[str, Any]] = []
        ranges = {ANY: None, **count_ranges}
        for name, first in ranges.items():
            low = f"{COUNT_PREFIX}{name}#{first.isoformat() if first else ALL}"
            items.extend(
                self._query_all(
                    KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                    ExpressionAttributeValues=serialize({":pk": pk, ":lo": low, ":hi": f"{COUNT_PREFIX}{name}#{ALL}"}),
                    ConsistentRead=True,
                )
            )
        for name in dict.fromkeys(detailed):
            items.extend(
                self._query_all(
                    KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
                    ExpressionAttributeValues=serialize({":pk": pk, ":v": f"{EVENT_PREFIX}{name}#"}),
                    ConsistentRead=True,
                )
            )
        items.extend(
            self._query_all(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :m)",
                ExpressionAttributeValues=serialize({":pk": pk, ":m": MEMBER_PREFIX}),
                ConsistentRead=True,
            )
        )
        return state_from_items(deserialize(response["Item"]), items)

    def has_memberships(self, org_id: str, segment_id: str, contact_ids: Iterable[str]) -> set[str]:
        """Which of `contact_ids` are members of the segment (strongly consistent)."""
        wanted = list(dict.fromkeys(contact_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 100):
            request = {
                self._table_name: {
                    "Keys": [
                        serialize({"pk": keys.contact_pk(org_id, cid), "sk": f"{MEMBER_PREFIX}{segment_id}"})
                        for cid in wanted[start : start + 100]
                    ],
                    "ProjectionExpression": "pk",
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                response = self._client.batch_get_item(RequestItems=request)
                found.update(
                    keys.contact_id_from_pk(i["pk"]["S"]) for i in response["Responses"].get(self._table_name, [])
                )
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                raise ConflictError("the contacts table is throttling reads; retry shortly")
        return found

    def scan_partitions(
        self, part: int, parts: int, *, start: dict[str, Any] | None = None, page_size: int = 1000
    ) -> Iterator[tuple[list[tuple[dict[str, Any], list[dict[str, Any]]]], dict[str, Any] | None]]:
        """One pass over a parallel-scan segment of the table, yielding (contact partitions, resume key)
        per page. A partition is (its #CONTACT item, its other items). A contact whose items straddle a
        page boundary is held back until its last item is read, and the resume key points before it."""
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "Segment": part,
            "TotalSegments": parts,
            "Limit": page_size,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        pending: list[dict[str, Any]] = []
        resume: dict[str, Any] | None = start
        while True:
            page = self._client.scan(**kwargs)
            items = pending + [deserialize(i) for i in page["Items"]]
            last_key = page.get("LastEvaluatedKey")
            complete, pending = _split_partitions(items, more=last_key is not None)
            groups = [(c, rest) for c, rest in complete if c is not None]
            if complete:
                # Resume just after the last complete partition's last item.
                tail = complete[-1]
                last_item = tail[1][-1] if tail[1] else tail[0]
                assert last_item is not None
                resume = {"pk": {"S": last_item["pk"]}, "sk": {"S": last_item["sk"]}}
            yield groups, (resume if last_key is not None or pending else None)
            if last_key is None:
                return
            kwargs["ExclusiveStartKey"] = last_key

    # -- helpers ------------------------------------------------------------------------------------

    def _counter_update(self, org_id: str, shard: int, deltas: dict[str, int]) -> dict[str, Any]:
        return add_op(self._table_name, {"pk": keys.counters_pk(org_id, shard), "sk": keys.COUNTERS_SK}, deltas)

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        return query_all(self._client, self._table_name, **kwargs)


_EVALUATED = (keys.CONTACT_SK, MEMBER_PREFIX, COUNT_PREFIX, EVENT_PREFIX)


def _split_partitions(
    items: list[dict[str, Any]], *, more: bool
) -> tuple[list[tuple[dict[str, Any] | None, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Group scanned items by contact partition (other partitions are skipped); when more pages follow,
    the last partition may continue on the next page, so its items are returned as pending."""
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for item in items:
        if not item["sk"].startswith(_EVALUATED) and groups and groups[-1][0] == item["pk"] and groups[-1][1]:
            continue  # activity, facets, search terms: not read by rules (the first item is kept as a marker)
        if groups and groups[-1][0] == item["pk"]:
            groups[-1][1].append(item)
        else:
            groups.append((item["pk"], [item]))
    pending: list[dict[str, Any]] = []
    if more and groups:
        pending = groups.pop()[1]
    complete: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    for pk, group in groups:
        if "#C#" not in pk:
            complete.append((None, group))
            continue
        contact = next((i for i in group if i["sk"] == keys.CONTACT_SK), None)
        complete.append((contact, [i for i in group if i is not contact]))
    return complete, pending


def _locked(segment: Segment, action: str) -> ConflictError:
    names = ", ".join(
        f"{info.get('name', bid)} ({bid}, {info.get('status', '?')})" for bid, info in segment.locks.items()
    )
    return ConflictError(
        f"segment {segment.id} cannot be {action}: broadcasts use it: {names}",
        segment_id=segment.id,
        broadcasts=sorted(segment.locks),
    )


def locked_error(segment: Segment, action: str) -> ConflictError:
    return _locked(segment, action)


def _now() -> str:
    from audience import clock

    return clock.now_iso()
