"""Contact and do-not-contact imports end to end on the local stack: the HTTP API, the import state machine
(analyse, split, chunks, finish), the contacts table, the imports bucket and the stream consumers.

Every file here is small and written the way people's tools write them (Excel's European CSV, workbooks,
archives, legacy encodings) or built to hurt (bombs, huge cells, thousands of columns)."""

from __future__ import annotations

import csv
import datetime
import io
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests

from audience.exports.csvfile import neutralise
from audience.imports import worker as worker_module
from tests.importfiles import (
    Formula,
    forged_zip,
    write_csv,
    write_xls,
    write_xlsx,
    write_zip,
    zip_bomb,
)

CONSENT = {"consent_confirmed": True}
OUTCOME_KEYS = ("created", "updated", "unchanged", "skipped", "duplicate", "invalid", "conflict", "do_not_contact")


# -- helpers --------------------------------------------------------------------------------------


def _upload(org: Any, data: bytes, file_name: str, kind: str = "contacts") -> str:
    response = org.client.post("/orgs/c/imports/file", params={"file_name": file_name, "kind": kind}, content=data)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "analysing"
    return response.json()["id"]


def _get(org: Any, import_id: str) -> dict[str, Any]:
    response = org.client.get(f"/orgs/c/imports/{import_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _analysed(stack: Any, org: Any, data: bytes, file_name: str, kind: str = "contacts") -> dict[str, Any]:
    import_id = _upload(org, data, file_name, kind)
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "analysed", imp
    return imp


def _failed(stack: Any, org: Any, data: bytes, file_name: str) -> dict[str, Any]:
    import_id = _upload(org, data, file_name)
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "failed", imp
    assert imp["columns"] == []
    assert imp["progress"] is None
    return imp


def _columns(*targets: str | tuple[str, str]) -> list[dict[str, Any]]:
    """A mapping's columns in file order: a target, or (custom_field, field name)."""
    columns = []
    for index, target in enumerate(targets):
        if isinstance(target, tuple):
            columns.append({"index": index, "target": target[0], "field": target[1]})
        else:
            columns.append({"index": index, "target": target})
    return columns


def _suggested(imp: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"index": c["index"], "target": c["target"], **({"field": c["field"]} if c["field"] else {})}
        for c in imp["columns"]
    ]


def _map(org: Any, import_id: str, columns: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    response = org.client.put(f"/orgs/c/imports/{import_id}/mapping", json={"columns": columns, **options})
    assert response.status_code == 200, response.text
    return response.json()


def _dry_run(stack: Any, org: Any, import_id: str) -> dict[str, Any]:
    response = org.client.post(f"/orgs/c/imports/{import_id}/dry-run")
    assert response.status_code == 202, response.text
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "validated", imp
    return imp


def _start(stack: Any, org: Any, import_id: str) -> dict[str, Any]:
    response = org.client.post(f"/orgs/c/imports/{import_id}/start", json=CONSENT)
    assert response.status_code == 202, response.text
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "completed", imp
    return imp


def _import(stack: Any, org: Any, data: bytes, file_name: str, **options: Any) -> dict[str, Any]:
    """Upload, analyse, map the suggested targets with `options`, import; the completed import."""
    imp = _analysed(stack, org, data, file_name)
    _map(org, imp["id"], _suggested(imp), **options)
    return _start(stack, org, imp["id"])


def _counts(imp: dict[str, Any]) -> dict[str, int]:
    """The run's counts without the zeros (as a dry run's report keeps them)."""
    assert tuple(imp["progress"]["counts"]) == OUTCOME_KEYS
    return {k: v for k, v in imp["progress"]["counts"].items() if v}


def _report(stack: Any, org: Any, imp: dict[str, Any]) -> list[list[str]]:
    """The run's error report, parsed; its key is the one `error_report_url` is signed for."""
    key = f"imports/{org.org_id}/{imp['id']}/{imp['progress']['run_id']}/errors.csv"
    assert imp["error_report_url"] is not None
    assert key in imp["error_report_url"]
    data = stack.client("s3").get_object(Bucket=stack.resources["ImportsBucket"], Key=key)["Body"].read()
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _contacts(org: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"take": 100, **({"cursor": cursor} if cursor else {})}
        page = org.client.get("/orgs/c/contacts", params=params).json()
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return found


def _by(contacts: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {c[key]: c for c in contacts if c[key]}


def _stats(org: Any) -> dict[str, int]:
    return org.client.get("/orgs/c/contacts/stats").json()


def _fields(contact: dict[str, Any]) -> dict[str, Any]:
    return {k: contact[k] for k in ("full_name", "email", "phone", "status", "tags", "custom_fields")}


def _tag_counts(org: Any) -> dict[str, int]:
    return {t["name"]: t["contact_count"] for t in org.client.get("/orgs/c/tags").json()["items"]}


def _imports(org: Any) -> list[dict[str, Any]]:
    return org.client.get("/orgs/c/imports").json()["items"]


def _import_tag(imp: dict[str, Any]) -> str:
    stem = imp["file_name"].rsplit(".", 1)[0]
    return f"Import {stem} {imp['created_at'][:16].replace('T', ' ')}"


def _csv(rows: list[list[str]], *, delimiter: str = ",") -> bytes:
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode("utf-8")


def _assert_nothing_written(org: Any) -> None:
    assert _stats(org)["total"] == 0
    assert _contacts(org) == []
    assert _tag_counts(org) == {}


# -- the full flow --------------------------------------------------------------------------------

EUROPEAN_HEADER = ["Name", "E-Mail", "Telefon", "Tags", "Notizen"]
EUROPEAN_ROWS = [
    ["José Müller", "jose@example.com", "0812 3456 7890", "vip, kunde", "erste Zeile\nzweite Zeile"],  # 2
    ["Сергей Иванов", "sergey@example.com", "+49 151 23456789", "kunde", ""],  # 3
    ["山田太郎", "", "+81 90-1234-5678", "", ""],  # 4: a phone only
    ["محمد", "mohammed@example.com", "12", "", ""],  # 5: invalid phone
    ["Zoë O'Brien", "zoe(at)example.com", "+44 20 7946 0958", "", ""],  # 6: invalid email
    ["Nguyễn Văn An", "", "", "vip", "kein\nKontakt"],  # 7: neither email nor phone
    ["José Müller", "jose@example.com", "0812 3456 7890", "vip, kunde", "erste Zeile\nzweite Zeile"],  # 8: row 2
    ["Ana Pérez", "ana@example.com", "", "", ""],  # 9: an email only
    ["Dr. John Smith, Jr.", "john@example.com", "0813 9876 5432", "", ""],  # 10
    ["Søren Kierkegaard", "soren@example.com", "0812 34", "", ""],  # 11: invalid national phone
    ["Ana P.", "ANA@Example.com", "", "", ""],  # 12: row 9's email in capitals
    ["Taro Yamada", "taro@example.com", "+81 90 1234 5678", "", ""],  # 13: row 4's phone written otherwise
]
EUROPEAN_REJECTED = {
    5: "invalid_phone",
    6: "invalid_email",
    7: "missing_identifier",
    8: "duplicate",
    11: "invalid_phone",
    12: "duplicate",
    13: "duplicate",
}


def test_a_european_excel_csv_imports_from_analysis_to_consent(stack, org, tmp_path):
    path = write_csv(tmp_path, [EUROPEAN_HEADER, *EUROPEAN_ROWS], delimiter=";", bom=True, newline="\r\n")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfName;E-Mail")
    imp = _analysed(stack, org, path.read_bytes(), "Kontakte.csv")

    assert imp["layout"] == {"format": "csv", "encoding": "utf-8-sig", "delimiter": ";", "member": None, "sheet": None}
    assert imp["has_header"] is True
    assert [(c["name"], c["target"]) for c in imp["columns"]] == [
        ("Name", "full_name"),
        ("E-Mail", "email"),
        ("Telefon", "phone"),
        ("Tags", "tag"),
        ("Notizen", "skip"),
    ]
    assert imp["columns"][0]["samples"] == ["José Müller", "Сергей Иванов", "山田太郎", "محمد", "Zoë O'Brien"]
    assert imp["columns"][4]["samples"] == ["erste Zeile\nzweite Zeile", "kein\nKontakt", "erste Zeile\nzweite Zeile"]

    mapped = _map(org, imp["id"], _suggested(imp))
    tag = _import_tag(imp)
    assert mapped["mapping"]["import_tag"] == tag
    assert mapped["mapping"]["default_country"] == "ID"

    expected = {"created": 5, "invalid": 4, "duplicate": 3}
    dry = _dry_run(stack, org, imp["id"])
    assert dry["dry_run"]["counts"] == expected
    assert _counts(dry) == expected
    assert dry["progress"]["kind"] == "dry_run"
    assert dry["progress"]["rows_total"] == 12
    assert dry["result"] is None
    samples = dry["dry_run"]["samples"]
    assert [s["row"] for s in samples["created"]] == [2, 3, 4, 9, 10]
    assert [(s["row"], s["reason"]) for s in samples["invalid"]] == [
        (5, "invalid_phone"),
        (6, "invalid_email"),
        (7, "missing_identifier"),
        (11, "invalid_phone"),
    ]
    assert [s["row"] for s in samples["duplicate"]] == [8, 12, 13]
    assert _stats(org)["total"] == 0

    done = _start(stack, org, imp["id"])
    assert done["progress"]["kind"] == "import"
    assert _counts(done) == expected == done["dry_run"]["counts"]
    assert done["progress"]["rows_total"] == 12
    assert done["progress"]["rows_done"] == 12
    assert done["result"] == "5 contacts imported"
    assert done["error"] is None

    contacts = _contacts(org)
    assert len(contacts) == 5
    assert _stats(org) == {"total": 5, "subscribed": 5, "unsubscribed": 0, "blocked": 0}
    by_name = _by(contacts, "full_name")
    assert {name: (c["email"], c["phone"], c["country"]) for name, c in by_name.items()} == {
        "José Müller": ("jose@example.com", "+6281234567890", "ID"),
        "Сергей Иванов": ("sergey@example.com", "+4915123456789", "DE"),
        "山田太郎": (None, "+819012345678", "JP"),
        "Ana Pérez": ("ana@example.com", None, None),
        "Dr. John Smith, Jr.": ("john@example.com", "+6281398765432", "ID"),
    }
    # Imported phones carry their number type, which the contact's quality scores read.
    assert by_name["山田太郎"]["quality"]["phone_type"] == "mobile"
    assert by_name["Ana Pérez"]["quality"]["phone_type"] is None
    assert sorted(by_name["José Müller"]["tags"]) == sorted([tag, "vip", "kunde"])
    assert sorted(by_name["Сергей Иванов"]["tags"]) == sorted([tag, "kunde"])
    assert by_name["Ana Pérez"]["tags"] == [tag]
    assert _tag_counts(org) == {tag: 5, "vip": 1, "kunde": 2}
    assert all(c["status"] == "SUBSCRIBED" for c in contacts)

    report = _report(stack, org, done)
    assert report[0] == ["row", "reason", "message", *EUROPEAN_HEADER]
    assert [(int(r[0]), r[1]) for r in report[1:]] == sorted(EUROPEAN_REJECTED.items())
    originals = [EUROPEAN_HEADER, *EUROPEAN_ROWS]  # row n of the file is originals[n - 1]
    for line in report[1:]:
        assert line[3:] == [neutralise(cell) for cell in originals[int(line[0]) - 1]], line
    messages = {int(r[0]): r[2] for r in report[1:]}
    assert messages[5].startswith("Telefon: ")
    assert messages[6].startswith("E-Mail: ")
    assert report[7][3:] == ["Taro Yamada", "taro@example.com", "'+81 90 1234 5678", "", ""]

    for contact in contacts:
        consent = org.client.get(f"/orgs/c/contacts/{contact['id']}/consent").json()["items"]
        assert [(c["source"], c["channel"], c["opted_in"]) for c in consent] == [("import", "all", True)]
        assert imp["id"] in consent[0]["proof"]
        assert "Kontakte.csv" in consent[0]["proof"]
        activity = org.client.get(f"/orgs/c/contacts/{contact['id']}/activity").json()["items"]
        assert [(a["type"], a["data"]) for a in activity] == [("created", {"import_id": imp["id"]})]


def test_a_dry_run_writes_nothing_and_reports_the_first_rows_of_each_kind(stack, org):
    rows = [["name", "email", "phone"]]
    rows += [[f"Valid {i}", f"valid{i}@example.com", ""] for i in range(12)]  # rows 2-13
    rows += [[f"Broken {i}", f"broken{i}", ""] for i in range(12)]  # rows 14-25
    imp = _analysed(stack, org, _csv(rows), "leads.csv")
    _map(org, imp["id"], _suggested(imp), tags=["lead"])

    dry = _dry_run(stack, org, imp["id"])
    assert dry["dry_run"]["counts"] == {"created": 12, "invalid": 12}
    samples = dry["dry_run"]["samples"]
    assert [s["row"] for s in samples["created"]] == [2, 3, 4, 5, 6]
    assert samples["created"][0] == {"row": 2, "full_name": "Valid 0", "email": "valid0@example.com"}
    assert [s["row"] for s in samples["invalid"]] == list(range(14, 24))
    assert {s["reason"] for s in samples["invalid"]} == {"invalid_email"}
    assert dry["error_report_url"] is not None  # the dry run's rejected rows can be downloaded too
    assert len(_report(stack, org, dry)) == 13

    _assert_nothing_written(org)
    items = stack.client("dynamodb").scan(TableName=stack.resources["ContactsTable"])["Items"]
    # Only the import's own record and its run's report items mention the rows.
    assert not [i for i in items if "valid0@example.com" in repr(i) and "#IMPORT" not in i["pk"]["S"]]

    # A dry run can be repeated and the mapping changed after it (the report is then dropped).
    assert _dry_run(stack, org, imp["id"])["dry_run"]["counts"] == {"created": 12, "invalid": 12}
    remapped = _map(org, imp["id"], _columns("full_name", "email", "skip"))
    assert remapped["status"] == "analysed"
    assert remapped["dry_run"] is None
    _assert_nothing_written(org)


# -- existing contacts ----------------------------------------------------------------------------


def _existing(org: Any) -> dict[str, dict[str, Any]]:
    """Five contacts: A named, with a custom field; B unsubscribed; C whose phone is on the do-not-contact
    list; D that the file repeats as it is; F whose email the file gives with A's phone."""
    assert org.client.post("/orgs/c/contacts/fields", json={"name": "city", "type": "string"}).status_code == 201
    made = {}
    for key, body in {
        "A": {
            "full_name": "Old Name",
            "email": "a@example.com",
            "phone": "0812 1111 2222",
            "tags": ["old"],
            "custom_fields": {"city": "Jakarta"},
        },
        "B": {"full_name": "Bee", "email": "b@example.com"},
        "C": {"full_name": "Cee", "phone": "0812 3333 4444"},
        "D": {"full_name": "Dee", "email": "d@example.com"},
        "F": {"full_name": "Eff", "email": "f@example.com"},
    }.items():
        response = org.client.post("/orgs/c/contacts", json=body)
        assert response.status_code == 201, response.text
        made[key] = response.json()
    assert org.client.patch(f"/orgs/c/contacts/{made['B']['id']}", json={"status": "UNSUBSCRIBED"}).status_code == 200
    dnc = org.client.post("/orgs/c/do-not-contact", json={"identifier": "+6281233334444"})
    assert dnc.status_code == 201, dnc.text
    return made


EXISTING_FILE = [
    ["name", "email", "phone", "city"],
    ["New Name", "a@example.com", "", ""],  # A: a new name; phone and city stay
    ["", "b@example.com", "0812 5555 6666", ""],  # B: gains a phone; name and status stay
    ["", "c@example.com", "0812 3333 4444", ""],  # C: gains an email; on the do-not-contact list
    ["Dee", "d@example.com", "", ""],  # D: as it is
    ["Eve", "e@example.com", "", "Bandung"],  # new
    ["", "f@example.com", "0812 1111 2222", ""],  # F's email with A's phone: a conflict
]
EXISTING_COLUMNS = _columns("full_name", "email", "phone", ("custom_field", "city"))


def test_existing_contacts_are_skipped_or_updated_with_non_empty_cells_only(stack, org):
    made = _existing(org)
    data = _csv(EXISTING_FILE)
    unsubscribed_consent = org.client.get(f"/orgs/c/contacts/{made['B']['id']}/consent").json()["items"]

    # existing: skip leaves them as they are.
    skip = _analysed(stack, org, data, "existing.csv")
    _map(org, skip["id"], EXISTING_COLUMNS, existing="skip", import_tag=False)
    expected = {"created": 1, "skipped": 4, "conflict": 1, "do_not_contact": 1}
    assert _dry_run(stack, org, skip["id"])["dry_run"]["counts"] == expected
    assert _stats(org)["total"] == 5
    skipped = _start(stack, org, skip["id"])
    assert _counts(skipped) == expected
    assert skipped["result"] == "1 contact imported"
    conflict = _report(stack, org, skipped)[1]
    assert conflict[:2] == ["7", "conflict"]
    assert made["A"]["id"] in conflict[2]
    assert made["F"]["id"] in conflict[2]
    assert conflict[3:] == ["", "f@example.com", "0812 1111 2222", ""]
    before = {key: _fields(org.client.get(f"/orgs/c/contacts/{made[key]['id']}").json()) for key in "ABCDF"}
    assert before == {
        key: _fields({**made[key], **({"status": "UNSUBSCRIBED"} if key == "B" else {})}) for key in "ABCDF"
    }
    assert _stats(org) == {"total": 6, "subscribed": 5, "unsubscribed": 1, "blocked": 0}

    # existing: update fills in and overwrites what the file has, never clears.
    update = _analysed(stack, org, data, "existing.csv")
    _map(org, update["id"], EXISTING_COLUMNS, existing="update", import_tag=False)
    expected = {"updated": 3, "unchanged": 2, "conflict": 1, "do_not_contact": 1}
    dry = _dry_run(stack, org, update["id"])
    assert dry["dry_run"]["counts"] == expected
    assert {s["row"]: s["contact_id"] for s in dry["dry_run"]["samples"]["updated"]} == {
        2: made["A"]["id"],
        3: made["B"]["id"],
        4: made["C"]["id"],
    }
    assert org.client.get(f"/orgs/c/contacts/{made['A']['id']}").json()["full_name"] == "Old Name"
    updated = _start(stack, org, update["id"])
    assert _counts(updated) == expected
    assert updated["result"] == "5 contacts imported"

    a, b, c, d = (org.client.get(f"/orgs/c/contacts/{made[k]['id']}").json() for k in "ABCD")
    assert (a["full_name"], a["email"], a["phone"], a["tags"], a["custom_fields"]) == (
        "New Name",
        "a@example.com",
        "+6281211112222",
        ["old"],
        {"city": "Jakarta"},
    )
    assert (b["full_name"], b["phone"], b["status"]) == ("Bee", "+6281255556666", "UNSUBSCRIBED")
    assert b["quality"]["phone_type"] == "mobile"  # a phone an import adds to a contact
    assert (c["full_name"], c["email"], c["phone"], c["status"]) == (
        "Cee",
        "c@example.com",
        "+6281233334444",
        "SUBSCRIBED",
    )
    assert _fields(d) == before["D"]
    assert d["updated_at"] == made["D"]["updated_at"]
    assert _fields(org.client.get(f"/orgs/c/contacts/{made['F']['id']}").json()) == before["F"]
    assert _stats(org) == {"total": 6, "subscribed": 5, "unsubscribed": 1, "blocked": 0}
    assert _tag_counts(org) == {"old": 1}

    entries = org.client.get("/orgs/c/do-not-contact").json()["items"]
    assert [e["identifier"] for e in entries] == ["+6281233334444"]
    # The unsubscribed contact got no opt-in from the import.
    assert org.client.get(f"/orgs/c/contacts/{made['B']['id']}/consent").json()["items"] == unsubscribed_consent
    activity = org.client.get(f"/orgs/c/contacts/{made['A']['id']}/activity").json()["items"]
    assert any(a["type"] == "updated" and a["data"].get("import_id") == update["id"] for a in activity)


# -- running again --------------------------------------------------------------------------------


def test_the_same_file_imported_twice_creates_nothing_the_second_time(stack, org):
    rows = [["name", "email", "phone", "tags"]]
    rows += [[f"Person {i}", f"p{i}@example.com", f"0812 7000 {i:04d}", "vip"] for i in range(6)]
    data = _csv(rows)

    first = _import(stack, org, data, "people.csv", import_tag=False)
    assert _counts(first) == {"created": 6}
    ids = sorted(c["id"] for c in _contacts(org))
    assert _stats(org)["total"] == 6
    assert _tag_counts(org) == {"vip": 6}

    second = _import(stack, org, data, "people.csv", import_tag=False)
    assert _counts(second) == {"unchanged": 6}
    assert second["result"] == "6 contacts imported"
    assert sorted(c["id"] for c in _contacts(org)) == ids
    assert _stats(org) == {"total": 6, "subscribed": 6, "unsubscribed": 0, "blocked": 0}
    assert _tag_counts(org) == {"vip": 6}

    # A completed import cannot run again; the import is unchanged by the attempt.
    for action, body in (("start", CONSENT), ("dry-run", None)):
        again = org.client.post(f"/orgs/c/imports/{first['id']}/{action}", json=body)
        assert again.status_code == 409, again.text
        assert "completed" in again.json()["error"]["message"]
    assert _get(org, first["id"])["progress"]["run_id"] == first["progress"]["run_id"]
    stack.drain()
    assert _stats(org)["total"] == 6


# -- segment and tags -----------------------------------------------------------------------------


def _segment_refusals(org: Any, imp: dict[str, Any]) -> list[Any]:
    """The answers to mappings naming a dynamic segment and an unknown one."""
    rules = {"match": "any", "rules": [{"attribute": "email", "operator": "ends_with", "value": "@example.com"}]}
    dynamic = org.client.post("/orgs/c/segments", json={"name": "Dyn", "type": "dynamic", "rules": rules})
    assert dynamic.status_code == 201, dynamic.text
    return [
        org.client.put(f"/orgs/c/imports/{imp['id']}/mapping", json={"columns": _suggested(imp), "segment_id": s})
        for s in (dynamic.json()["id"], "sg_nope")
    ]


def test_every_imported_contact_joins_the_static_segment_with_the_tags(stack, org):
    segment = org.client.post("/orgs/c/segments", json={"name": "Fair 2026", "type": "static"}).json()
    known = org.client.post("/orgs/c/contacts", json={"email": "known@example.com", "tags": ["old"]}).json()
    rows = [["name", "email"], ["Known", "known@example.com"]]
    rows += [[f"Visitor {i}", f"visitor{i}@example.com"] for i in range(5)]
    rows += [["Nobody", "nobody"]]
    imp = _analysed(stack, org, _csv(rows), "fair.csv")

    for refused in _segment_refusals(org, imp):
        assert refused.status_code == 422, refused.text
        assert "static segment" in refused.json()["error"]["message"]
    assert _get(org, imp["id"])["mapping"] is None

    _map(org, imp["id"], _suggested(imp), segment_id=segment["id"], tags=["fair-2026", "lead"], import_tag=False)
    assert _dry_run(stack, org, imp["id"])["dry_run"]["counts"] == {"created": 5, "updated": 1, "invalid": 1}
    assert org.client.get(f"/orgs/c/segments/{segment['id']}").json()["contact_count"] == 0
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 5, "updated": 1, "invalid": 1}

    contacts = _contacts(org)
    assert len(contacts) == 6
    assert org.client.get(f"/orgs/c/segments/{segment['id']}").json()["contact_count"] == 6
    members = org.client.get(f"/orgs/c/segments/{segment['id']}/contacts", params={"take": 100})
    assert members.headers["x-total-count"] == "6"
    assert sorted(m["id"] for m in members.json()["items"]) == sorted(c["id"] for c in contacts)
    for contact in contacts:
        expected = ["old", "fair-2026", "lead"] if contact["id"] == known["id"] else ["fair-2026", "lead"]
        assert sorted(contact["tags"]) == sorted(expected), contact
    assert _tag_counts(org) == {"old": 1, "fair-2026": 6, "lead": 6}
    listed = org.client.get("/orgs/c/contacts", params={"tag": "lead"})
    assert listed.headers["x-total-count"] == "6"


def test_a_segment_the_mapping_cannot_use_is_reported_on_segment_id(stack, org):
    imp = _analysed(stack, org, _csv([["email"], ["ana@example.com"]]), "a.csv")
    for refused in _segment_refusals(org, imp):
        assert refused.status_code == 422
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["segment_id"]


# -- formats --------------------------------------------------------------------------------------

FORMAT_ROWS = [
    ["name", "email", "phone"],
    ["José Müller", "jose@example.com", "+62 812-3456-7890"],
    ["Zoë Ærø", "zoe@example.com", "0813 9876 5432"],
    ["Ñandú García", "nandu@example.com", ""],
]
FORMAT_CONTACTS = {
    "José Müller": ("jose@example.com", "+6281234567890"),
    "Zoë Ærø": ("zoe@example.com", "+6281398765432"),
    "Ñandú García": ("nandu@example.com", None),
}


def _imported_people(org: Any) -> dict[str, tuple[str | None, str | None]]:
    return {c["full_name"]: (c["email"], c["phone"]) for c in _contacts(org)}


def test_xlsx_numbers_dates_and_formulas_import_as_people_see_them(stack, org, tmp_path):
    for name, type_ in (("member_id", "string"), ("score", "number"), ("joined", "date")):
        assert org.client.post("/orgs/c/contacts/fields", json={"name": name, "type": type_}).status_code == 201
    rows = [
        ["Name", "Email", "Phone", "member_id", "score", "joined"],
        ["Ana", "ana@example.com", 6281234567890, 1001, 3.5, datetime.date(2024, 5, 17)],
        [
            Formula('CONCAT("Budi"," ","Santoso")', "Budi Santoso"),
            "budi@example.com",
            6281398765432,
            Formula("1000+2", 1002.0),
            7,
            "",
        ],
        ["Citra", Formula('LOWER("CITRA@EXAMPLE.COM")', "citra@example.com"), "", "A-7", -2, datetime.date(2023, 1, 2)],
    ]
    imp = _analysed(stack, org, write_xlsx(tmp_path, rows).read_bytes(), "contacts.xlsx")
    assert imp["layout"] == {"format": "xlsx", "encoding": None, "delimiter": None, "member": None, "sheet": "Contacts"}
    assert imp["columns"][2]["samples"] == ["6281234567890", "6281398765432"]
    assert imp["columns"][3]["samples"] == ["1001", "1002", "A-7"]
    assert [(c["target"], c["field"]) for c in imp["columns"]] == [
        ("full_name", None),
        ("email", None),
        ("phone", None),
        ("custom_field", "member_id"),
        ("custom_field", "score"),
        ("custom_field", "joined"),
    ]
    _map(org, imp["id"], _suggested(imp))
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 3}
    people = _by(_contacts(org), "full_name")
    assert {n: (c["email"], c["phone"], c["custom_fields"]) for n, c in people.items()} == {
        "Ana": ("ana@example.com", "+6281234567890", {"member_id": "1001", "score": 3.5, "joined": "2024-05-17"}),
        "Budi Santoso": ("budi@example.com", "+6281398765432", {"member_id": "1002", "score": 7}),
        "Citra": ("citra@example.com", None, {"member_id": "A-7", "score": -2, "joined": "2023-01-02"}),
    }


def _utf16_tsv(tmp_path: Path) -> bytes:
    return write_csv(tmp_path, FORMAT_ROWS, name="contacts.tsv", delimiter="\t", encoding="utf-16").read_bytes()


def _cp1252_csv(tmp_path: Path) -> bytes:
    return write_csv(tmp_path, FORMAT_ROWS, name="contacts.csv", encoding="cp1252").read_bytes()


def _xls(tmp_path: Path) -> bytes:
    return write_xls(tmp_path, FORMAT_ROWS).read_bytes()


def _zipped_csv(tmp_path: Path) -> bytes:
    members = {
        "__MACOSX/._contacts.csv": b"\x00\x05\x16\x07",
        "export/contacts.csv": _csv(FORMAT_ROWS),
    }
    return write_zip(tmp_path, members).read_bytes()


@pytest.mark.parametrize(
    ("make", "file_name", "layout"),
    [
        (
            _xls,
            "contacts.xls",
            {"format": "xls", "encoding": None, "delimiter": None, "member": None, "sheet": "Contacts"},
        ),
        (
            _zipped_csv,
            "contacts.zip",
            {"format": "csv", "encoding": "utf-8", "delimiter": ",", "member": "export/contacts.csv", "sheet": None},
        ),
        (
            _utf16_tsv,
            "contacts.tsv",
            {"format": "tsv", "encoding": "utf-16", "delimiter": "\t", "member": None, "sheet": None},
        ),
        (
            _cp1252_csv,
            "contacts.csv",
            {"format": "csv", "encoding": "cp1252", "delimiter": ",", "member": None, "sheet": None},
        ),
    ],
    ids=["xls", "zip", "utf16-tsv", "cp1252"],
)
def test_other_formats_import_the_same_contacts(stack, org, tmp_path, make, file_name, layout):
    imp = _analysed(stack, org, make(tmp_path), file_name)
    assert imp["layout"] == layout
    assert [c["target"] for c in imp["columns"]] == ["full_name", "email", "phone"]
    _map(org, imp["id"], _suggested(imp))
    assert _counts(_start(stack, org, imp["id"])) == {"created": 3}
    assert _imported_people(org) == FORMAT_CONTACTS


# -- bad files ------------------------------------------------------------------------------------


def _still_works(stack: Any, org: Any) -> None:
    """A good file imports after the bad ones."""
    done = _import(stack, org, _csv([["email"], ["after@example.com"]]), "after.csv", import_tag=False)
    assert _counts(done) == {"created": 1}
    assert [c["email"] for c in _contacts(org)] == ["after@example.com"]


@pytest.mark.corpus
def test_files_refused_at_upload_create_no_import(stack, org):
    empty = org.client.post("/orgs/c/imports/file", params={"file_name": "empty.csv"}, content=b"")
    assert empty.status_code == 422, empty.text
    assert "empty" in empty.json()["error"]["message"]

    too_big = org.client.post(
        "/orgs/c/imports/file", params={"file_name": "big.csv"}, content=b"email\r\n" + b"x" * (5 * 1024 * 1024)
    )
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["error"]["code"] == "payload_too_large"

    huge = org.client.post("/orgs/c/imports", json={"file_name": "huge.csv", "size": (1 << 30) + 1})
    assert huge.status_code == 413, huge.text
    for body in (
        {"file_name": "photo.png", "size": 10},
        {"file_name": "x.csv", "size": 0},
        {"file_name": "x.csv", "kind": "spam"},
    ):
        assert org.client.post("/orgs/c/imports", json=body).status_code == 422, body
    wrong_name = org.client.post("/orgs/c/imports/file", params={"file_name": "photo.png"}, content=b"a")
    assert wrong_name.status_code == 422

    assert _imports(org) == []
    assert list(stack.client("s3").list_objects_v2(Bucket=stack.resources["ImportsBucket"]).get("Contents", [])) == []
    _still_works(stack, org)


@pytest.mark.corpus
def test_unreadable_files_fail_their_analysis_with_a_clear_error(stack, org, tmp_path):
    header_only = _failed(stack, org, b"name,email,phone\r\n", "header.csv")
    assert "header" in header_only["error"]

    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    png += zlib.compress(bytes(256))
    assert "not a CSV, TSV, TXT, XLSX, XLS or ODS file" in _failed(stack, org, png, "contacts.csv")["error"]

    entity_bomb = write_xlsx(tmp_path, [["name", "email"], ["Ana", "ana@example.com"]], entity_bomb=True)
    assert "XML entities" in _failed(stack, org, entity_bomb.read_bytes(), "contacts.xlsx")["error"]

    wide = ",".join(f"c{i}" for i in range(10_000)) + "\r\n" + ",".join("x" for _ in range(10_000)) + "\r\n"
    assert "10,000 columns" in _failed(stack, org, wide.encode(), "wide.csv")["error"]

    bomb = zip_bomb(tmp_path, inflated_bytes=60 << 20)
    assert bomb.stat().st_size < 1 << 20
    assert "The ZIP file cannot be imported" in _failed(stack, org, bomb.read_bytes(), "bomb.zip")["error"]
    forged = forged_zip(tmp_path)
    assert "unpacks to 2 GiB" in _failed(stack, org, forged.read_bytes(), "forged.zip")["error"]

    # A failed analysis cannot be mapped or run.
    failed_id = header_only["id"]
    refused = org.client.put(f"/orgs/c/imports/{failed_id}/mapping", json={"columns": _columns("full_name", "email")})
    assert refused.status_code == 409
    assert org.client.post(f"/orgs/c/imports/{failed_id}/dry-run").status_code == 409

    _assert_nothing_written(org)
    _still_works(stack, org)


@pytest.mark.corpus
def test_a_zip_bomb_past_a_small_unpack_limit(stack, org, tmp_path, monkeypatch):
    from audience.imports import files

    monkeypatch.setattr(files, "MAX_UNPACKED_BYTES", 1 << 20)
    bomb = zip_bomb(tmp_path, inflated_bytes=4 << 20)
    imp = _failed(stack, org, bomb.read_bytes(), "bomb.zip")
    assert "The ZIP file cannot be imported: it unpacks to 4 MiB, over the 1 MiB limit" in imp["error"]
    _assert_nothing_written(org)


@pytest.mark.corpus
def test_the_encoding_given_to_the_analysis_must_be_a_known_one(stack, org):
    data = "name;email\r\nJosé;jose@example.com\r\n".encode("cp1252")
    imp = _analysed(stack, org, data, "latin.csv")
    assert imp["layout"]["encoding"] == "cp1252"
    for encoding in ("rot13", "base64", "utf-7", "x" * 20):
        refused = org.client.post(f"/orgs/c/imports/{imp['id']}/analyse", json={"encoding": encoding})
        assert refused.status_code == 422, (encoding, refused.text)
        assert refused.json()["error"]["fields"][0]["field"].endswith("encoding")
    assert _get(org, imp["id"])["status"] == "analysed"

    # An allowed one, and a delimiter, are used instead of detection.
    again = org.client.post(f"/orgs/c/imports/{imp['id']}/analyse", json={"encoding": "latin-1", "delimiter": ";"})
    assert again.status_code == 202, again.text
    stack.drain()
    reread = _get(org, imp["id"])
    assert reread["status"] == "analysed"
    assert (reread["layout"]["encoding"], reread["layout"]["delimiter"]) == ("iso8859-1", ";")
    assert reread["columns"][0]["samples"] == ["José"]
    assert org.client.post(f"/orgs/c/imports/{imp['id']}/analyse", json={"delimiter": ":"}).status_code == 422


@pytest.mark.corpus
def test_a_huge_cell_rejects_its_row_and_the_others_import(stack, org):
    rows = [
        ["name", "email"],
        ["Ana", "ana@example.com"],
        ["x" * 1_000_000, "big@example.com"],
        ["Budi", "budi@example.com"],
    ]
    data = _csv(rows)
    assert len(data) > 1_000_000
    imp = _analysed(stack, org, data, "big.csv")
    _map(org, imp["id"], _suggested(imp))
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 2, "invalid": 1}
    assert sorted(c["email"] for c in _contacts(org)) == ["ana@example.com", "budi@example.com"]
    report = _report(stack, org, done)
    assert [(r[0], r[1]) for r in report[1:]] == [("3", "cell_too_long")]
    assert report[1][3] == "x" * 1_000_000
    assert report[1][4] == "big@example.com"


@pytest.mark.corpus
def test_formulas_are_stored_as_typed_and_neutralised_in_files_people_open(stack, org):
    rows = [
        ["name", "email"],
        ['=HYPERLINK("x")', "formula@example.com"],
        ['=HYPERLINK("y")', "not-an-email"],
        ["'=SUM(1)", "quoted@example.com"],  # as this project's own exports write a formula
        ["@cmd", "at@example.com"],
    ]
    imp = _analysed(stack, org, _csv(rows), "formulas.csv")
    assert imp["columns"][0]["samples"] == ['=HYPERLINK("x")', '=HYPERLINK("y")', "=SUM(1)", "@cmd"]
    _map(org, imp["id"], _suggested(imp), import_tag=False)
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 3, "invalid": 1}
    assert {c["email"]: c["full_name"] for c in _contacts(org)} == {
        "formula@example.com": '=HYPERLINK("x")',
        "quoted@example.com": "=SUM(1)",
        "at@example.com": "@cmd",
    }
    report = _report(stack, org, done)
    assert report[1][:2] == ["3", "invalid_email"]
    assert report[1][3:] == ['\'=HYPERLINK("y")', "not-an-email"]

    requested = org.client.post("/orgs/c/exports", json={"kind": "contacts"})
    assert requested.status_code == 202, requested.text
    stack.drain()
    export = org.client.get(requested.headers["Location"]).json()
    assert export["status"] == "done", export
    key = f"exports/{org.org_id}/{export['id']}.csv"
    data = stack.client("s3").get_object(Bucket=stack.resources["ExportsBucket"], Key=key)["Body"].read()
    cells = {cell for row in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")) for cell in row}
    assert {'\'=HYPERLINK("x")', "'=SUM(1)", "'@cmd"} <= cells
    assert not [cell for cell in cells if cell.startswith(("=", "@"))]


LONG_ROW = ["smith@example.com", "Smith", "John"]  # "Smith, John" left unquoted: one cell more than the header


@pytest.mark.corpus
def test_rows_longer_than_the_header_are_rejected(stack, org):
    rows = [["email", "name"]]
    rows += [[f"p{i}@example.com", f"P{i}"] for i in range(25)]  # rows 2-26
    rows += [LONG_ROW]  # row 27
    rows += [["trailing@example.com", "Trailing", "", ""]]  # row 28: only empty cells past the header
    imp = _analysed(stack, org, _csv(rows), "long.csv")
    assert [c["name"] for c in imp["columns"]] == ["email", "name"]
    _map(org, imp["id"], _suggested(imp), import_tag=False)
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 26, "invalid": 1}
    report = _report(stack, org, done)
    assert [(r[0], r[1]) for r in report[1:]] == [("27", "too_many_cells")]
    assert report[1][3:] == LONG_ROW
    assert "smith@example.com" not in {c["email"] for c in _contacts(org)}


@pytest.mark.corpus
def test_a_long_row_among_the_first_rows_is_rejected_too(stack, org):
    rows = [["email", "name"], ["ana@example.com", "Ana"], LONG_ROW, ["bo@example.com", "Bo"]]
    imp = _analysed(stack, org, _csv(rows), "long.csv")
    _map(org, imp["id"], _columns("email", "full_name"), import_tag=False)
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 2, "invalid": 1}
    assert [(r[0], r[1]) for r in _report(stack, org, done)[1:]] == [("3", "too_many_cells")]


@pytest.mark.corpus
def test_mappings_and_starts_that_cannot_work_are_refused(stack, org):
    imp = _analysed(stack, org, _csv([["name", "email", "plan"], ["Ana", "ana@example.com", "gold"]]), "a.csv")
    import_id = imp["id"]

    early = org.client.post(f"/orgs/c/imports/{import_id}/dry-run")
    assert early.status_code == 409
    assert "mapping" in early.json()["error"]["message"]
    assert org.client.post(f"/orgs/c/imports/{import_id}/start", json=CONSENT).status_code == 409

    no_identity = org.client.put(
        f"/orgs/c/imports/{import_id}/mapping", json={"columns": _columns("full_name", "skip")}
    )
    assert no_identity.status_code == 422
    assert no_identity.json()["error"]["fields"][0]["field"] == "columns"
    assert "email or phone" in no_identity.json()["error"]["fields"][0]["message"]

    unknown_field = org.client.put(
        f"/orgs/c/imports/{import_id}/mapping",
        json={"columns": _columns("full_name", "email", ("custom_field", "plan"))},
    )
    assert unknown_field.status_code == 422
    assert unknown_field.json()["error"]["fields"][0]["field"] == "columns[2].field"

    for columns in (
        [{"index": 3, "target": "email"}],
        [{"index": 1, "target": "email"}, {"index": 1, "target": "phone"}],
        [{"index": 0, "target": "email"}, {"index": 1, "target": "email"}],
        [{"index": 1, "target": "identifier"}],
    ):
        assert org.client.put(f"/orgs/c/imports/{import_id}/mapping", json={"columns": columns}).status_code == 422
    bad_country = org.client.put(
        f"/orgs/c/imports/{import_id}/mapping",
        json={"columns": _columns("full_name", "email"), "default_country": "X1"},
    )
    assert bad_country.status_code == 422
    assert _get(org, import_id)["mapping"] is None

    _map(org, import_id, _columns("full_name", "email"))
    for body in ({"consent_confirmed": False}, {}, {"consent_confirmed": None}):
        refused = org.client.post(f"/orgs/c/imports/{import_id}/start", json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert _get(org, import_id)["status"] == "analysed"
    stack.drain()
    _assert_nothing_written(org)
    assert _counts(_start(stack, org, import_id)) == {"created": 1}


def test_the_sample_file_imports_as_suggested_and_stays_in_its_org(stack, org, other_org):
    sample = org.client.get("/orgs/c/imports/sample.csv")
    assert sample.status_code == 200
    assert sample.headers["content-type"] == "text/csv; charset=utf-8"
    imp = _analysed(stack, org, sample.content, "audience-sample.csv")
    assert [(c["name"], c["target"]) for c in imp["columns"]] == [
        ("First Name", "first_name"),
        ("Last Name", "last_name"),
        ("Email", "email"),
        ("Phone", "phone"),
        ("Tags", "tag"),
        ("City", "skip"),
    ]
    _map(org, imp["id"], _suggested(imp), import_tag=False)
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 3}
    people = {(c["first_name"], c["last_name"]): (c["email"], c["phone"], sorted(c["tags"])) for c in _contacts(org)}
    assert people == {
        ("Sari", "Wijaya"): ("sari@example.com", "+6281234567890", ["newsletter", "vip"]),
        ("José", "Müller"): ("jose.muller@example.com", "+4915123456789", ["newsletter"]),
        ("Aiko", "Tanaka"): (None, "+819012345678", []),
    }

    assert other_org.client.get(f"/orgs/c/imports/{imp['id']}").status_code == 404
    for action in ("dry-run", "cancel", "analyse"):
        assert other_org.client.post(f"/orgs/c/imports/{imp['id']}/{action}").status_code == 404
    assert other_org.client.get("/orgs/c/imports").json()["items"] == []
    assert _contacts(other_org) == []
    assert [i["id"] for i in _imports(org)] == [imp["id"]]


def test_title_rows_are_skipped_and_files_without_a_header_are_read_from_row_one(stack, org):
    titled = _csv([["Exported from CRM, 2026-11-01"], ["name", "email"], ["Ana", "ana@example.com"], ["Bo", "bo@"]])
    imp = _analysed(stack, org, titled, "crm.csv")
    assert [c["name"] for c in imp["columns"]] == ["Exported from CRM, 2026-11-01", "Column 2"]
    again = org.client.post(f"/orgs/c/imports/{imp['id']}/analyse", json={"skip_rows": 1})
    assert again.status_code == 202, again.text
    stack.drain()
    imp = _get(org, imp["id"])
    assert (imp["status"], imp["skip_rows"], imp["has_header"]) == ("analysed", 1, True)
    assert [(c["name"], c["target"]) for c in imp["columns"]] == [("name", "full_name"), ("email", "email")]
    _map(org, imp["id"], _suggested(imp), import_tag=False)
    done = _start(stack, org, imp["id"])
    assert _counts(done) == {"created": 1, "invalid": 1}
    assert [(r[0], r[1]) for r in _report(stack, org, done)[1:]] == [("4", "invalid_email")]

    bare = _analysed(stack, org, _csv([["Cy", "cy@example.com"], ["Di", "not-an-email"]]), "bare.csv")
    assert bare["has_header"] is False
    assert [(c["name"], c["samples"]) for c in bare["columns"]] == [
        ("Column 1", ["Cy", "Di"]),
        ("Column 2", ["cy@example.com", "not-an-email"]),
    ]
    _map(org, bare["id"], _columns("full_name", "email"), import_tag=False)
    done = _start(stack, org, bare["id"])
    assert _counts(done) == {"created": 1, "invalid": 1}
    assert [(r[0], r[1]) for r in _report(stack, org, done)[1:]] == [("2", "invalid_email")]
    assert sorted(c["full_name"] for c in _contacts(org)) == ["Ana", "Cy"]


# -- cancel ---------------------------------------------------------------------------------------


def test_a_cancelled_import_stops_between_chunks_and_counts_what_it_wrote(stack, org, monkeypatch):
    monkeypatch.setattr(worker_module, "CHUNK_ROWS", 5)
    held = threading.Event()
    original = worker_module.ImportWorker.chunk

    def chunk(self: Any, org_id: str, import_id: str, run_id: str, number: int) -> dict[str, Any]:
        if number > 0:
            assert held.wait(60), "the test never let the chunk go"
        return original(self, org_id, import_id, run_id, number)

    monkeypatch.setattr(worker_module.ImportWorker, "chunk", chunk)
    rows = [["name", "email"]] + [[f"Person {i}", f"p{i}@example.com"] for i in range(15)]
    imp = _analysed(stack, org, _csv(rows), "people.csv")
    _map(org, imp["id"], _suggested(imp))
    started = org.client.post(f"/orgs/c/imports/{imp['id']}/start", json=CONSENT)
    assert started.status_code == 202
    assert started.json()["status"] == "importing"

    deadline = time.monotonic() + 30
    while (progress := _get(org, imp["id"])["progress"])["rows_done"] < 5:
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert progress["rows_total"] == 15
    assert progress["counts"]["created"] == 5
    cancelling = org.client.post(f"/orgs/c/imports/{imp['id']}/cancel")
    assert cancelling.status_code == 202
    assert cancelling.json()["status"] == "cancelling"
    assert org.client.post(f"/orgs/c/imports/{imp['id']}/cancel").json()["status"] == "cancelling"
    held.set()
    stack.drain()

    cancelled = _get(org, imp["id"])
    assert cancelled["status"] == "cancelled"
    assert _counts(cancelled) == {"created": 5}
    assert cancelled["result"] == "5 contacts imported"
    contacts = _contacts(org)
    assert sorted(c["email"] for c in contacts) == [f"p{i}@example.com" for i in range(5)]
    assert _stats(org)["total"] == 5
    assert _tag_counts(org) == {_import_tag(imp): 5}
    assert org.client.post(f"/orgs/c/imports/{imp['id']}/cancel").status_code == 409

    # A cancelled import can run again: the rest is created, what was written is left as it is.
    resumed = _start(stack, org, imp["id"])
    assert _counts(resumed) == {"created": 10, "unchanged": 5}
    assert len(_contacts(org)) == 15
    assert _stats(org)["total"] == 15
    assert _tag_counts(org) == {_import_tag(imp): 15}


# -- do-not-contact imports -----------------------------------------------------------------------


def test_a_do_not_contact_import_adds_entries_once(stack, org):
    rows = [
        ["Identifier", "Channel", "Reason"],
        ["0812 9999 8888", "", ""],
        ["+44 20 7946 0958", "whatsapp", ""],
        ["Stop@Example.com", "email", ""],
        ["12", "", ""],
        ["0812-9999-8888", "", ""],  # row 2 again
    ]
    data = _csv(rows)
    imp = _analysed(stack, org, data, "blocklist.csv", kind="do_not_contact")
    assert imp["kind"] == "do_not_contact"
    assert [c["target"] for c in imp["columns"]] == ["identifier", "channel", "source"]
    columns = _columns("identifier", "channel", "skip")
    _map(org, imp["id"], columns)
    assert _get(org, imp["id"])["mapping"]["import_tag"] is None
    assert _dry_run(stack, org, imp["id"])["dry_run"]["counts"] == {"created": 3, "invalid": 1, "duplicate": 1}
    assert org.client.get("/orgs/c/do-not-contact").json()["items"] == []

    done = _start(stack, org, imp["id"])
    assert done["progress"]["rows_total"] == 5
    entries = org.client.get("/orgs/c/do-not-contact").json()["items"]
    assert sorted((e["identifier"], e["channel"], e["source"]) for e in entries) == [
        ("+442079460958", "whatsapp", "import"),
        ("+6281299998888", None, "import"),
        ("stop@example.com", "email", "import"),
    ]
    assert [(r[0], r[1]) for r in _report(stack, org, done)[1:]] == [("5", "invalid_identifier"), ("6", "duplicate")]
    _assert_nothing_written(org)  # no contacts come of it

    again = _analysed(stack, org, data, "blocklist.csv", kind="do_not_contact")
    _map(org, again["id"], columns)
    second = _start(stack, org, again["id"])
    assert _counts(second) == {"skipped": 3, "invalid": 1, "duplicate": 1}
    assert second["progress"]["rows_done"] == 5
    assert second["result"] == "0 do-not-contact entries added"
    assert len(org.client.get("/orgs/c/do-not-contact").json()["items"]) == 3


def test_a_do_not_contact_import_counts_the_entries_it_added(stack, org):
    data = _csv([["identifier"], ["0812 9999 8888"], ["stop@example.com"], ["12"]])
    imp = _analysed(stack, org, data, "blocklist.csv", kind="do_not_contact")
    _map(org, imp["id"], _columns("identifier"))
    done = _start(stack, org, imp["id"])
    assert len(org.client.get("/orgs/c/do-not-contact").json()["items"]) == 2
    assert done["result"] == "2 do-not-contact entries added"
    assert _counts(done) == {"created": 2, "invalid": 1}
    assert done["progress"]["rows_done"] == 3


# -- the presigned upload -------------------------------------------------------------------------


def test_a_presigned_post_upload_is_analysed_and_imported(stack, org):
    created = org.client.post("/orgs/c/imports", json={"file_name": "big.csv", "size": 100})
    assert created.status_code == 201, created.text
    body = created.json()
    import_id = body["import"]["id"]
    assert body["import"]["status"] == "awaiting_upload"
    assert created.headers["location"] == f"/orgs/{org.org_id}/imports/{import_id}"
    form = body["upload"]
    assert form["fields"]["key"] == f"imports/{org.org_id}/{import_id}/upload"
    assert form["expires_in"] == 3600

    early = org.client.post(f"/orgs/c/imports/{import_id}/analyse")
    assert early.status_code == 202
    stack.drain()
    assert _get(org, import_id)["status"] == "failed"  # nothing uploaded yet
    assert "no file was uploaded" in _get(org, import_id)["error"]

    data = _csv([["name", "email"], ["Ana", "ana@example.com"], ["Budi", "budi@example.com"]])
    uploaded = requests.post(form["url"], data=form["fields"], files={"file": ("big.csv", data)}, timeout=10)
    assert uploaded.status_code in (200, 201, 204), uploaded.text
    again = org.client.post(f"/orgs/c/imports/{import_id}/analyse")
    assert again.status_code == 202, again.text
    stack.drain()
    imp = _get(org, import_id)
    assert imp["status"] == "analysed"
    assert imp["size"] == len(data)
    _map(org, import_id, _suggested(imp), import_tag=False)
    assert _counts(_start(stack, org, import_id)) == {"created": 2}
    assert sorted(c["email"] for c in _contacts(org)) == ["ana@example.com", "budi@example.com"]
