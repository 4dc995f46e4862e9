"""The do-not-contact list: add (idempotent), get, remove, list with filters, sort and pages, CSV import."""

import boto3
import pytest

from audience.compliance.dnc import MAX_IMPORT_ROWS

DNC = "/orgs/c/do-not-contact"


def _add(org, **body):
    response = org.client.post(DNC, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _all(org, **params):
    """Every entry of a listing, page by page, and the number of pages."""
    seen, cursor, pages = [], None, 0
    while True:
        body = org.client.get(DNC, params={**params, **({"cursor": cursor} if cursor else {})}).json()
        seen.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return seen, pages


# -- add, get, remove -------------------------------------------------------------------------------


def test_phone_is_stored_in_e164_and_adding_it_again_is_the_same_entry(org):
    created = org.client.post(DNC, json={"identifier": "0812-3456-7890", "source": "user_message"})
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["identifier"] == "+6281234567890"
    assert (entry["identifier_type"], entry["channel"], entry["sender"]) == ("phone", None, None)
    assert entry["source"] == "user_message"
    assert entry["id"].startswith("dnc_")

    again = org.client.post(DNC, json={"identifier": "+62 812 3456 7890", "source": "manual"})
    assert again.status_code == 200
    assert again.json() == entry  # the entry that was there, source and time included
    assert org.client.get(DNC).headers["X-Total-Count"] == "1"


def test_channel_and_sender_narrow_an_entry_and_make_it_another_one(org):
    every = _add(org, identifier="+6281234567890")
    sms = _add(org, identifier="+6281234567890", channel="sms")
    sender = _add(org, identifier="+6281234567890", channel="sms", sender="  MyShop ")
    assert len({every["id"], sms["id"], sender["id"]}) == 3
    assert sender["sender"] == "MyShop"
    assert _add(org, identifier="Sari@Example.com", channel="email", sender="News@Shop.io")["identifier"] == (
        "sari@example.com"
    )
    telegram = _add(org, identifier=" 777123 ", channel="telegram")
    assert (telegram["identifier_type"], telegram["identifier"]) == ("telegram", "777123")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identifier": "12"}, "identifier"),
        ({"identifier": "not an email@"}, "identifier"),
        ({"identifier": "sari@example.com", "channel": "sms"}, "identifier"),
        ({"identifier": "+6281234567890", "channel": "email"}, "identifier"),
        ({"identifier": "+6281234567890", "sender": "*"}, "sender"),
        ({"identifier": "+6281234567890", "channel": "fax"}, "channel"),
        ({"identifier": "+6281234567890", "source": "rumour"}, "source"),
    ],
)
def test_invalid_input_is_422_naming_the_value(org, body, field):
    response = org.client.post(DNC, json=body)
    assert response.status_code == 422, response.text
    problem = response.json()["error"]["fields"][0]
    assert problem["field"] == field
    assert problem["value"] == body[field]
    if field == "identifier":
        assert repr(body["identifier"]) in response.json()["error"]["message"]


def test_get_and_remove_by_id(org):
    entry = _add(org, identifier="a@x.io")
    assert org.client.get(f"{DNC}/{entry['id']}").json() == entry
    assert org.client.delete(f"{DNC}/{entry['id']}").status_code == 204
    assert org.client.get(f"{DNC}/{entry['id']}").status_code == 404
    assert org.client.delete(f"{DNC}/{entry['id']}").status_code == 404
    assert org.client.get(DNC).json()["items"] == []
    assert org.client.get(DNC).headers["X-Total-Count"] == "0"
    # Removed, the same information can be added again: a new entry.
    assert org.client.post(DNC, json={"identifier": "a@x.io"}).status_code == 201


def test_another_orgs_entries_are_not_found(org, other_org):
    theirs = other_org.client.post(DNC, json={"identifier": "victim@x.io"}).json()
    assert org.client.get(f"{DNC}/{theirs['id']}").status_code == 404
    assert org.client.delete(f"{DNC}/{theirs['id']}").status_code == 404
    assert org.client.get(f"/orgs/{other_org.org_id}/do-not-contact").status_code == 404
    assert org.client.post(f"/orgs/{other_org.org_id}/do-not-contact", json={"identifier": "a@x.io"}).status_code == 404
    assert org.client.get(DNC).json()["items"] == []
    # Theirs is untouched, and the same information is a separate entry in each org.
    assert other_org.client.get(f"{DNC}/{theirs['id']}").json() == theirs
    assert org.client.post(DNC, json={"identifier": "victim@x.io"}).status_code == 201
    assert org.client.get(f"{DNC}/not-an-id").status_code == 404


# -- listing --------------------------------------------------------------------------------------


@pytest.fixture
def listed(org):
    """Nine entries, added in this order."""
    bodies = [
        {"identifier": "+6281200000001", "source": "user_message"},
        {"identifier": "b@x.io", "channel": "email", "source": "unsubscribe_link"},
        {"identifier": "+6281200000002", "channel": "sms", "sender": "Shop"},
        {"identifier": "a@x.io", "source": "bounce"},
        {"identifier": "+6281200000003", "channel": "whatsapp", "source": "campaign_action"},
        {"identifier": "c@x.io", "channel": "email", "sender": "news@shop.io", "source": "complaint"},
        {"identifier": "777", "channel": "telegram"},
        {"identifier": "+6281200000004", "channel": "sms", "sender": "Other"},
        {"identifier": "d@x.io", "source": "import"},
    ]
    return [_add(org, **body) for body in bodies]


def test_lists_newest_first_by_default_and_pages_cover_everything_once(org, listed):
    seen, pages = _all(org, take=2)
    assert pages == 5
    assert [e["id"] for e in seen] == [e["id"] for e in reversed(listed)]
    oldest_first, _ = _all(org, take=4, sort="added_at")
    assert [e["id"] for e in oldest_first] == [e["id"] for e in listed]


def test_sorts_by_identifier_and_searches_by_prefix(org, listed):
    by_identifier, _ = _all(org, take=3, sort="identifier")
    assert [e["identifier"] for e in by_identifier] == sorted(e["identifier"] for e in listed)
    backwards, _ = _all(org, take=3, sort="-identifier")
    assert [e["identifier"] for e in backwards] == sorted((e["identifier"] for e in listed), reverse=True)
    found, _ = _all(org, q="+628120000000", take=2)
    assert [e["identifier"] for e in found] == [f"+628120000000{i}" for i in range(1, 5)]
    assert [e["identifier"] for e in _all(org, q="B@X")[0]] == ["b@x.io"]
    refused = org.client.get(DNC, params={"q": "a", "sort": "-added_at"})
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["field"] == "sort"


def test_filters_by_channel_source_and_sender_with_totals(org, listed):
    response = org.client.get(DNC, params={"channel": "sms"})
    assert [e["identifier"] for e in response.json()["items"]] == ["+6281200000004", "+6281200000002"]
    assert response.headers["X-Total-Count"] == "2"
    every_channel = org.client.get(DNC, params={"channel": "all"})
    assert {e["identifier"] for e in every_channel.json()["items"]} == {"+6281200000001", "a@x.io", "d@x.io"}
    assert every_channel.headers["X-Total-Count"] == "3"
    bounce = org.client.get(DNC, params={"source": "bounce"})
    assert [e["identifier"] for e in bounce.json()["items"]] == ["a@x.io"]
    assert bounce.headers["X-Total-Count"] == "1"
    both, _ = _all(org, channel="email", source="complaint", take=1)
    assert [e["identifier"] for e in both] == ["c@x.io"]
    by_sender = org.client.get(DNC, params={"sender": "News@Shop.io"})
    assert [e["identifier"] for e in by_sender.json()["items"]] == ["c@x.io"]
    assert "X-Total-Count" not in by_sender.headers  # no counter answers a sender filter exactly
    assert org.client.get(DNC).headers["X-Total-Count"] == "9"
    assert org.client.get(DNC, params={"take": 101}).status_code == 422
    assert org.client.get(DNC, params={"cursor": "garbage"}).status_code == 422


def test_listing_reads_the_index_and_never_scans(org, listed, monkeypatch):
    from audience import aws

    client = aws.client("dynamodb")
    calls = []
    for name in ("scan", "query", "batch_get_item"):
        original = getattr(client, name)
        monkeypatch.setattr(client, name, lambda *a, _n=name, _o=original, **k: calls.append(_n) or _o(*a, **k))
    assert len(org.client.get(DNC, params={"channel": "email", "sort": "identifier"}).json()["items"]) == 2
    assert "scan" not in calls
    assert calls.count("query") == 16  # one per shard of the index


# -- CSV import -----------------------------------------------------------------------------------

CSV = (
    "\ufeffIdentifier,Channel,Sender,Source,Note\r\n"
    "0812-0000-0001,,,,first\r\n"  # row 2
    "12,,,,too short\r\n"  # row 3: not a phone
    '"B@X.io",email,,bounce,"quoted, with a comma"\r\n'  # row 4
    "'+6281200000009,sms,Shop,,exported with a neutralised phone\r\n"  # row 5
    ",,,,\r\n"  # a blank row is skipped (row 6)
    '+6281200000001,,,,"a note\r\non two lines"\r\n'  # row 7: the same as row 2
    "c@x.io,fax,,,\r\n"  # row 8: no such channel
    "d@x.io,,,rumour,\r\n"  # row 9: no such source
    "already@x.io,,,,\r\n"  # row 10: on the list before the import
)


def test_import_dry_run_reports_rows_and_writes_nothing(org):
    _add(org, identifier="already@x.io")
    response = org.client.post(f"{DNC}/import/dry-run", content=CSV.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] is True
    assert report["summary"] == {"rows": 8, "added": 3, "existing": 1, "duplicate": 1, "invalid": 3}
    assert [(e["row"], e["value"]) for e in report["errors"]] == [(3, "12"), (8, "fax"), (9, "rumour")]
    assert "default country ID" in report["errors"][0]["reason"]
    assert org.client.get(DNC).headers["X-Total-Count"] == "1"


def test_import_adds_good_rows_and_reports_bad_ones(org):
    _add(org, identifier="already@x.io")
    response = org.client.post(f"{DNC}/import", content=CSV.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json()["summary"] == {"rows": 8, "added": 3, "existing": 1, "duplicate": 1, "invalid": 3}
    entries = {e["identifier"]: e for e in _all(org)[0]}
    assert set(entries) == {"+6281200000001", "b@x.io", "+6281200000009", "already@x.io"}
    assert entries["+6281200000001"]["source"] == "import"
    assert entries["b@x.io"]["source"] == "bounce"
    assert (entries["+6281200000009"]["channel"], entries["+6281200000009"]["sender"]) == ("sms", "Shop")
    # Importing the same file again adds nothing.
    again = org.client.post(f"{DNC}/import", content=CSV.encode(), headers={"Content-Type": "text/csv"}).json()
    assert again["summary"] == {"rows": 8, "added": 0, "existing": 4, "duplicate": 1, "invalid": 3}


def test_import_of_many_rows_writes_each_once_with_exact_counts(org):
    rows = [f"+62812{i:08d},sms,,complaint" for i in range(250)]
    body = "identifier,channel,sender,source\n" + "\n".join(rows)
    report = org.client.post(f"{DNC}/import", content=body.encode(), headers={"Content-Type": "text/csv"}).json()
    assert report["summary"]["added"] == 250
    assert org.client.get(DNC).headers["X-Total-Count"] == "250"
    assert org.client.get(DNC, params={"source": "complaint"}).headers["X-Total-Count"] == "250"
    assert len(_all(org, take=100)[0]) == 250


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"phone\n+6281200000001\n", "no `identifier` column"),
        (b"", "required"),  # refused by the framework before the service sees it
        (b"identifier\n\xff\xfe\n", "not UTF-8"),
        (("identifier\n" + "a@x.io\n" * (MAX_IMPORT_ROWS + 1)).encode(), "at most 10000 rows"),
    ],
)
def test_import_refuses_files_it_cannot_read(org, body, message):
    response = org.client.post(f"{DNC}/import", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


def test_import_over_the_body_limit_is_413(org):
    big = b"identifier\n" + b"a@x.io\n" * (4 * 1024 * 1024 // 7 + 1)
    response = org.client.post(f"{DNC}/import", content=big, headers={"Content-Type": "text/csv"})
    assert response.status_code == 413


def test_entries_are_point_keys_of_the_contacts_table(org, stack):
    entry = _add(org, identifier="+6281234567890", channel="whatsapp", sender="waba-1")
    table = boto3.resource("dynamodb").Table(stack.resources["ContactsTable"])
    item = table.get_item(Key={"pk": f"O#{org.org_id}#D#phone#+6281234567890", "sk": "whatsapp#waba-1"})["Item"]
    assert item["id"] == entry["id"]
