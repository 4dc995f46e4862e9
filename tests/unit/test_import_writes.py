"""Contact imports write every row exactly once: a chunk worker that fails part-way through and is retried,
a ledger that was not folded when the worker died, a chunk run twice, imports racing the contacts API and
each other, and the write requests a chunk makes."""

from __future__ import annotations

import csv
import io
import math
import threading
from collections import Counter
from typing import Any

import pytest

from audience.contacts.keys import CONTACT_SK, IDENTITY_SK, contact_pk, identity_pk
from audience.contacts.repository import (
    ContactsRepository,
    contact_from_item,
    derived_items,
    deserialize,
    serialize,
)
from audience.imports.repository import ImportsRepository
from audience.imports.service import ImportRunner
from audience.imports.writer import CREATE_GROUP, ContactChunkWriter
from audience.settings import get_settings

HEADER = ["name", "email", "phone", "tags"]


# -- files ----------------------------------------------------------------------------------------


def phone(i: int) -> str:
    return f"+6281234{i:05d}"


def person(i: int, tag: str = "vip") -> list[str]:
    return [f"Person {i}", f"p{i}@example.com", phone(i), tag]


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([header, *rows])
    return text.getvalue().encode("utf-8")


# -- driving an import ----------------------------------------------------------------------------


def upload(stack: Any, org: Any, data: bytes, *, import_tag: bool = False) -> str:
    """Upload `data`, let the analysis run and map every column to its suggested target."""
    response = org.client.post("/orgs/c/imports/file", params={"file_name": "x.csv"}, content=data)
    assert response.status_code == 202, response.text
    import_id = response.json()["id"]
    stack.drain()
    imp = org.client.get(f"/orgs/c/imports/{import_id}").json()
    assert imp["status"] == "analysed", imp
    columns = [{"index": c["index"], "target": c["target"]} for c in imp["columns"]]
    response = org.client.put(
        f"/orgs/c/imports/{import_id}/mapping",
        json={"columns": columns, "import_tag": import_tag},
    )
    assert response.status_code == 200, response.text
    return import_id


def begin(org: Any, import_id: str) -> None:
    response = org.client.post(f"/orgs/c/imports/{import_id}/start", json={"consent_confirmed": True})
    assert response.status_code == 202, response.text


def run_to_end(stack: Any, org: Any, import_id: str) -> dict[str, Any]:
    """Start the import, let the state machine run (retries included) and return the import."""
    begin(org, import_id)
    stack.drain(timeout=90)
    return org.client.get(f"/orgs/c/imports/{import_id}").json()


def hold_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Keep runs from starting their executions (analyses still run): the test drives the worker itself."""
    held: list[dict[str, Any]] = []
    real = ImportRunner.start

    def start(self: ImportRunner, name: str, payload: dict[str, Any]) -> None:
        if payload["action"] == "run":
            held.append(payload)
        else:
            real(self, name, payload)

    monkeypatch.setattr(ImportRunner, "start", start)
    return held


def count_chunk_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The chunk number of every chunk writer run, in the order they started (retries included)."""
    numbers: list[int] = []
    lock = threading.Lock()
    real = ContactChunkWriter.run

    def run(self: ContactChunkWriter, imp: Any, run_: Any, number: int, records: Any, **kwargs: Any) -> Any:
        with lock:
            numbers.append(number)
        return real(self, imp, run_, number, records, **kwargs)

    monkeypatch.setattr(ContactChunkWriter, "run", run)
    return numbers


def crash_before_secondary_items(monkeypatch: pytest.MonkeyPatch, before_crash: Any) -> list[int]:
    """Make chunk 0 die, once, when it first writes secondary items (after the create transactions of
    rows 0 to 68 committed, before any of their index, activity or consent items is written);
    `before_crash(contact_id of row 30)` runs first, as a user would in the time before the retry."""
    crashed: list[int] = []
    lock = threading.Lock()
    real = ContactsRepository.put_items

    def put_items(self: ContactsRepository, items: list[dict[str, Any]]) -> int:
        with lock:
            crash = not crashed and any(item["sk"] == "X#p30@example.com" for item in items)
            if crash:
                crashed.append(len(items))
        if crash:
            row_30 = next(i for i in items if i["sk"] == "X#p30@example.com")["gsi1sk"].rsplit("#", 1)[1]
            before_crash(row_30)
            raise RuntimeError("the worker died")
        return real(self, items)

    monkeypatch.setattr(ContactsRepository, "put_items", put_items)
    return crashed


def worker() -> Any:
    from audience.imports.wiring import import_worker

    return import_worker()


# -- reading the outcome --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _without_stream_consumers(stack: Any) -> None:
    """The contacts table's stream consumers keep dynamic segments current and purge deleted contacts:
    they write nothing these tests count, and on moto they cost most of each test's time."""
    from devstack.pollers import StreamPoller

    stack.pollers[:] = [p for p in stack.pollers if not isinstance(p, StreamPoller)]


def contacts_repository() -> ContactsRepository:
    return ContactsRepository(get_settings().contacts_table)


def listed(org: Any, **params: Any) -> list[dict[str, Any]]:
    """Every contact `GET /contacts` returns for `params`, page after page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "take": 100, **({"cursor": cursor} if cursor else {})}
        response = org.client.get("/orgs/c/contacts", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return found


def ids(contacts: list[dict[str, Any]]) -> set[str]:
    return {c["id"] for c in contacts}


def recount(contacts: list[dict[str, Any]]) -> dict[str, int]:
    """The org's counters as they must be, counted over its contacts."""
    counts: Counter[str] = Counter({"total": len(contacts)})
    for contact in contacts:
        counts[f"s#{contact['status']}"] += 1
        counts.update(f"t#{tag}" for tag in contact["tags"])
        counts.update(f"c#{channel}" for channel in {c["channel"] for c in contact["channels"]})
    return dict(counts)


def stored_counters(org: Any) -> dict[str, int]:
    counters = contacts_repository().counters(org.org_id)
    return {k: v for k, v in counters.items() if v and (k == "total" or k[:2] in ("s#", "t#", "c#"))}


def org_items(org_id: str) -> list[dict[str, Any]]:
    """Every item of the org in the contacts table (one scan: cheaper on moto than a query per contact)."""
    client = contacts_repository()._client
    kwargs: dict[str, Any] = {
        "TableName": get_settings().contacts_table,
        "FilterExpression": "begins_with(pk, :org)",
        "ExpressionAttributeValues": serialize({":org": f"O#{org_id}#"}),
    }
    items: list[dict[str, Any]] = []
    while True:
        response = client.scan(**kwargs)
        items.extend(deserialize(i) for i in response["Items"])
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def sort_keys(org: Any, contact_id: str) -> set[str]:
    """The sort keys of the items in a contact's partition."""
    response = contacts_repository()._client.query(
        TableName=get_settings().contacts_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=serialize({":pk": contact_pk(org.org_id, contact_id)}),
        ConsistentRead=True,
    )
    return {item["sk"]["S"] for item in response["Items"]}


def partitions(org_id: str) -> dict[str, list[dict[str, Any]]]:
    """The items of each contact's partition, by contact id."""
    prefix = contact_pk(org_id, "")
    found: dict[str, list[dict[str, Any]]] = {}
    for item in org_items(org_id):
        if item["pk"].startswith(prefix):
            found.setdefault(item["pk"][len(prefix) :], []).append(item)
    return found


def entries(items: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return sorted((i for i in items if i["sk"].startswith(prefix)), key=lambda i: i["sk"])


def activity(org: Any, contact_id: str) -> list[dict[str, Any]]:
    response = org.client.get(f"/orgs/c/contacts/{contact_id}/activity", params={"take": 100})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def assert_consistent(org: Any, expected_phones: set[str]) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """One contact per phone and email; stats, tag counts and every counter equal a recount; each contact
    has exactly its facet and search items, is listed under each of its tags and found by its phone.
    Returns the contacts as listed and the items of each one's partition."""
    contacts = listed(org)
    phones = [c["phone"] for c in contacts]
    emails = [c["email"] for c in contacts if c["email"]]
    assert len(phones) == len(set(phones)), "one contact per phone"
    assert len(emails) == len(set(emails)), "one contact per email"
    assert set(phones) == expected_phones

    expected = recount(contacts)
    assert stored_counters(org) == expected
    stats = org.client.get("/orgs/c/contacts/stats").json()
    assert stats == {
        "total": len(contacts),
        "subscribed": expected.get("s#SUBSCRIBED", 0),
        "unsubscribed": expected.get("s#UNSUBSCRIBED", 0),
        "blocked": expected.get("s#BLOCKED", 0),
    }
    tag_counts = {t["name"]: t["contact_count"] for t in org.client.get("/orgs/c/tags").json()["items"]}
    assert {n: c for n, c in tag_counts.items() if c} == {k[2:]: v for k, v in expected.items() if k[:2] == "t#"}
    for tag in {t for c in contacts for t in c["tags"]}:
        assert ids(listed(org, tag=tag)) == {c["id"] for c in contacts if tag in c["tags"]}, tag
    assert ids(listed(org, q="628123")) == ids(contacts), "every contact is found by its phone"

    items = org_items(org.org_id)
    by_id = {c["id"]: c for c in contacts}
    owners = {i["pk"]: i["contact_id"] for i in items if i.get("sk") == IDENTITY_SK}
    assert owners == {
        **{identity_pk(org.org_id, "phone", c["phone"]): c["id"] for c in contacts},
        **{identity_pk(org.org_id, "email", c["email"]): c["id"] for c in contacts if c["email"]},
    }, "each identity names the contact that has it, and no other identity is left"
    found = partitions(org.org_id)
    assert set(found) == set(by_id), "no partition without its contact"
    for contact_id, stored in found.items():
        contact = contact_from_item(next(i for i in stored if i["sk"] == CONTACT_SK))
        secondary = {i["sk"]: i for i in stored if i["sk"][:2] in ("F#", "X#")}
        assert secondary == {sk: item for (_, sk), item in derived_items(contact).items()}, contact_id
    return contacts, found


# -- a worker that fails part-way and is retried --------------------------------------------------


def test_a_chunk_failing_between_create_transactions_is_retried_into_each_contact_once(stack, org, monkeypatch):
    monkeypatch.setattr("audience.imports.worker.CHUNK_ROWS", 50)  # chunks of 50, 50 and 20 rows
    rows = [person(i, tag="gold" if i % 3 == 0 else "vip") for i in range(120)]
    import_id = upload(stack, org, csv_bytes(rows))
    runs = count_chunk_runs(monkeypatch)
    at_crash: list[set[str]] = []
    crashed = crash_before_secondary_items(monkeypatch, lambda contact_id: at_crash.append(sort_keys(org, contact_id)))

    imp = run_to_end(stack, org, import_id)

    assert len(crashed) == 1
    assert at_crash == [{"#CONTACT"}], "row 30's contact was committed, its other items not yet"
    assert sorted(runs) == [0, 0, 1, 2], "chunk 0 ran again after its failure, the others once"
    assert imp["status"] == "completed"
    assert imp["progress"]["rows_total"] == 120
    assert imp["progress"]["rows_done"] == 120
    assert imp["progress"]["counts"] == {
        "created": 120,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "duplicate": 0,
        "invalid": 0,
        "conflict": 0,
        "do_not_contact": 0,
    }
    contacts, found = assert_consistent(org, {phone(i) for i in range(120)})
    assert len(contacts) == 120
    assert stored_counters(org) == {"total": 120, "s#SUBSCRIBED": 120, "t#gold": 40, "t#vip": 80}
    for contact in contacts:
        i = int(contact["email"][1:].split("@")[0])
        assert (contact["full_name"], contact["tags"]) == (f"Person {i}", ["gold" if i % 3 == 0 else "vip"])
        stored = found[contact["id"]]
        assert [(a["type"], a.get("data")) for a in entries(stored, "A#")] == [("created", {"import_id": import_id})]
        assert [(k["source"], k["opted_in"]) for k in entries(stored, "K#")] == [("import", True)]
    row_30 = next(c["id"] for c in contacts if c["phone"] == phone(30))  # created before the failure
    assert [(e["type"], e["data"]) for e in activity(org, row_30)] == [("created", {"import_id": import_id})]
    assert len(org.client.get(f"/orgs/c/contacts/{row_30}/consent").json()["items"]) == 1


def test_a_contact_edited_before_its_chunk_is_retried_keeps_only_its_own_facet_and_search_items(
    stack, org, monkeypatch
):
    from audience import container

    monkeypatch.setattr("audience.imports.worker.CHUNK_ROWS", 50)
    import_id = upload(stack, org, csv_bytes([person(i) for i in range(50)]))
    edited: list[str] = []

    def edit(contact_id: str) -> None:
        container.contact_service().update(org.org_id, contact_id, {"full_name": "Renamed", "tags": ["gold"]})
        edited.append(contact_id)

    crashed = crash_before_secondary_items(monkeypatch, edit)

    imp = run_to_end(stack, org, import_id)

    assert len(crashed) == 1
    assert imp["status"] == "completed"
    assert imp["progress"]["counts"]["created"] == 50
    contact = org.client.get(f"/orgs/c/contacts/{edited[0]}").json()
    assert (contact["full_name"], contact["tags"]) == ("Renamed", ["gold"])
    assert stored_counters(org) == {"total": 50, "s#SUBSCRIBED": 50, "t#vip": 49, "t#gold": 1}
    stored = {i["sk"] for i in partitions(org.org_id)[edited[0]]}
    assert {"F#tag#vip", "X#person 30"} & stored == set(), "no facet or search item of the name and tag it lost"
    assert_consistent(org, {phone(i) for i in range(50)})


def test_a_contact_deleted_before_its_chunk_is_retried_is_not_counted_twice(stack, org, monkeypatch):
    from audience import container

    monkeypatch.setattr("audience.imports.worker.CHUNK_ROWS", 50)
    import_id = upload(stack, org, csv_bytes([person(i) for i in range(50)]))
    deleted: list[str] = []

    def delete(contact_id: str) -> None:
        container.contact_service().delete(org.org_id, contact_id)
        deleted.append(contact_id)

    crashed = crash_before_secondary_items(monkeypatch, delete)

    imp = run_to_end(stack, org, import_id)

    assert len(crashed) == 1
    assert imp["status"] == "completed"
    progress = imp["progress"]
    assert progress["rows_done"] <= progress["rows_total"] == 50
    assert sum(progress["counts"][k] for k in ("created", "updated", "unchanged", "conflict")) == 50
    contacts, _ = assert_consistent(org, {c["phone"] for c in listed(org)})
    assert stored_counters(org)["total"] == len(contacts)


def test_an_update_chunk_failing_after_some_updates_updates_each_contact_once(stack, org, monkeypatch):
    count = 60
    created = org.client.post(
        "/orgs/c/contacts/bulk",
        json={
            "contacts": [
                {"full_name": f"Person {i}", "email": f"p{i}@example.com", "phone": phone(i)} for i in range(count)
            ]
        },
    )
    assert created.status_code == 200, created.text
    before = {c.email: c for c in contacts_repository().get_many(org.org_id, ids(listed(org))).values()}
    assert len(before) == count
    import_id = upload(stack, org, csv_bytes([person(i, tag="promo") for i in range(count)]))
    runs = count_chunk_runs(monkeypatch)
    calls: list[int] = []
    lock = threading.Lock()
    real = ContactsRepository.transact

    def transact(self: ContactsRepository, ops: list[dict[str, Any]], identity_ops: Any) -> None:
        real(self, ops, identity_ops)
        with lock:
            calls.append(len(ops))
            crash = len(calls) == 5
        if crash:  # the fifth update has committed; the worker dies before it hears so
            raise RuntimeError("the worker died")

    monkeypatch.setattr(ContactsRepository, "transact", transact)

    imp = run_to_end(stack, org, import_id)

    assert runs == [0, 0]
    assert len(calls) == count, "five updates before the failure, the other 55 after it, none twice"
    assert imp["status"] == "completed"
    counts = imp["progress"]["counts"]
    assert (counts["created"], counts["updated"], counts["unchanged"], counts["conflict"]) == (0, count, 0, 0)
    contacts, found = assert_consistent(org, {phone(i) for i in range(count)})
    assert ids(contacts) == {c.id for c in before.values()}
    assert stored_counters(org) == {"total": count, "s#SUBSCRIBED": count, "t#promo": count}
    for contact_id, stored in found.items():
        contact = contact_from_item(next(i for i in stored if i["sk"] == CONTACT_SK))
        assert contact.tags == ["promo"]
        assert contact.version == before[contact.email].version + 1, "updated once"
        assert [(a["type"], a.get("data")) for a in entries(stored, "A#")] == [
            ("created", None),
            ("updated", {"import_id": import_id}),
        ], contact.email
        consent = [(k["source"], k["opted_in"], import_id in k["proof"]) for k in entries(stored, "K#")]
        assert consent == [("import", True, True)], contact.email


def test_a_chunk_dying_before_its_ledger_is_folded_folds_it_once(stack, org, monkeypatch):
    monkeypatch.setattr("audience.imports.worker.CHUNK_ROWS", 50)
    rows = [person(i, tag="gold" if i % 4 == 0 else "vip") for i in range(120)]
    import_id = upload(stack, org, csv_bytes(rows), import_tag=True)
    runs = count_chunk_runs(monkeypatch)
    closes: list[tuple[int, bool]] = []
    lock = threading.Lock()
    real = ImportsRepository.close_ledger

    def close_ledger(self: ImportsRepository, org_id: str, import_id_: str, run_id: str, chunk: int, **kw: Any) -> bool:
        with lock:
            first = not closes
            closes.append((chunk, first))
        if first:  # every row of the chunk is written and counted in its ledger: the worker dies now
            raise RuntimeError("the worker died")
        return real(self, org_id, import_id_, run_id, chunk, **kw)

    monkeypatch.setattr(ImportsRepository, "close_ledger", close_ledger)

    imp = run_to_end(stack, org, import_id)

    failed = closes[0][0]
    assert sorted(runs) == sorted([0, 1, 2, failed])
    assert [c for c, _ in closes].count(failed) == 2
    assert imp["status"] == "completed"
    counts = imp["progress"]["counts"]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (120, 0, 0)
    import_tag = imp["mapping"]["import_tag"]
    contacts, _ = assert_consistent(org, {phone(i) for i in range(120)})
    assert len(contacts) == 120
    assert stored_counters(org) == {
        "total": 120,
        "s#SUBSCRIBED": 120,
        "t#gold": 30,
        "t#vip": 90,
        f"t#{import_tag}": 120,
    }
    ledgers = ImportsRepository(get_settings().contacts_table).ledgers(org.org_id, import_id, imp["progress"]["run_id"])
    assert [(int(ledger["n:created"]), ledger["folded"]) for ledger in ledgers] == [(50, True), (50, True), (20, True)]


# -- a chunk run twice ----------------------------------------------------------------------------


def test_running_a_chunk_again_changes_nothing(stack, org, monkeypatch):
    monkeypatch.setattr("audience.imports.worker.CHUNK_ROWS", 40)
    held = hold_runs(monkeypatch)
    import_id = upload(stack, org, csv_bytes([person(i) for i in range(100)]))
    begin(org, import_id)
    assert [(p["import_id"], p["action"]) for p in held] == [(import_id, "run")]
    run_id = held[0]["run_id"]
    tasks = worker()

    split = tasks.split(org.org_id, import_id, run_id)
    assert split == {"chunks": [{"chunk": 0}, {"chunk": 1}, {"chunk": 2}]}
    assert tasks.split(org.org_id, import_id, run_id) == split, "a retried split reuses its chunks"

    first = tasks.chunk(org.org_id, import_id, run_id, 1)
    assert first["done"] is True
    assert first["requests"]["create_transactions"] == 2  # 40 rows: 23 and 17
    contacts = listed(org)
    counters = stored_counters(org)
    assert len(contacts) == 40
    assert counters == {"total": 40, "s#SUBSCRIBED": 40, "t#vip": 40}

    assert tasks.chunk(org.org_id, import_id, run_id, 1) == {"done": True}
    assert listed(org) == contacts
    assert stored_counters(org) == counters

    # A writer that missed the fold (it read the ledger just before) finds every contact it created.
    imp = ImportsRepository(get_settings().contacts_table).get(org.org_id, import_id)
    from audience.imports.storage import chunk_key
    from audience.imports.wiring import files, writer

    records = files().chunk(chunk_key(org.org_id, import_id, run_id, 1))
    again = writer("contacts").run(imp, imp.run, 1, records)
    assert dict(again.counts) == {}
    assert set(again.requests) == {"batch_writes"}
    assert listed(org) == contacts
    assert stored_counters(org) == counters

    for number in (0, 2):
        tasks.chunk(org.org_id, import_id, run_id, number)
    assert tasks.finish(org.org_id, import_id, run_id) == {"status": "completed", "counts": {"created": 100}}
    assert tasks.finish(org.org_id, import_id, run_id) == {"status": "completed"}
    assert tasks.chunk(org.org_id, import_id, run_id, 0) == {"done": True}
    imp_out = org.client.get(f"/orgs/c/imports/{import_id}").json()
    assert imp_out["status"] == "completed"
    assert imp_out["progress"]["counts"]["created"] == 100
    assert len(assert_consistent(org, {phone(i) for i in range(100)})[0]) == 100


def test_a_chunk_still_writing_while_finish_folds_its_ledger_reaches_the_counters(stack, org, monkeypatch):
    from audience.imports.storage import chunk_key
    from audience.imports.wiring import files, writer

    held = hold_runs(monkeypatch)
    import_id = upload(stack, org, csv_bytes([person(i) for i in range(2 * CREATE_GROUP)]))
    begin(org, import_id)
    run_id = held[0]["run_id"]
    tasks = worker()
    assert tasks.split(org.org_id, import_id, run_id) == {"chunks": [{"chunk": 0}]}
    imp = ImportsRepository(get_settings().contacts_table).get(org.org_id, import_id)
    records = files().chunk(chunk_key(org.org_id, import_id, run_id, 0))
    contact_writer = writer("contacts")
    # The run failed (the Map state ended on another task's failure) and Finish runs, while this chunk's
    # Lambda, still going, has written its first create group and is about to write its second.
    assert contact_writer.run(imp, imp.run, 0, records[:CREATE_GROUP]).counts == {"created": CREATE_GROUP}
    late: list[Any] = []
    real = ImportsRepository.ledger

    def ledger(self: ImportsRepository, *args: Any) -> dict[str, Any]:
        found = real(self, *args)
        if not late:  # finish has read the ledger to fold it; the second group commits now
            late.append(contact_writer.run(imp, imp.run, 0, records[CREATE_GROUP:]))
        return found

    monkeypatch.setattr(ImportsRepository, "ledger", ledger)

    finished = tasks.finish(org.org_id, import_id, run_id, error="a task of the run failed")

    assert late[0].counts == {"created": CREATE_GROUP}
    assert finished == {"status": "failed", "counts": {"created": 2 * CREATE_GROUP}}
    contacts, _ = assert_consistent(org, {phone(i) for i in range(2 * CREATE_GROUP)})
    assert stored_counters(org)["total"] == len(contacts) == 2 * CREATE_GROUP


# -- imports racing the contacts API and each other ----------------------------------------------


def test_a_contact_created_after_the_dry_run_is_updated_by_the_import(stack, org):
    import_id = upload(stack, org, csv_bytes([person(i) for i in range(10)]))
    response = org.client.post(f"/orgs/c/imports/{import_id}/dry-run")
    assert response.status_code == 202, response.text
    stack.drain()
    dry = org.client.get(f"/orgs/c/imports/{import_id}").json()
    assert dry["status"] == "validated"
    assert dry["dry_run"]["counts"]["created"] == 10
    walk_in = org.client.post("/orgs/c/contacts", json={"full_name": "Walk In", "phone": phone(3)})
    assert walk_in.status_code == 201, walk_in.text

    imp = run_to_end(stack, org, import_id)

    assert imp["status"] == "completed"
    counts = imp["progress"]["counts"]
    assert (counts["created"], counts["updated"], counts["conflict"]) == (9, 1, 0)
    contacts, _ = assert_consistent(org, {phone(i) for i in range(10)})
    assert len(contacts) == 10
    merged = next(c for c in contacts if c["phone"] == phone(3))
    assert merged["id"] == walk_in.json()["id"]
    assert (merged["full_name"], merged["email"], merged["tags"]) == ("Person 3", "p3@example.com", ["vip"])
    assert [e["type"] for e in activity(org, merged["id"])] == ["updated", "created"]
    assert stored_counters(org) == {"total": 10, "s#SUBSCRIBED": 10, "t#vip": 10}


def test_a_contact_created_while_the_chunk_writes_turns_its_row_into_an_update(stack, org, monkeypatch):
    import_id = upload(stack, org, csv_bytes([person(i) for i in range(30)]))
    created: list[str] = []
    planned: list[int] = []
    real = ContactChunkWriter._plan

    def plan(self: ContactChunkWriter, imp: Any, run: Any, records: Any, *args: Any, **kwargs: Any) -> Any:
        decisions = real(self, imp, run, records, *args, **kwargs)
        planned.append(len(records))
        if not created:  # the row of phone(3) is about to be created: a webhook creates it first
            from audience import container

            outcome = container.contact_service().create(imp.org_id, {"full_name": "Walk In", "phone": phone(3)})
            assert outcome.contact is not None
            created.append(outcome.contact.id)
        return decisions

    monkeypatch.setattr(ContactChunkWriter, "_plan", plan)

    imp = run_to_end(stack, org, import_id)

    assert planned == [30, 1], "the create transaction lost the phone's claim: only that row was classified again"
    assert imp["status"] == "completed"
    counts = imp["progress"]["counts"]
    assert (counts["created"], counts["updated"], counts["conflict"]) == (29, 1, 0)
    contacts, _ = assert_consistent(org, {phone(i) for i in range(30)})
    assert len(contacts) == 30
    merged = next(c for c in contacts if c["phone"] == phone(3))
    assert merged["id"] == created[0]
    assert (merged["full_name"], merged["email"], merged["tags"]) == ("Person 3", "p3@example.com", ["vip"])
    assert stored_counters(org) == {"total": 30, "s#SUBSCRIBED": 30, "t#vip": 30}


def test_two_imports_of_overlapping_files_racing_make_one_contact_per_row(stack, org, monkeypatch):
    monkeypatch.setattr("audience.imports.worker.CHUNK_ROWS", 20)
    held = hold_runs(monkeypatch)
    first = upload(stack, org, csv_bytes([person(i, tag="a") for i in range(80)]))
    second = upload(stack, org, csv_bytes([person(i, tag="b") for i in range(40, 120)]))
    begin(org, first)
    begin(org, second)
    runs = {p["import_id"]: p["run_id"] for p in held}
    tasks = worker()
    chunks = {i: tasks.split(org.org_id, i, runs[i])["chunks"] for i in (first, second)}
    assert [len(c) for c in chunks.values()] == [4, 4]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(import_id: str) -> None:
        try:
            barrier.wait()
            for chunk in chunks[import_id]:
                tasks.chunk(org.org_id, import_id, runs[import_id], chunk["chunk"])
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    results = {i: tasks.finish(org.org_id, i, runs[i]) for i in (first, second)}

    assert {r["status"] for r in results.values()} == {"completed"}
    created = sum(r["counts"].get("created", 0) for r in results.values())
    updated = sum(r["counts"].get("updated", 0) for r in results.values())
    assert (created, updated) == (120, 40), results
    for result in results.values():
        assert result["counts"].get("created", 0) + result["counts"].get("updated", 0) == 80
        assert set(result["counts"]) <= {"created", "updated"}
    contacts, _ = assert_consistent(org, {phone(i) for i in range(120)})
    assert len(contacts) == 120
    assert stored_counters(org) == {"total": 120, "s#SUBSCRIBED": 120, "t#a": 80, "t#b": 80}
    for contact in contacts:
        i = int(contact["email"][1:].split("@")[0])
        assert sorted(contact["tags"]) == sorted(["a"] * (i < 80) + ["b"] * (i >= 40)), i


# -- write requests -------------------------------------------------------------------------------


def test_a_chunk_makes_the_fewest_write_requests(stack, org, monkeypatch):
    held = hold_runs(monkeypatch)
    batches: list[int] = []
    from audience.contacts import repository as contacts_module

    real = contacts_module.write_all

    def write_all(client: Any, request: dict[str, Any], attempts: int = 6) -> int:
        batches.extend(len(v) for v in request.values())
        return real(client, request, attempts)

    monkeypatch.setattr(contacts_module, "write_all", write_all)
    header = ["name", "email", "phone"]
    rows = [["Ana Lima", f"a{i}@example.com", phone(i)] for i in range(100)]
    tasks = worker()

    def run_chunk() -> tuple[dict[str, Any], dict[str, Any]]:
        import_id = upload(stack, org, csv_bytes(rows, header))
        begin(org, import_id)
        run_id = held[-1]["run_id"]
        assert tasks.split(org.org_id, import_id, run_id) == {"chunks": [{"chunk": 0}]}
        result = tasks.chunk(org.org_id, import_id, run_id, 0)
        return result, tasks.finish(org.org_id, import_id, run_id)

    result, finished = run_chunk()

    # Per contact: its status facet, six search terms (name, its two words, email, phone with and
    # without the country code), the created activity and the consent record: nine items.
    contact = contacts_repository().get_many(org.org_id, ids(listed(org))).popitem()[1]
    assert len(derived_items(contact)) == 7
    # The 900 secondary items go out in full batches: 500 once they pile up, the other 400 at the end.
    assert result["requests"] == {
        "create_transactions": math.ceil(100 / CREATE_GROUP),
        "batch_writes": math.ceil(9 * 100 / 25),
    }
    assert result["requests"] == {"create_transactions": 5, "batch_writes": 36}
    assert batches == [25] * 36
    assert finished == {"status": "completed", "counts": {"created": 100}}

    batches.clear()
    result, finished = run_chunk()

    assert result["requests"] == {}
    assert batches == []
    assert finished == {"status": "completed", "counts": {"unchanged": 100}}
    assert len(assert_consistent(org, {phone(i) for i in range(100)})[0]) == 100
