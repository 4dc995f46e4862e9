"""End to end on the local stack: HTTP API → ApiFunction → ExportQueue → ExportFunction → ExportsBucket,
then the presigned download link."""

import csv
import io
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from fastapi.testclient import TestClient

from audience import admin


@pytest.fixture
def gateway(stack):
    """A client of the local HTTP API, which invokes ApiFunction's Lambda handler per request."""
    created = admin.create_org("Acme", default_country="ID")
    return TestClient(stack.http_app, headers={"Authorization": f"Bearer {created['api_key']}"}), created["org_id"]


def _run_export(client, stack, **body):
    requested = client.post("/orgs/c/exports", json=body)
    assert requested.status_code == 202, requested.text
    assert requested.json()["status"] == "queued"
    stack.drain()  # ExportFunction consumes ExportQueue
    export = client.get(requested.headers["Location"]).json()
    assert export["status"] == "done", export
    return export


def _download(stack, org_id, export):
    """The file behind the export's presigned URL, read with the stack's S3 client and through the URL."""
    bucket = stack.resources["ExportsBucket"]
    key = f"exports/{org_id}/{export['id']}.csv"
    url = urlparse(export["download_url"])
    query = parse_qs(url.query)
    # A SigV4 presigned GET of exactly this bucket and key, valid 15 minutes.
    assert url.scheme == "https"
    assert (url.netloc, url.path.lstrip("/")) in (
        (f"{bucket}.s3.amazonaws.com", key),
        ("s3.amazonaws.com", f"{bucket}/{key}"),
    )
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Signature"]
    obj = stack.client("s3").get_object(Bucket=bucket, Key=key)
    assert obj["ContentType"] == "text/csv; charset=utf-8"
    assert obj["ContentDisposition"] == f'attachment; filename="contacts-{export["id"]}.csv"'
    data = obj["Body"].read()
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM, for Excel
    # And the link itself downloads it (moto answers the signed HTTPS GET in place of S3).
    fetched = requests.get(export["download_url"], timeout=10)
    assert (fetched.status_code, fetched.content) == (200, data)
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_contacts_export_through_the_stack(gateway, stack):
    client, org_id = gateway
    client.post("/orgs/c/contacts/fields", json={"name": "plan", "type": "string"})
    client.post("/orgs/c/contacts/fields", json={"name": "score", "type": "number"})
    contacts = [
        {
            "first_name": "Sari",
            "last_name": "Wijaya",
            "phone": "0812-3456-7890",
            "email": "Sari@Example.com",
            "tags": ["vip", "lead"],
            "channels": [{"channel": "telegram", "user_id": "777"}],
            "custom_fields": {"plan": "pro", "score": -5},
        },
        {
            "full_name": '=HYPERLINK("https://evil.example","click")',
            "email": "eve@example.com",
            "status": "UNSUBSCRIBED",
        },
        {"full_name": "Budi, the second", "email": "budi@example.com", "custom_fields": {"plan": "@home"}},
    ]
    ids = [client.post("/orgs/c/contacts", json=c).json()["id"] for c in contacts]

    export = _run_export(client, stack, kind="contacts")
    assert export["rows"] == 3
    rows = _download(stack, org_id, export)
    header = rows[0]
    assert header == [
        "id",
        "first_name",
        "last_name",
        "full_name",
        "email",
        "phone",
        "country",
        "status",
        "channels",
        "tags",
        "custom_fields.plan",
        "custom_fields.score",
        "created_at",
        "updated_at",
    ]
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert set(by_id) == set(ids)
    sari, eve, budi = (by_id[i] for i in ids)
    assert sari["phone"] == "'+6281234567890"  # neutralised, and shown by a spreadsheet as the number
    assert (sari["email"], sari["country"], sari["full_name"]) == ("sari@example.com", "ID", "Sari Wijaya")
    assert (sari["channels"], sari["tags"]) == ("telegram:777", "vip; lead")
    assert (sari["custom_fields.plan"], sari["custom_fields.score"]) == ("pro", "'-5")
    assert eve["full_name"] == '\'=HYPERLINK("https://evil.example","click")'
    assert eve["status"] == "UNSUBSCRIBED"
    assert budi["full_name"] == "Budi, the second"  # RFC 4180 quoting keeps the comma in its cell
    assert budi["custom_fields.plan"] == "'@home"
    assert sari["created_at"].endswith("Z")

    # A filter: only what it keeps.
    unsubscribed = _run_export(client, stack, kind="contacts", filter={"status": "UNSUBSCRIBED"})
    assert [row[0] for row in _download(stack, org_id, unsubscribed)[1:]] == [ids[1]]
    assert [e["id"] for e in client.get("/orgs/c/exports").json()["items"]] == [unsubscribed["id"], export["id"]]

    # Asking again gives a fresh link to the same file.
    assert client.get(f"/orgs/c/exports/{export['id']}").json()["download_url"].startswith("https://")


def test_an_empty_org_exports_a_header(gateway, stack):
    client, org_id = gateway
    export = _run_export(client, stack, kind="contacts")
    assert export["rows"] == 0
    assert _download(stack, org_id, export)[1:] == []


def test_segment_export_through_the_stack(gateway, stack):
    """The members of a segment (exported with ListFilter(segment=...))."""
    client, org_id = gateway
    ids = [client.post("/orgs/c/contacts", json={"email": f"m{i}@example.com"}).json()["id"] for i in range(4)]
    segment = client.post("/orgs/c/segments", json={"name": "Picked", "type": "static"})
    assert segment.status_code == 201, segment.text
    added = client.post(f"/orgs/c/segments/{segment.json()['id']}/contacts", json={"contact_ids": ids[1:3]})
    assert added.status_code == 200, added.text
    stack.drain()

    export = _run_export(client, stack, kind="contacts", segment_id=segment.json()["id"])
    assert export["segment_id"] == segment.json()["id"]
    assert sorted(row[0] for row in _download(stack, org_id, export)[1:]) == sorted(ids[1:3])
