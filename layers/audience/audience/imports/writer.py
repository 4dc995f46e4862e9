"""Chunk workers: classify each record of a chunk against the contacts table, then (unless it is a dry
run) write it.

A new contact is created in a transaction with up to 22 others: each contact's item
(`attribute_not_exists`), its identity claims (so that a webhook creating the same phone at the same
moment yields one contact) and, once for the group, the chunk ledger's counts and counter deltas and
the record of the rows created. Its facet, search, activity and consent items follow in full 25-item
BatchWriteItem requests. Identity uniqueness is paid for only where a row is new: a row matching an
existing contact is an update, one transaction each (as any update is).

Every write is safe to repeat. A new contact's id is derived from the run and the row, and the rows each
create transaction created are recorded with it, so a worker retried after a crash knows the contacts it
created and only rewrites their secondary items (from the contact as it now is); an updated contact
carries the run's id (`import_run`), so a retried update is recognised and skipped; counts and counter
deltas are added in the same transaction as the write they describe, to the chunk's ledger, which is
folded into the org's counters once.
"""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from audience import ids
from audience.compliance.keys import consent_item, lookup_keys
from audience.compliance.repository import DoNotContactRepository
from audience.compliance.status import ALL_CHANNELS
from audience.contacts import keys
from audience.contacts.models import Activity, Contact, Identity
from audience.contacts.repository import (
    ContactsRepository,
    IdentityTakenError,
    contact_from_item,
    contact_to_item,
    counter_values,
    derived_items,
    serialize,
)
from audience.contacts.service import ContactService
from audience.errors import ConcurrentUpdateError, ValidationError
from audience.imports import models
from audience.imports.models import Import, Run
from audience.imports.repository import COUNT_PREFIX, DELTA_PREFIX, ImportsRepository
from audience.segments.models import BY_CLIENT, DELETING, STATIC, Segment
from audience.segments.repository import SEGMENT_PREFIX, segments_pk

LOOKUP_GROUP = 100  # records classified together (BatchGetItem takes 100 keys)
CREATE_GROUP = 23  # contacts per create transaction: 4 items each at most, plus the ledger, the rows and a check
SAMPLES_PER_OUTCOME = 5
FLUSH_ITEMS = 25 * 20  # secondary items are written 500 at a time: 20 full BatchWriteItem requests
_ATTEMPTS = 4
# DNC entries that keep a row's phone or email from every sender on a channel the identity reaches.
_DNC_CHANNELS = {"phone": (None, "whatsapp", "sms"), "email": (None, "email")}

# Decisions beyond the outcomes: a contact this run created or updated before a retry.
_RESUMED, _DONE_BEFORE = "resumed", "done_before"


@dataclass(slots=True)
class ChunkResult:
    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[int, str, str, list[str]]] = field(default_factory=list)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)  # write requests by kind
    stopped: bool = False
    # Outcomes the writer counted in the chunk's ledger itself, with each write (the rest are set when
    # the chunk closes).
    ledgered: frozenset[str] = frozenset()
    # Secondary items of created contacts not written yet: written in full batches as they pile up and
    # when the chunk ends (a crash before that is repaired by the retry, which rewrites them).
    unwritten: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Decision:
    record: dict[str, Any]
    outcome: str
    contact: Contact | None = None  # the contact to create, or as updated
    current: Contact | None = None  # for updates: as read
    message: str | None = None
    dnc: bool = False


def derived_contact_id(run: Run, row: int) -> str:
    """The id a new contact of `row` gets in `run`: the same on every retry of the chunk (a ULID whose
    time is the run's start and whose random part is a digest of the run and the row)."""
    return f"ct_{_time_part(run.started_at)}{_digest_part(f'{run.id}:{row}')}"


_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789abcdefghjkmnpqrstvwxyz")


def _digest_part(key: str) -> str:
    """16 Crockford base32 characters of an 80-bit digest of `key` (the random part of a ULID)."""
    return base64.b32encode(hashlib.blake2b(key.encode(), digest_size=10).digest()).translate(_CROCKFORD).decode()


@functools.cache
def _time_part(started_at: str) -> str:
    return ids._b32(calendar.timegm(time.strptime(started_at[:19], "%Y-%m-%dT%H:%M:%S")) * 1000, 10)


class ContactChunkWriter:
    """Writes (or, in a dry run, only classifies) one chunk of a contacts import."""

    def __init__(
        self,
        contacts: ContactsRepository,
        service: ContactService,
        imports: ImportsRepository,
        dnc: DoNotContactRepository,
        *,
        segment_writer: Callable[[str, Segment, Contact], None],
        segment_loader: Callable[[str, str], Segment],
    ) -> None:
        self._contacts = contacts
        self._service = service
        self._imports = imports
        self._dnc = dnc
        self._assign = segment_writer
        self._load_segment = segment_loader

    def run(
        self,
        imp: Import,
        run: Run,
        number: int,
        records: list[dict[str, Any]],
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ChunkResult:
        assert imp.mapping is not None
        dry = run.kind == models.DRY_RUN
        result = ChunkResult(ledgered=frozenset() if dry else frozenset({models.CREATED, models.UPDATED}))
        fields, country = self._service.org_context(imp.org_id)
        segment = self._load_segment(imp.org_id, imp.mapping.segment_id) if imp.mapping.segment_id else None
        ledger = self._imports.ledger_key(imp.org_id, imp.id, run.id, number)
        created = set() if dry else self._imports.created_rows(imp.org_id, imp.id, run.id, number)
        for start in range(0, len(records), LOOKUP_GROUP):
            if should_stop():
                result.stopped = True
                break
            pending = records[start : start + LOOKUP_GROUP]
            for _ in range(_ATTEMPTS):
                if not pending:
                    break
                decisions = self._plan(imp, run, pending, created, fields=fields, country=country)
                pending = [] if dry else self._write(imp, run, number, decisions, ledger, segment, result)
                again = {id(r) for r in pending}
                for decision in decisions:
                    if id(decision.record) not in again:
                        self._count(decision, result)
            for record in pending:  # kept changing under us: report rather than loop forever
                self._count(
                    _Decision(record, models.CONFLICT, message="the contact kept changing during the import"), result
                )
        self._flush(result, everything=True)
        return result

    # -- classification -----------------------------------------------------------------------------

    def _plan(
        self,
        imp: Import,
        run: Run,
        records: list[dict[str, Any]],
        created: set[int],
        *,
        fields: dict[str, Any],
        country: str,
    ) -> list[_Decision]:
        """Decide what each record does. Rows in `created` were created by an earlier attempt at this
        chunk: their contact's secondary items are written again from the contact as it is now (it may
        have changed since), or nothing at all happens when it was deleted meanwhile."""
        assert imp.mapping is not None
        org_id = imp.org_id
        wanted = {id(r): _identities(r["d"]) for r in records}
        owners = self._contacts.owners(org_id, [i for found in wanted.values() for i in found])
        derived = {id(r): derived_contact_id(run, r["r"]) for r in records}
        resumed = {derived[id(r)] for r in records if r["r"] in created}
        existing_ids = (set(owners.values()) - set(derived.values())) | resumed
        items = self._contacts.get_items(org_id, existing_ids) if existing_ids else {}
        flagged = self._flagged(org_id, [i for found in wanted.values() for i in found])
        decisions: list[_Decision] = []
        for record in records:
            identities = wanted[id(record)]
            dnc = any(i in flagged for i in identities)
            own = list(dict.fromkeys(owners[i] for i in identities if i in owners))
            mine = derived[id(record)]
            if record["r"] in created:
                stored = items.get(mine)
                contact = contact_from_item(stored) if stored is not None else None
                decisions.append(_Decision(record, _RESUMED if contact else _DONE_BEFORE, contact, dnc=dnc))
            elif not own:
                decisions.append(_Decision(record, models.CREATED, self._new_contact(imp, run, record, mine), dnc=dnc))
            elif len(own) > 1 or mine in own:
                decisions.append(
                    _Decision(
                        record,
                        models.CONFLICT,
                        message="the phone and the email belong to different contacts: " + ", ".join(own),
                        dnc=dnc,
                    )
                )
            elif own[0] not in items:
                decisions.append(
                    _Decision(record, models.CONFLICT, message=f"contact {own[0]} is being deleted", dnc=dnc)
                )
            elif items[own[0]].get("import_run") == run.id:
                decisions.append(_Decision(record, _DONE_BEFORE, dnc=dnc))
            elif imp.mapping.existing == "skip":
                current = contact_from_item(items[own[0]])
                decisions.append(_Decision(record, models.SKIPPED, current, current, dnc=dnc))
            else:
                current = contact_from_item(items[own[0]])
                try:
                    updated = self._service.changed(
                        current, _changes(current, record["d"]), fields=fields, country=country
                    )
                except ValidationError as error:
                    decisions.append(_Decision(record, models.CONFLICT, current, current, error.message, dnc=dnc))
                    continue
                outcome = models.UNCHANGED if updated == current else models.UPDATED
                decisions.append(_Decision(record, outcome, updated, current, dnc=dnc))
        return decisions

    def _new_contact(self, imp: Import, run: Run, record: dict[str, Any], contact_id: str) -> Contact:
        data = record["d"]
        return Contact(
            id=contact_id,
            org_id=imp.org_id,
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            full_name=data.get("full_name"),
            email=data.get("email"),
            phone=data.get("phone"),
            country=data.get("country"),
            phone_type=data.get("phone_type"),
            custom_fields=dict(data.get("custom_fields") or {}),
            tags=list(data.get("tags") or []),
            version=1,
            created_at=run.started_at,
            updated_at=run.started_at,
        )

    def _flagged(self, org_id: str, identities: list[Identity]) -> set[Identity]:
        wanted: dict[tuple[str, str], Identity] = {}
        for identity in identities:
            for channel in _DNC_CHANNELS.get(identity.type, (None,)):
                for key in lookup_keys(org_id, identity.type, identity.value, channel, None):
                    wanted[key] = identity
        found = self._dnc.get_many(wanted) if wanted else {}
        return {wanted[key] for key in found}

    # -- writes -------------------------------------------------------------------------------------

    def _write(
        self,
        imp: Import,
        run: Run,
        number: int,
        decisions: list[_Decision],
        ledger: dict[str, Any],
        segment: Segment | None,
        result: ChunkResult,
    ) -> list[dict[str, Any]]:
        """Write the decisions; returns the records to classify again (something changed under them)."""
        again: list[dict[str, Any]] = []
        fresh = [d for d in decisions if d.outcome == models.CREATED]
        for start in range(0, len(fresh), CREATE_GROUP):
            again.extend(self._create(imp, run, number, fresh[start : start + CREATE_GROUP], ledger, segment, result))
        resumed = [d for d in decisions if d.outcome == _RESUMED]
        if resumed:
            self._put_secondary(imp, run, [d.contact for d in resumed if d.contact], segment, result)
        for decision in decisions:
            if decision.outcome in (models.UPDATED, models.UNCHANGED) and segment is not None and decision.contact:
                self._assign(imp.org_id, segment, decision.contact)
                result.requests["membership_transactions"] += 1
            if decision.outcome == models.UPDATED and not self._update(imp, run, decision, ledger, result):
                again.append(decision.record)
        return again

    def _create(
        self,
        imp: Import,
        run: Run,
        number: int,
        group: list[_Decision],
        ledger: dict[str, Any],
        segment: Segment | None,
        result: ChunkResult,
    ) -> list[dict[str, Any]]:
        table = self._imports.table_name
        for _ in range(_ATTEMPTS):
            ops: list[dict[str, Any]] = []
            claims: dict[int, _Decision] = {}
            totals: Counter[str] = Counter({f"{COUNT_PREFIX}{models.CREATED}": len(group)})
            for decision in group:
                contact = decision.contact
                assert contact is not None
                claims[len(ops)] = decision
                ops.append(
                    {
                        "Put": {
                            "TableName": table,
                            "Item": serialize(contact_to_item(contact)),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
                for identity in contact.identities():
                    claims[len(ops)] = decision
                    ops.append(self._contacts.claim_identity(contact.org_id, identity, contact.id, {contact.id}))
                if segment is not None:
                    ops.append({"Put": {"TableName": table, "Item": serialize(_membership(contact, segment))}})
                    totals[f"{DELTA_PREFIX}{keys.segment_counter(segment.id)}"] += 1
                for name, value in counter_values(contact).items():
                    totals[f"{DELTA_PREFIX}{name}"] += value
            ops.append(self._imports.ledger_add(ledger, dict(totals)))
            rows = [d.record["r"] for d in group]
            ops.append(
                self._imports.created_rows_op(imp.org_id, imp.id, run.id, number, rows, expires_at=imp.expires_at)
            )
            if segment is not None:
                ops.append(_segment_check(table, imp.org_id, segment))
            try:
                self._contacts._client.transact_write_items(TransactItems=ops)
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
                if segment is not None and reasons[-1:] == ["ConditionalCheckFailed"]:
                    raise ValidationError(
                        f"segment {segment.id} was deleted or changed while the import ran; the import stopped"
                    ) from None
                lost = {
                    id(claims[i]) for i, code in enumerate(reasons) if code == "ConditionalCheckFailed" and i in claims
                }
                if lost:  # another writer took a phone or an email first: those rows are classified again
                    again = [d.record for d in group if id(d) in lost]
                    group = [d for d in group if id(d) not in lost]
                    if not group:
                        return again
                    return again + self._create(imp, run, number, group, ledger, segment, result)
                time.sleep(0.05)  # a conflicting transaction on the same items: try again
                continue
            result.requests["create_transactions"] += 1
            self._put_secondary(imp, run, [d.contact for d in group if d.contact], segment=None, result=result)
            return []
        return [d.record for d in group]

    def _put_secondary(
        self, imp: Import, run: Run, contacts: list[Contact], segment: Segment | None, result: ChunkResult
    ) -> None:
        """The items a created contact has beside its record and identities (safe to write again)."""
        items: list[dict[str, Any]] = []
        for contact in contacts:
            items.extend(derived_items(contact).values())
            entry_id = contact.id.split("_", 1)[1]
            items.append(
                self._contacts.activity_item(
                    contact, Activity("created", contact.created_at, {"import_id": imp.id}, id=entry_id)
                )
            )
            if run.consent:
                items.append(_consent(contact, run, imp))
            if segment is not None:
                items.append(_membership(contact, segment))
        result.unwritten.extend(items)
        self._flush(result, everything=False)

    def _flush(self, result: ChunkResult, *, everything: bool) -> None:
        """Write the pending secondary items in full 25-item batches (all of them with `everything`)."""
        count = len(result.unwritten) if everything else len(result.unwritten) - len(result.unwritten) % FLUSH_ITEMS
        if count >= (1 if everything else FLUSH_ITEMS):
            batch, result.unwritten[:count] = result.unwritten[:count], []
            result.requests["batch_writes"] += self._contacts.put_items(batch)

    def _update(self, imp: Import, run: Run, decision: _Decision, ledger: dict[str, Any], result: ChunkResult) -> bool:
        """One update transaction; False when the contact changed since it was read (classify it again)."""
        updated, current = decision.contact, decision.current
        assert updated is not None
        assert current is not None
        consent = [_consent(updated, run, imp)] if run.consent and updated.status == "SUBSCRIBED" else []
        entry = Activity("updated", updated.updated_at, {"import_id": imp.id})
        ops, identity_ops, deltas = self._contacts.write_ops(updated, current, activity=[entry], consent=consent)
        ops[0]["Put"]["Item"]["import_run"] = {"S": run.id}
        totals = {f"{DELTA_PREFIX}{name}": value for name, value in deltas.items()}
        totals[f"{COUNT_PREFIX}{models.UPDATED}"] = 1
        ops.append(self._imports.ledger_add(ledger, totals))
        result.requests["update_transactions"] += 1
        try:
            self._contacts.transact(ops, identity_ops)
        except (IdentityTakenError, ValidationError) as error:
            decision.outcome, decision.message = models.CONFLICT, error.message
        except ConcurrentUpdateError:
            return False
        return True

    # -- accounting ---------------------------------------------------------------------------------

    def _count(self, decision: _Decision, result: ChunkResult) -> None:
        record, outcome = decision.record, decision.outcome
        if decision.dnc:
            result.counts[models.DO_NOT_CONTACT] += 1
        if outcome in (_RESUMED, _DONE_BEFORE):
            return  # counted in the ledger by the attempt that wrote it
        result.counts[outcome] += 1
        if outcome == models.CONFLICT:
            result.rejected.append((record["r"], models.CONFLICT, decision.message or "conflict", record.get("c", [])))
        samples = result.samples.setdefault(outcome, [])
        if len(samples) < SAMPLES_PER_OUTCOME:
            data = record["d"]
            sample = {
                "row": record["r"],
                **{k: data[k] for k in ("full_name", "first_name", "last_name", "email", "phone") if data.get(k)},
            }
            if decision.contact is not None and outcome != models.CREATED:
                sample["contact_id"] = decision.contact.id
            if decision.message:
                sample["message"] = decision.message
            samples.append(sample)


# -- items ------------------------------------------------------------------------------------------


def _identities(data: dict[str, Any]) -> list[Identity]:
    found = []
    if data.get("phone"):
        found.append(Identity("phone", data["phone"]))
    if data.get("email"):
        found.append(Identity("email", data["email"]))
    return found


def _changes(current: Contact, data: dict[str, Any]) -> dict[str, Any]:
    """An update from a row: its non-empty values (an empty cell never clears a field), tags added."""
    changes = {k: v for k, v in data.items() if k in ("first_name", "last_name", "full_name", "email", "phone")}
    if data.get("custom_fields"):
        changes["custom_fields"] = data["custom_fields"]
    if data.get("tags"):
        changes["tags"] = list(dict.fromkeys([*current.tags, *data["tags"]]))
    return changes


def _membership(contact: Contact, segment: Segment) -> dict[str, Any]:
    return {
        "pk": keys.contact_pk(contact.org_id, contact.id),
        "sk": f"{keys.MEMBER_PREFIX}{segment.id}",
        "gsi1pk": keys.facet_partition(contact.org_id, "segment", segment.id, keys.shard_of(contact.id)),
        "gsi1sk": f"{contact.created_at}#{contact.id}",
        "source": BY_CLIENT,
        "added_at": contact.created_at,
    }


def _segment_check(table: str, org_id: str, segment: Segment) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": table,
            "Key": serialize({"pk": segments_pk(org_id), "sk": f"{SEGMENT_PREFIX}{segment.id}"}),
            "ConditionExpression": "attribute_exists(pk) AND #ty = :static AND #st <> :deleting",
            "ExpressionAttributeNames": {"#ty": "type", "#st": "state"},
            "ExpressionAttributeValues": serialize({":static": STATIC, ":deleting": DELETING}),
        }
    }


def _consent(contact: Contact, run: Run, imp: Import) -> dict[str, Any]:
    assert run.consent is not None
    return consent_item(
        contact.org_id,
        record_id=f"cn_{contact.id[3:13]}{_digest_part(f'{run.id}:{contact.id}')}",
        contact_id=contact.id,
        channel=ALL_CHANNELS,
        opted_in=True,
        source="import",
        proof=f"import {imp.id} of {imp.file_name!r}: consent confirmed {run.consent.get('confirmed_by', '')}".strip(),
        at=run.consent["at"],
        recorded_at=run.started_at,
    )


class DncChunkWriter:
    """Adds (or, in a dry run, only checks) one chunk of do-not-contact entries. An entry already on the
    list, including one a retried chunk added before, is `skipped`; the list's own counters move in the
    same transactions as its entries."""

    def __init__(self, repository: DoNotContactRepository) -> None:
        self._repository = repository

    def run(
        self,
        imp: Import,
        run: Run,
        number: int,
        records: list[dict[str, Any]],
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ChunkResult:
        from audience.compliance.keys import entry_pk, entry_sk
        from audience.compliance.models import DncEntry

        result = ChunkResult()
        for start in range(0, len(records), LOOKUP_GROUP):
            if should_stop():
                result.stopped = True
                break
            group = records[start : start + LOOKUP_GROUP]
            entries = [
                DncEntry(
                    id=f"dnc_{derived_contact_id(run, r['r']).split('_', 1)[1]}",
                    org_id=imp.org_id,
                    added_at=run.started_at,
                    **r["d"],
                )
                for r in group
            ]
            keys_ = [
                (entry_pk(e.org_id, e.identifier_type, e.identifier), entry_sk(e.channel, e.sender)) for e in entries
            ]
            existing = self._repository.get_many(keys_)
            fresh = [e for e, k in zip(entries, keys_, strict=True) if k not in existing]
            added = set()
            if fresh and run.kind == models.IMPORT:
                outcomes = self._repository.add_many(fresh)
                added = {e.id for e, o in zip(fresh, outcomes, strict=True) if o is None}
                result.requests["dnc_transactions"] += (len(fresh) + 18) // 19
            elif fresh:
                added = {e.id for e in fresh}
            for record, entry in zip(group, entries, strict=True):
                outcome = models.CREATED if entry.id in added else models.SKIPPED
                result.counts[outcome] += 1
                samples = result.samples.setdefault(outcome, [])
                if len(samples) < SAMPLES_PER_OUTCOME:
                    samples.append({"row": record["r"], "identifier": entry.identifier, "channel": entry.channel})
        return result
