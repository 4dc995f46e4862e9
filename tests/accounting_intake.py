"""Intake flows of the accounting run: a contacts import and a stream of inbound WhatsApp messages, driven
through the stack's HTTP API as their callers drive them, and checked after the stack has drained.

- `ImportScenario`: a CSV generated from a seed with a known mix of rows (new contacts, rows repeating
  an earlier row's phone or email, invalid rows, rows matching contacts that exist before the import,
  rows whose phone and email belong to two different contacts), uploaded, mapped and imported. Its check
  says whether every row has the outcome the generator planted, once.
- `InboundScenario`: signed WhatsApp webhook calls from about a quarter as many senders as messages,
  each call sent again up to twice (as Meta retries), a few of them STOP. Its check says whether every
  message is stored once, every sender is one contact, STOP senders are unsubscribed.

Both checks also recount the org's contact counters (total, status, tag, channel, month) from the
contacts themselves and find any phone or email two contacts share. A scenario's own items are found by
the identities it planted, so other flows may use the same org; the counters and the uniqueness of
phones and emails are checked over the whole org.

An API call answered with a 5xx is sent again, as a client retries; so is a webhook call (as Meta does).
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests
from fastapi.testclient import TestClient

from tests.accounting import Ledger
from tests.channels import APP_SECRET, VERIFY_TOKEN, meta_signature, text_message

ATTEMPTS = 8  # sends of one HTTP call before the scenario gives up (faults fail a call at most twice)
INLINE_UPLOAD_BYTES = 4 * 1024 * 1024  # larger files take the presigned upload (the API takes 5 MB inline)
OUTCOMES = ("created", "updated", "unchanged", "skipped", "duplicate", "invalid", "conflict")
_COUNTED_PREFIXES = ("s#", "t#", "c#", "m#")  # counter names a recount of the contacts reproduces


class ScenarioError(AssertionError):
    """The scenario could not drive the API (an answer no retry explains)."""


class Api:
    """The stack's HTTP API as one org's client: a call answered 5xx is sent again, the same call."""

    def __init__(self, stack: Any, tenant: Any) -> None:
        self.http = TestClient(stack.http_app, headers=tenant.headers)
        self.retries = 0

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202), **kwargs: Any) -> Any:
        """The first answer that is not a 5xx; raises unless it is one of `ok` (or a 409 after a retry,
        which the caller reads as the first attempt having done the work)."""
        for attempt in range(ATTEMPTS):
            answer = self.http.request(method, path, **kwargs)
            if answer.status_code < 500:
                if answer.status_code in ok or (attempt and answer.status_code == 409):
                    return answer
                raise ScenarioError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
            self.retries += 1
        raise ScenarioError(f"{method} {path}: still {answer.status_code} after {ATTEMPTS} attempts")


# -- what the org holds ---------------------------------------------------------------------------


@dataclass
class OrgItems:
    """Every item of one org in the contacts table, read in one scan and sorted by kind."""

    contacts: dict[str, Any] = field(default_factory=dict)  # contact id -> Contact
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))  # by contact id
    conversations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (contact, channel)
    refs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (channel, provider id)


def org_items(stack: Any, org_id: str) -> OrgItems:
    from audience.contacts.keys import CONTACT_SK, contact_id_from_pk
    from audience.contacts.repository import contact_from_item, deserialize
    from audience.inbound.repository import CONVERSATION_PREFIX, LOG_PREFIX

    found = OrgItems()
    prefix = f"O#{org_id}#"
    request: dict[str, Any] = {
        "TableName": stack.resources["ContactsTable"],
        "FilterExpression": "begins_with(pk, :org)",
        "ExpressionAttributeValues": {":org": {"S": prefix}},
        "ConsistentRead": True,
    }
    dynamodb = stack.client("dynamodb")
    while True:
        page = dynamodb.scan(**request)
        for raw in page["Items"]:
            pk, sk = raw["pk"]["S"], raw["sk"]["S"]
            if pk.startswith(f"{prefix}C#"):
                if sk == CONTACT_SK:
                    contact = contact_from_item(deserialize(raw))
                    found.contacts[contact.id] = contact
                elif sk.startswith(LOG_PREFIX):
                    found.logs[contact_id_from_pk(pk)].append(deserialize(raw))
                elif sk.startswith(CONVERSATION_PREFIX):
                    found.conversations[(contact_id_from_pk(pk), sk[len(CONVERSATION_PREFIX) :])] = deserialize(raw)
            elif pk.startswith(f"{prefix}P#") and sk == "#MSG":
                item = deserialize(raw)
                found.refs[(item.get("channel", ""), item.get("provider_id", ""))] = item
        if "LastEvaluatedKey" not in page:
            return found
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def check_contacts(stack: Any, tenant: Any, items: OrgItems, ledger: Ledger, api: Api) -> None:
    """Org-wide: no phone or email on two contacts (an extra contact is an uncounted duplicate), and every
    contact counter equal to its recount from the contacts."""
    from audience.contacts.repository import ContactsRepository, counter_values

    for kind in ("phone", "email"):
        owners: dict[str, list[str]] = defaultdict(list)
        for contact in items.contacts.values():
            value = getattr(contact, kind)
            if value:
                owners[value.lower() if kind == "email" else value].append(contact.id)
        for value, ids in sorted(owners.items()):
            if len(ids) > 1:
                ledger.duplicates += len(ids) - 1
                ledger.uncounted_duplicates.extend(f"contact {cid} ({kind} {value})" for cid in sorted(ids)[1:])

    recount: Counter[str] = Counter()
    for contact in items.contacts.values():
        recount.update(counter_values(contact))
    stored = ContactsRepository(stack.resources["ContactsTable"]).counters(tenant.org_id)
    names = {"total"} | {n for n in (*stored, *recount) if n.startswith(_COUNTED_PREFIXES)}
    for name in sorted(names):
        ledger.compare(f"contacts {name}", int(stored.get(name, 0)), recount.get(name, 0))
    stats = api.call("GET", "/orgs/c/contacts/stats").json()
    ledger.compare("GET /contacts/stats total", stats["total"], recount["total"])
    for status in ("subscribed", "unsubscribed", "blocked"):
        ledger.compare(f"GET /contacts/stats {status}", stats[status], recount[f"s#{status.upper()}"])


# -- the import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRow:
    number: int  # the row's number as a spreadsheet shows it (the header is row 1)
    outcome: str  # created, updated, unchanged, duplicate, invalid or conflict
    cells: tuple[str, str, str]  # name, email, phone as written in the file
    reason: str | None = None  # the error report's reason for a rejected row
    email: str | None = None  # the normalised identities a created or matched contact has
    phone: str | None = None
    existing: int | None = None  # the contact the row matches (updated, unchanged)


class ImportScenario:
    """A contacts import of `size` rows: `existing_share` of them match contacts created before the
    import (half with a new name: updated; half as they are: unchanged), `duplicate_share` repeat the
    phone or email of an earlier row, `invalid_share` are invalid (a bad phone, a bad email, both, or
    neither given), `conflict_share` give one existing contact's email with another's phone; the rest
    are new contacts. The mapping updates existing contacts and adds no tag."""

    name = "import"

    def __init__(
        self,
        stack: Any,
        tenant: Any,
        *,
        size: int,
        seed: int,
        existing_share: float = 0.05,
        duplicate_share: float = 0.08,
        invalid_share: float = 0.06,
        conflict_share: float = 0.005,
    ) -> None:
        self.stack = stack
        self.tenant = tenant
        self.size = size
        self.seed = seed
        self.api = Api(stack, tenant)
        self.domain = f"i{seed}.example.com"
        self.import_id: str | None = None
        self.phase = "upload"
        self.existing, self.rows = self._plan(
            random.Random(seed), existing_share, duplicate_share, invalid_share, conflict_share
        )

    # -- the plan -------------------------------------------------------------------------------------

    def _phone(self, n: int) -> str:
        """A valid Indonesian mobile number of this scenario (E.164), one per `n`."""
        return f"+62812{(self.seed % 97) * 100_000 + n:08d}"[:14]

    def _plan(
        self, rng: random.Random, existing_share: float, duplicate_share: float, invalid_share: float, conflict: float
    ) -> tuple[list[dict[str, str]], list[PlannedRow]]:
        size = self.size
        n_existing = max(4, round(size * existing_share))
        n_conflict = max(1, round(size * conflict)) if size >= 20 else 0
        existing = [
            {"full_name": f"Existing {i}", "email": f"old{i}@{self.domain}", "phone": self._phone(i)}
            for i in range(n_existing + 2 * n_conflict)
        ]
        kinds = ["existing"] * min(n_existing, size) + ["conflict"] * n_conflict
        kinds += ["duplicate"] * round(size * duplicate_share) + ["invalid"] * round(size * invalid_share)
        kinds = kinds[:size] + ["new"] * max(0, size - len(kinds))
        rng.shuffle(kinds)
        rows: list[PlannedRow] = []
        accepted: list[PlannedRow] = []  # rows whose identities the file has seen (what a duplicate repeats)
        next_existing, next_conflict, fresh = 0, n_existing, len(existing)
        for index, kind in enumerate(kinds):
            number = index + 2
            if kind == "duplicate" and not accepted:
                kind = "new"
            if kind == "new":
                fresh += 1
                email, phone = f"new{fresh}@{self.domain}", self._phone(fresh)
                shown_phone = phone if rng.random() < 0.5 else f"{phone[:3]} {phone[3:6]}-{phone[6:10]}-{phone[10:]}"
                row = PlannedRow(number, "created", (f"New {fresh}", email, shown_phone), email=email, phone=phone)
                if rng.random() < 0.15:  # an email only or a phone only
                    if rng.random() < 0.5:
                        row = PlannedRow(number, "created", (f"New {fresh}", email, ""), email=email)
                    else:
                        row = PlannedRow(number, "created", (f"New {fresh}", "", shown_phone), phone=phone)
                accepted.append(row)
            elif kind == "existing":
                i = next_existing
                next_existing += 1
                person = existing[i]
                changed = rng.random() < 0.5
                name = f"Renamed {i}" if changed else person["full_name"]
                row = PlannedRow(
                    number,
                    "updated" if changed else "unchanged",
                    (name, person["email"], person["phone"]),
                    email=person["email"],
                    phone=person["phone"],
                    existing=i,
                )
                accepted.append(row)
            elif kind == "conflict":
                first, second = existing[next_conflict], existing[next_conflict + 1]
                next_conflict += 2
                cells = ("Mixed up", first["email"], second["phone"])
                row = PlannedRow(number, "conflict", cells, reason="conflict")
            elif kind == "duplicate":
                earlier = rng.choice(accepted)
                fresh += 1
                if earlier.email and (not earlier.phone or rng.random() < 0.5):
                    cells = (f"Again {fresh}", earlier.email.upper(), self._phone(fresh) if rng.random() < 0.5 else "")
                else:
                    assert earlier.phone is not None
                    email = f"again{fresh}@{self.domain}" if rng.random() < 0.5 else ""
                    cells = (f"Again {fresh}", email, earlier.phone)
                row = PlannedRow(number, "duplicate", cells, reason="duplicate")
            else:
                fresh += 1
                reason, cells = rng.choice(
                    (
                        ("invalid_phone", (f"Bad {fresh}", f"bad{fresh}@{self.domain}", "12")),
                        ("invalid_email", (f"Bad {fresh}", f"bad{fresh}(at){self.domain}", "")),
                        ("invalid_phone", (f"Bad {fresh}", f"bad{fresh}@@{self.domain}", "+62 12")),
                        ("missing_identifier", (f"Bad {fresh}", "", "")),
                    )
                )
                row = PlannedRow(number, "invalid", cells, reason=reason)
            rows.append(row)
        return existing, rows

    def csv(self) -> bytes:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(["name", "email", "phone"])
        writer.writerows(row.cells for row in self.rows)
        return text.getvalue().encode("utf-8")

    def planned(self) -> dict[str, int]:
        counts = Counter(row.outcome for row in self.rows)
        return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}

    # -- the flow -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the contacts the file will match (an upsert: a retried call changes nothing), then
        upload the file; its analysis runs in the next drain."""
        for first in range(0, len(self.existing), 1000):
            body = {"contacts": self.existing[first : first + 1000], "upsert": True}
            results = self.api.call("POST", "/orgs/c/contacts/bulk", json=body).json()["results"]
            refused = [r for r in results if r["action"] not in ("created", "updated", "unchanged")]
            if refused:
                raise ScenarioError(f"contacts before the import were refused: {refused[:3]}")
        data, name = self.csv(), f"accounting-{self.seed}.csv"
        if len(data) <= INLINE_UPLOAD_BYTES:
            answer = self.api.call("POST", "/orgs/c/imports/file", params={"file_name": name}, content=data)
            self.import_id = answer.json()["id"]
        else:  # a large file goes to S3 through the presigned form, then is analysed
            created = self.api.call("POST", "/orgs/c/imports", json={"file_name": name, "size": len(data)}).json()
            self.import_id, form = created["import"]["id"], created["upload"]
            uploaded = requests.post(form["url"], data=form["fields"], files={"file": (name, data)}, timeout=300)
            if uploaded.status_code not in (200, 201, 204):
                raise ScenarioError(f"upload of {name}: {uploaded.status_code} {uploaded.text[:300]}")
            self.api.call("POST", f"/orgs/c/imports/{self.import_id}/analyse")
        self.phase = "analysing"

    def _import(self) -> dict[str, Any]:
        return dict(self.api.call("GET", f"/orgs/c/imports/{self.import_id}").json())

    def next_phase(self) -> bool:
        """Map the analysed file and start the import (True: a drain runs it); False once it is done."""
        if self.phase == "analysing":
            imp = self._import()
            if imp["status"] == "analysing":
                return True
            if imp["status"] != "analysed":
                raise ScenarioError(f"import {self.import_id} is {imp['status']} after its analysis: {imp['error']}")
            columns = [{"index": i, "target": t} for i, t in enumerate(("full_name", "email", "phone"))]
            mapping = {"columns": columns, "existing": "update", "import_tag": False}
            self.api.call("PUT", f"/orgs/c/imports/{self.import_id}/mapping", json=mapping)
            self.api.call("POST", f"/orgs/c/imports/{self.import_id}/start", json={"consent_confirmed": True})
            self.phase = "importing"
            return True
        if self.phase == "importing":
            return self._import()["status"] in ("importing", "cancelling")
        return False

    # -- the check ------------------------------------------------------------------------------------

    def check(self) -> list[Ledger]:
        ledger = Ledger(self.name, items_in=self.size)
        imp = self._import()
        planned = self.planned()
        ledger.notes.append(f"import {self.import_id}: {imp['status']}, planned {planned}")
        if imp["status"] != "completed" or imp["progress"] is None:
            ledger.lost.append(f"import {self.import_id} is {imp['status']}: {imp.get('error')}")
            return [ledger]
        progress = imp["progress"]
        for outcome in OUTCOMES:
            ledger.compare(f"import counts.{outcome}", progress["counts"][outcome], planned[outcome])
        ledger.compare("import rows_total", progress["rows_total"] or 0, self.size)
        ledger.compare("import rows_done", progress["rows_done"], self.size)

        # The error report: each rejected row once, with its planted reason.
        reported: Counter[tuple[int, str]] = Counter()
        if imp["error_report_url"]:
            key = f"imports/{self.tenant.org_id}/{self.import_id}/{progress['run_id']}/errors.csv"
            data = self.stack.client("s3").get_object(Bucket=self.stack.resources["ImportsBucket"], Key=key)["Body"]
            lines = list(csv.reader(io.StringIO(data.read().decode("utf-8-sig"), newline="")))[1:]
            reported.update((int(line[0]), line[1]) for line in lines)
        rejected = {(row.number, row.reason) for row in self.rows if row.reason}
        for number, reason in sorted(rejected - set(reported)):
            ledger.lost.append(f"row {number} ({reason}) missing from the error report")
        for (number, reason), times in sorted(reported.items()):
            if (number, reason) not in rejected:
                ledger.uncounted_duplicates.append(f"row {number} reported as {reason}, planned otherwise")
            elif times > 1:
                ledger.duplicates += times - 1
                ledger.uncounted_duplicates.append(f"row {number} reported {times} times")

        # The contacts: one per created row (with every identity the row gave), the matched ones updated.
        items = org_items(self.stack, self.tenant.org_id)
        by_identity: dict[str, list[Any]] = defaultdict(list)
        for contact in items.contacts.values():
            for value in {contact.email, contact.phone} - {None}:
                by_identity[value].append(contact)
        out = 0
        for row in self.rows:
            if row.outcome not in ("created", "updated", "unchanged"):
                out += 1 if (row.number, row.reason) in reported else 0
                continue
            owners = {c.id: c for value in (row.email, row.phone) if value for c in by_identity.get(value, [])}
            if not owners:
                ledger.lost.append(f"row {row.number}: no contact with {row.email or row.phone}")
                continue
            out += 1
            contact = next(iter(owners.values()))
            if len(owners) > 1:
                ledger.uncounted_duplicates.append(f"row {row.number}: {len(owners)} contacts {sorted(owners)}")
            elif (contact.email, contact.phone) != (row.email, row.phone):
                ledger.lost.append(f"row {row.number}: contact {contact.id} has {contact.email}, {contact.phone}")
            elif contact.full_name != row.cells[0]:
                ledger.lost.append(f"row {row.number}: contact {contact.id} is named {contact.full_name!r}")
        ledger.items_out = out
        phones = {row.phone for row in self.rows if row.phone} | {p["phone"] for p in self.existing}
        mine = [c for c in items.contacts.values() if (c.email or "").endswith(f"@{self.domain}")]
        mine += [c for c in items.contacts.values() if not c.email and (c.phone or "") in phones]
        ledger.compare("contacts of the import", len(mine), len(self.existing) + planned["created"])
        check_contacts(self.stack, self.tenant, items, ledger, self.api)
        ledger.notes.append(f"API calls sent again after a 5xx: {self.api.retries}")
        return [ledger]


# -- inbound messages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedMessage:
    wamid: str
    sender: str  # wa_id
    text: str
    at: int


class InboundScenario:
    """`size` inbound WhatsApp text messages from about size/4 senders to one connection of the org, each
    webhook call sent 1 to 3 times, and a STOP from `stop_share` of the senders (at least one)."""

    name = "inbound messages"

    def __init__(
        self, stack: Any, tenant: Any, *, size: int, seed: int, stop_share: float = 0.1, max_resends: int = 2
    ) -> None:
        self.stack = stack
        self.tenant = tenant
        self.size = size
        self.seed = seed
        self.api = Api(stack, tenant)
        self.phone_number_id = f"8{seed % 10**8:08d}{size % 10**6:06d}"
        self.connection_id: str | None = None
        self.calls = 0
        self.webhook_retries = 0
        rng = random.Random(seed)
        n_senders = max(1, size // 4)
        self.senders = [f"62857{(seed % 89) * 100_000 + i:08d}"[:13] for i in range(n_senders)]
        stoppers = set(rng.sample(self.senders, max(1, round(n_senders * stop_share))))
        now = int(time.time())
        order = list(self.senders) + [rng.choice(self.senders) for _ in range(size - n_senders)]
        rng.shuffle(order)
        self.messages: list[PlannedMessage] = []
        stopped: set[str] = set()
        for n, sender in enumerate(order[:size]):
            # A stopper's STOP is one of their messages; nothing ever opts them back in.
            stop = sender in stoppers and sender not in stopped and rng.random() < 0.5
            if stop:
                stopped.add(sender)
            text = "STOP" if stop else f"Halo, pesanan nomor {n}"
            self.messages.append(PlannedMessage(f"wamid.acct{seed}.{n}", sender, text, now - 3600 + n))
        for sender in stoppers - stopped:  # senders whose STOP the draw above left out: their last message
            last = max(i for i, m in enumerate(self.messages) if m.sender == sender)
            m = self.messages[last]
            self.messages[last] = PlannedMessage(m.wamid, m.sender, "STOP", m.at)
        self.stoppers = stoppers
        self.resends = [rng.randint(0, max_resends) for _ in self.messages]
        self.http = TestClient(stack.http_app)

    def start(self) -> None:
        """Connect the WhatsApp number, then send every message's webhook call (each again 0 to
        `max_resends` times, the repeats after the others, as platform retries come late)."""
        self.connection_id = self._connect()
        later: list[PlannedMessage] = []
        for message, extra in zip(self.messages, self.resends, strict=True):
            self._deliver(message)
            later.extend([message] * extra)
        random.Random(self.seed + 1).shuffle(later)
        for message in later:
            self._deliver(message)

    def _connect(self) -> str:
        body = {
            "platform": "whatsapp",
            "name": f"accounting {self.seed}",
            "settings": {"phone_number_id": self.phone_number_id, "business_account_id": f"9{self.phone_number_id}"},
            "secrets": {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "access_token": "EAAG-test-token"},
        }
        answer = self.api.call("POST", "/orgs/c/connections", json=body)
        if answer.status_code != 409:
            return str(answer.json()["id"])
        # A retried create after one that succeeded: the connection is there.
        for connection in self.api.call("GET", "/orgs/c/connections").json()["items"]:
            if connection.get("settings", {}).get("phone_number_id") == self.phone_number_id:
                return str(connection["id"])
        raise ScenarioError(f"connection of {self.phone_number_id} refused: {answer.text[:300]}")

    def _deliver(self, message: PlannedMessage) -> None:
        """One webhook call, sent until it is answered 200 (Meta retries any other answer)."""
        payload = text_message(self.phone_number_id, message.wamid, message.text, wa_id=message.sender, at=message.at)
        body = json.dumps(payload).encode()
        headers = {"X-Hub-Signature-256": meta_signature(body), "Content-Type": "application/json"}
        self.calls += 1
        for _ in range(ATTEMPTS):
            answer = self.http.post(f"/webhooks/{self.connection_id}", content=body, headers=headers)
            if answer.status_code == 200:
                return
            if answer.status_code < 500:
                raise ScenarioError(f"webhook {message.wamid}: {answer.status_code} {answer.text[:300]}")
            self.webhook_retries += 1
        raise ScenarioError(f"webhook {message.wamid}: still {answer.status_code} after {ATTEMPTS} attempts")

    def next_phase(self) -> bool:
        return False

    def check(self) -> list[Ledger]:
        from audience.contacts import quality

        ledger = Ledger(self.name, items_in=len(self.messages))
        items = org_items(self.stack, self.tenant.org_id)
        planned = {m.wamid: m for m in self.messages}

        # Messages: one log entry per provider id, in its sender's contact, with its provider-id item.
        logged: dict[str, list[str]] = defaultdict(list)  # wamid -> contact ids of its log entries
        for contact_id, entries in items.logs.items():
            for entry in entries:
                if entry.get("provider_id") in planned and entry.get("direction") == "inbound":
                    logged[entry["provider_id"]].append(contact_id)
        for wamid in planned:
            found = logged.get(wamid, [])
            if not found:
                ledger.lost.append(wamid)
            elif len(found) > 1:
                ledger.duplicates += len(found) - 1
                ledger.uncounted_duplicates.extend([wamid] * (len(found) - 1))
            if found and (items.refs.get(("whatsapp", wamid)) or {}).get("contact_id") not in found:
                ledger.lost.append(f"{wamid}: no provider-id item naming its contact")
        ledger.items_out = len(logged)

        # Senders: one contact each, holding that sender's messages; STOP senders unsubscribed.
        by_phone: dict[str, list[Any]] = defaultdict(list)
        for contact in items.contacts.values():
            if contact.phone:
                by_phone[contact.phone].append(contact)
        sent_by: dict[str, list[PlannedMessage]] = defaultdict(list)
        for message in self.messages:
            sent_by[message.sender].append(message)
        for sender, messages in sorted(sent_by.items()):
            contacts = by_phone.get(f"+{sender}", [])
            if not contacts:
                ledger.lost.append(f"sender {sender}: no contact")
                continue
            contact = contacts[0]
            wamids = {m.wamid for m in messages}
            if any(cid != contact.id for w in wamids for cid in logged.get(w, [])):
                ledger.lost.append(f"sender {sender}: a message logged on another contact")
            expected_status = "UNSUBSCRIBED" if sender in self.stoppers else "SUBSCRIBED"
            if contact.status != expected_status:
                ledger.counter_mismatches.append(f"sender {sender}: status {contact.status}, {expected_status} planned")
            entries = [e for e in items.logs.get(contact.id, []) if e.get("channel") == "whatsapp"]
            inbound = [e for e in entries if e.get("direction") == "inbound"]
            conversation = items.conversations.get((contact.id, "whatsapp")) or {}
            ledger.compare(
                f"conversation inbound_count of {contact.id}", int(conversation.get("inbound_count", 0)), len(inbound)
            )
            days = (contact.engagement or {}).get("days") or {}
            replied = sum(int(bucket[quality.REPLIED]) for bucket in days.values())
            ledger.compare(f"engagement replies of {contact.id}", replied, len(inbound))
        check_contacts(self.stack, self.tenant, items, ledger, self.api)
        resent = sum(self.resends)
        ledger.notes.append(
            f"{len(self.messages)} messages from {len(self.senders)} senders ({len(self.stoppers)} STOP), "
            f"{self.calls} webhook calls ({resent} platform resends, {self.webhook_retries} after a 5xx)"
        )
        return [ledger]
