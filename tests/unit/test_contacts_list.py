"""Listing contacts: cursor pagination, filters, prefix search and totals from counters."""

from datetime import datetime, timedelta, timezone

from audience.contacts import keys


def _bulk(org, contacts):
    response = org.client.post("/orgs/c/contacts/bulk", json={"contacts": contacts})
    assert response.status_code == 200, response.text
    assert response.json()["summary"]["created"] == len(contacts)
    return [r["contact_id"] for r in response.json()["results"]]


def test_pages_cover_every_contact_once_newest_first(org):
    ids = _bulk(org, [{"email": f"p{i}@example.com"} for i in range(57)])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"take": 10, **({"cursor": cursor} if cursor else {})}
        response = org.client.get("/orgs/c/contacts", params=params)
        assert response.headers["X-Total-Count"] == "57"
        body = response.json()
        seen.extend(c["id"] for c in body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 6
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    created = [org.client.get(f"/orgs/c/contacts/{i}").json()["created_at"] + i for i in seen]
    assert created == sorted(created, reverse=True)


def test_filters_by_status_tag_channel_with_totals(org):
    _bulk(
        org,
        [
            {"email": "a@x.io", "tags": ["vip"], "channels": [{"channel": "whatsapp", "user_id": "1"}]},
            {"email": "b@x.io", "tags": ["vip", "lead"], "status": "UNSUBSCRIBED"},
            {"email": "c@x.io", "tags": ["lead"], "channels": [{"channel": "telegram", "user_id": "2"}]},
            {"email": "d@x.io", "status": "BLOCKED"},
        ],
    )

    def emails(**params):
        response = org.client.get("/orgs/c/contacts", params=params)
        assert response.status_code == 200, response.text
        return sorted(c["email"] for c in response.json()["items"]), response.headers.get("X-Total-Count")

    assert emails(tag="vip") == (["a@x.io", "b@x.io"], "2")
    assert emails(tag="lead") == (["b@x.io", "c@x.io"], "2")
    assert emails(channel="whatsapp") == (["a@x.io"], "1")
    assert emails(status="SUBSCRIBED") == (["a@x.io", "c@x.io"], "2")
    assert emails(status="BLOCKED") == (["d@x.io"], "1")
    # A combination no single counter answers: filtered correctly, no total header.
    assert emails(tag="vip", status="UNSUBSCRIBED") == (["b@x.io"], None)
    assert org.client.get("/orgs/c/contacts", params={"status": "GONE"}).status_code == 422


def test_prefix_search_by_name_email_and_phone(org):
    _bulk(
        org,
        [
            {"full_name": "Zoë Adams", "email": "zoe@x.io"},
            {"first_name": "Sari", "last_name": "Wijaya", "phone": "081234567890"},
            {"first_name": "Adam", "email": "adam.smith@x.io"},
        ],
    )

    def names(q):
        items = org.client.get("/orgs/c/contacts", params={"q": q}).json()["items"]
        return sorted(c["full_name"] for c in items)

    assert names("zoe") == ["Zoë Adams"]
    assert names("ADAM") == ["Adam", "Zoë Adams"]
    assert names("wij") == ["Sari Wijaya"]
    assert names("adam.smith@") == ["Adam"]
    assert names("+62 812 34") == ["Sari Wijaya"]
    assert names("nobody") == []


def test_search_paginates_without_repeats(org):
    _bulk(org, [{"first_name": f"Maria{i:02d}", "email": f"m{i}@x.io"} for i in range(23)])
    seen, cursor = [], None
    for _ in range(10):
        body = org.client.get(
            "/orgs/c/contacts", params={"q": "maria", "take": 5, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen.extend(c["id"] for c in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 23 == len(set(seen))


def test_created_range_filter(org):
    _bulk(org, [{"email": "old@x.io"}])
    everything = org.client.get(
        "/orgs/c/contacts", params={"created_from": "2000-01-01", "created_to": "2999-12-31"}
    ).json()
    assert len(everything["items"]) == 1
    none = org.client.get("/orgs/c/contacts", params={"created_to": "2001-01-01"}).json()
    assert none["items"] == []


def test_page_size_and_cursor_are_bounded(org):
    assert org.client.get("/orgs/c/contacts", params={"take": 101}).status_code == 422
    assert org.client.get("/orgs/c/contacts", params={"cursor": "garbage!"}).status_code == 422


def test_contacts_of_one_org_are_spread_over_shards(org):
    ids = _bulk(org, [{"email": f"s{i}@x.io"} for i in range(64)])
    assert len({keys.shard_of(i) for i in ids}) >= keys.SHARDS - 2


def test_created_range_accepts_offsets_and_rejects_naive_times(org):
    created = org.client.post("/orgs/c/contacts", json={"email": "t@x.io"}).json()["created_at"]
    instant = datetime.fromisoformat(created.replace("Z", "+00:00"))

    def listed(**bounds):
        return [c["email"] for c in org.client.get("/orgs/c/contacts", params=bounds).json()["items"]]

    jakarta, new_york = timezone(timedelta(hours=7)), timezone(timedelta(hours=-5))
    assert listed(created_to=(instant + timedelta(minutes=1)).astimezone(jakarta).isoformat()) == ["t@x.io"]
    assert listed(created_to=(instant - timedelta(minutes=1)).astimezone(new_york).isoformat()) == []
    assert listed(created_from=(instant - timedelta(minutes=1)).astimezone(jakarta).isoformat()) == ["t@x.io"]
    naive = org.client.get("/orgs/c/contacts", params={"created_from": created[:19]})
    assert naive.status_code == 422
    assert naive.json()["error"]["fields"][0]["field"] == "created_from"
