"""Edge cases of the contacts domain: identities, merges, bulk, paging, search and hostile input."""

from collections import Counter

import boto3
import pytest


def _create(org, **body):
    response = org.client.post("/orgs/c/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _scan(stack):
    table = boto3.resource("dynamodb").Table(stack.resources["ContactsTable"])
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _check_invariants(org, stack):
    """Counters equal a recount; identity items and contacts point at each other."""
    items = [i for i in _scan(stack) if i["pk"].startswith(f"O#{org.org_id}#")]
    contacts = {i["id"]: i for i in items if i["sk"] == "#CONTACT"}
    identity_items = {i["pk"]: i for i in items if i["sk"] == "#IDENTITY"}
    status, tags, channels = Counter(), Counter(), Counter()
    for c in contacts.values():
        status[c["status"]] += 1
        tags.update(c.get("tags") or [])
        channels.update({ch["channel"] for ch in c.get("channels") or []})
    stats = org.client.get("/orgs/c/contacts/stats").json()
    assert stats == {
        "total": len(contacts),
        "subscribed": status["SUBSCRIBED"],
        "unsubscribed": status["UNSUBSCRIBED"],
        "blocked": status["BLOCKED"],
    }
    for tag, n in tags.items():
        assert org.client.get("/orgs/c/contacts", params={"tag": tag}).headers["X-Total-Count"] == str(n), tag
    for ch, n in channels.items():
        assert org.client.get("/orgs/c/contacts", params={"channel": ch}).headers["X-Total-Count"] == str(n), ch
    owned = {}
    for cid in contacts:
        body = org.client.get(f"/orgs/c/contacts/{cid}").json()
        for ident in body["identities"]:
            owned[f"O#{org.org_id}#I#{ident['type']}#{ident['value']}"] = cid
    assert {pk: i["contact_id"] for pk, i in identity_items.items()} == owned


def _raw_post(org, path, raw: bytes):
    return org.client.post(path, content=raw, headers={"Content-Type": "application/json"})


def _cursor(key: str) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps({"k": key}).encode()).decode().rstrip("=")


# -- invariants (pass today; cheap guards for the rules the product must keep) -----------------------


def test_invariants_hold_after_patches_chained_merges_upsert_and_delete(org, stack):
    a = _create(
        org, email="a@x.io", phone="081234567890", tags=["vip", "x"], channels=[{"channel": "telegram", "user_id": "1"}]
    )
    b = _create(
        org,
        email="b@x.io",
        tags=["vip", "y"],
        status="UNSUBSCRIBED",
        channels=[{"channel": "telegram", "user_id": "2"}, {"channel": "whatsapp", "user_id": "w"}],
    )
    c = _create(org, email="c@x.io", phone="081234567891", tags=["z"])
    org.client.patch(f"/orgs/c/contacts/{a['id']}", json={"tags": ["x", "w"], "status": "BLOCKED"})
    org.client.patch(f"/orgs/c/contacts/{a['id']}", json={"phone": "+62 812 3456 7890"})
    org.client.patch(f"/orgs/c/contacts/{a['id']}", json={"channels": [{"channel": "messenger", "user_id": "m"}]})
    assert (
        org.client.post(f"/orgs/c/contacts/{c['id']}/merge", json={"source_contact_ids": [b["id"]]}).status_code == 200
    )
    assert (
        org.client.post(f"/orgs/c/contacts/{a['id']}/merge", json={"source_contact_ids": [c["id"]]}).status_code == 200
    )
    _check_invariants(org, stack)
    assert (
        org.client.post("/orgs/c/contacts?upsert=true", json={"email": "b@x.io", "first_name": "B"}).status_code == 200
    )
    _check_invariants(org, stack)
    assert org.client.delete(f"/orgs/c/contacts/{a['id']}").status_code == 204
    stack.drain()
    _check_invariants(org, stack)
    # Nothing personal is left: only the (zeroed) counter items remain.
    # Nothing of any contact is left: only counters and the org's (predefined) segment definitions remain.
    left = [i for i in _scan(stack) if i["pk"].startswith(f"O#{org.org_id}#")]
    assert [i for i in left if "#N#" not in i["pk"] and not i["pk"].endswith("#SEGMENTS")] == []


def test_invariants_hold_under_concurrent_patches(org, stack):
    from concurrent.futures import ThreadPoolExecutor

    from audience import container

    service = container.contact_service()
    contact = _create(org, email="a@x.io", tags=["t0"])

    def work(i):
        changes = [
            {"tags": [f"t{i % 3}", "x"]},
            {"status": ["SUBSCRIBED", "UNSUBSCRIBED", "BLOCKED"][i % 3]},
            {"channels": [{"channel": "telegram", "user_id": str(i)}]},
        ][i % 3]
        try:
            service.update(org.org_id, contact["id"], changes)
            return "ok"
        except Exception as error:
            return type(error).__name__

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(40)))
    assert set(results) <= {"ok", "ConcurrentUpdateError"}, results
    _check_invariants(org, stack)


# -- identities ----------------------------------------------------------------------------------------


def test_upsert_through_a_merged_identity_keeps_the_targets_own_email(org):
    target = _create(org, email="a@x.io")
    source = _create(org, email="b@x.io")
    assert (
        org.client.post(
            f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [source["id"]]}
        ).status_code
        == 200
    )
    # The upsert names an identity the target already owns ...
    upserted = org.client.post("/orgs/c/contacts?upsert=true", json={"email": "b@x.io", "first_name": "B"})
    assert upserted.status_code == 200
    assert upserted.json()["id"] == target["id"]
    # ... and the target keeps its own email: nobody else can take it.
    again = org.client.post("/orgs/c/contacts", json={"email": "a@x.io"})
    assert again.status_code == 409, again.text


def test_email_channel_user_id_is_the_same_identity_as_an_email(org):
    first = _create(org, phone="081234567890", channels=[{"channel": "email", "user_id": "Sari@Example.com"}])
    duplicate = org.client.post("/orgs/c/contacts", json={"email": "sari@example.com"})
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["error"]["contact_id"] == first["id"]


def test_merge_beyond_the_identity_cap_is_refused_not_truncated(org):
    target = _create(org, email="t@x.io")
    sources = [
        _create(
            org,
            email=f"s{n}@x.io",
            phone=f"0812345678{n:02d}",
            channels=[{"channel": "custom", "user_id": f"s{n}-{i}"} for i in range(10)],
        )
        for n in range(3)
    ]
    merged = org.client.post(
        f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [s["id"] for s in sources]}
    )
    # 36 identities do not fit: the merge is refused whole, and every source still owns its identities.
    assert merged.status_code == 422, merged.text
    for source in sources:
        assert org.client.get(f"/orgs/c/contacts/{source['id']}").json()["identities"] == source["identities"]
    return
    kept = {(i["type"], i["value"]) for i in merged.json()["identities"]}
    handed = {(i["type"], i["value"]) for s in sources for i in s["identities"]}
    assert handed - kept == set()


def test_merge_beyond_the_tag_cap_is_refused_not_truncated(org):
    target = _create(org, email="t@x.io", tags=[f"a{i}" for i in range(20)])
    source = _create(org, email="s@x.io", tags=[f"b{i}" for i in range(20)])
    merged = org.client.post(f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [source["id"]]})
    assert merged.status_code == 422, merged.text
    assert "40 tags" in merged.json()["error"]["message"]
    assert org.client.get(f"/orgs/c/contacts/{source['id']}").status_code == 200


# -- bulk ------------------------------------------------------------------------------------------------


def test_bulk_dry_run_agrees_with_real_run_when_an_upsert_releases_an_identity(org):
    batch = [
        {"email": "a@x.io", "phone": "081234567890"},  # created
        {"email": "a@x.io", "phone": "081234567891"},  # updated: the first phone is released
        {"phone": "081234567890", "email": "b@x.io"},  # the released phone names nobody: created
    ]
    dry = org.client.post("/orgs/c/contacts/bulk/dry-run", json={"contacts": batch, "upsert": True}).json()
    real = org.client.post("/orgs/c/contacts/bulk", json={"contacts": batch, "upsert": True}).json()
    assert [r["action"] for r in dry["results"]] == [r["action"] for r in real["results"]]


# -- listing and search ------------------------------------------------------------------------------------


def test_paging_with_tag_and_status_returns_every_match_once(org):
    ids = [
        _create(org, email=f"p{i}@x.io", tags=["vip"], status=status)["id"]
        for i, status in enumerate(["UNSUBSCRIBED", "UNSUBSCRIBED", "UNSUBSCRIBED", "SUBSCRIBED"])
    ]
    seen, cursor = [], None
    for _ in range(10):
        params = {"tag": "vip", "status": "UNSUBSCRIBED", "take": 2, **({"cursor": cursor} if cursor else {})}
        body = org.client.get("/orgs/c/contacts", params=params).json()
        seen.extend(c["id"] for c in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids[:3])


def test_search_lists_a_contact_with_several_matching_terms_once(org):
    _create(org, full_name="Ann Annie", email="q1@x.io")
    _create(org, full_name="Anna", email="q2@x.io")
    seen, cursor = [], None
    for _ in range(10):
        params = {"q": "ann", "take": 1, **({"cursor": cursor} if cursor else {})}
        body = org.client.get("/orgs/c/contacts", params=params).json()
        seen.extend(c["id"] for c in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 2, seen


def test_search_by_accented_email_prefix(org):
    _create(org, email="josé@x.io")
    assert len(org.client.get("/orgs/c/contacts", params={"q": "josé@"}).json()["items"]) == 1


def test_search_by_phone_in_national_form(org):
    _create(org, phone="0812-3456-7890", first_name="Sari")
    items = org.client.get("/orgs/c/contacts", params={"q": "0812-3456"}).json()["items"]
    assert [c["first_name"] for c in items] == ["Sari"]


def test_inverted_created_range_sends_no_query(org):
    """DynamoDB refuses `BETWEEN :lo AND :hi` with lo > hi (moto does not check; emulated here)."""
    from botocore.exceptions import ClientError

    from audience import aws

    def refuse_inverted_between(params, **_):
        values = params.get("ExpressionAttributeValues") or {}
        if "BETWEEN" in params.get("KeyConditionExpression", "") and values[":lo"]["S"] > values[":hi"]["S"]:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationException",
                        "Message": "The BETWEEN operator requires upper bound "
                        "to be greater than or equal to lower bound",
                    }
                },
                "Query",
            )

    aws.client("dynamodb").meta.events.register("provide-client-params.dynamodb.Query", refuse_inverted_between)
    _create(org, email="a@x.io")
    response = org.client.get("/orgs/c/contacts", params={"created_from": "2026-02-01", "created_to": "2026-01-01"})
    assert response.status_code in (200, 422), response.text


def test_forged_cursor_is_422(org):
    _create(org, email="a@x.io")
    response = org.client.get("/orgs/c/contacts", params={"cursor": _cursor("")})
    assert response.status_code == 422, response.text


# -- hostile input gets a 422, never a 500 ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1e300, 10**39, 1e-200])
def test_number_custom_field_outside_dynamodb_range_is_422(org, value):
    assert org.client.post("/orgs/c/contacts/fields", json={"name": "score", "type": "number"}).status_code == 201
    response = org.client.post("/orgs/c/contacts", json={"email": "a@x.io", "custom_fields": {"score": value}})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a@x.io", "first_name": 1e400}',  # valid JSON; Python reads it as inf
        b'{"email": "a@x.io", "custom_fields": {"undeclared": 1e400}}',
    ],
)
def test_non_finite_number_is_422_and_echoed_as_text(org, raw):
    response = _raw_post(org, "/orgs/c/contacts", raw)
    assert response.status_code == 422, response.text


def test_lone_surrogate_is_422(org):
    response = _raw_post(org, "/orgs/c/contacts", b'{"email": "a@x.io", "first_name": "\\ud800"}')
    assert response.status_code == 422, response.text


def test_one_bad_bulk_item_is_reported_alone(org):
    raw = b'{"contacts": [{"email": "ok@x.io"}, {"email": "b@x.io", "first_name": "\\ud800"}]}'
    response = _raw_post(org, "/orgs/c/contacts/bulk", raw)
    assert response.status_code == 200, (response.text, org.client.get("/orgs/c/contacts/stats").json())
    assert [r["action"] for r in response.json()["results"]] == ["created", "invalid"]


def test_datetime_that_overflows_in_utc_is_422(org):
    assert org.client.post("/orgs/c/contacts/fields", json={"name": "seen", "type": "datetime"}).status_code == 201
    response = org.client.post(
        "/orgs/c/contacts", json={"email": "a@x.io", "custom_fields": {"seen": "0001-01-01T00:00:00+01:00"}}
    )
    assert response.status_code == 422, response.text
    listed = org.client.get("/orgs/c/contacts", params={"created_to": "9999-12-31T23:59:59-01:00"})
    assert listed.status_code in (200, 422), listed.text


def test_datetime_before_year_1000_sorts_before_later_ones(org):
    _create(org, email="a@x.io")
    listed = org.client.get("/orgs/c/contacts", params={"created_to": "0999-06-01T00:00:00Z"})
    assert listed.json()["items"] == []  # "999-06-01..." sorts after "2026-..."


def test_custom_fields_are_bounded_below_dynamodb_item_size(org):
    for i in range(60):
        assert org.client.post("/orgs/c/contacts/fields", json={"name": f"f{i}", "type": "string"}).status_code == 201
    contact = _create(org, email="a@x.io")
    statuses = []
    for chunk in range(6):  # each PATCH is small and valid; together they would pass 400 KB
        fields = {f"f{i}": "\U0001f600" * 2048 for i in range(chunk * 10, chunk * 10 + 10)}
        response = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"custom_fields": fields})
        statuses.append(response.status_code)
    assert statuses[0] == 422, statuses
    assert set(statuses) == {422}
    assert org.client.get(f"/orgs/c/contacts/{contact['id']}").json()["custom_fields"] == {}


@pytest.mark.parametrize("params", [{"q": "ann"}, {}, {"tag": "t"}])
def test_paging_one_at_a_time_on_a_single_shard_reaches_every_contact(org, monkeypatch, params):
    """With every contact on one shard, the item a cursor names must not hide the next page."""
    from audience.contacts import keys

    monkeypatch.setattr(keys, "SHARDS", 1)
    ids = {
        _create(org, full_name=name, email=f"s{i}@x.io", tags=["t"])["id"]
        for i, name in enumerate(["Ann Annie", "Anna", "Annabel Lee"])
    }
    seen, cursor = [], None
    for _ in range(10):
        body = org.client.get(
            "/orgs/c/contacts", params={**params, "take": 1, **({"cursor": cursor} if cursor else {})}
        )
        seen.extend(c["id"] for c in body.json()["items"])
        cursor = body.json()["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids)


def test_serialize_writes_what_boto3s_type_serializer_writes():
    from boto3.dynamodb.types import TypeSerializer

    from audience.contacts.repository import _to_dynamo, serialize

    item = {
        "s": "x",
        "empty": "",
        "i": 3,
        "negative": -5,
        "large": 10**30,
        "b": True,
        "f": False,
        "tags": ["a", "b"],
        "no_tags": [],
        "rows": [1, 2],
        "data": {"import_id": "imp_1"},
        "fields": {"n": 1.5, "flag": True, "gone": None},
        "float": 0.1,
        "missing": None,
    }
    expected = {k: TypeSerializer().serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}
    assert serialize(item) == expected
