"""Tags through the API on the local stack: registry and counts, bulk tagging, rename and delete jobs, search."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import pytest

MISSING = "ct_" + "0" * 26


def _contact(org: Any, **fields: Any) -> dict[str, Any]:
    response = org.client.post("/orgs/c/contacts", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


def _tags_of(org: Any, contact: dict[str, Any]) -> list[str]:
    response = org.client.get(f"/orgs/c/contacts/{contact['id']}")
    assert response.status_code == 200, response.text
    return response.json()["tags"]


def _tag(org: Any, name: str) -> dict[str, Any]:
    response = org.client.get(f"/orgs/c/tags/{quote(name, safe='')}")
    assert response.status_code == 200, response.text
    return response.json()


def _listed(org: Any, **params: Any) -> dict[str, tuple[int, bool, str]]:
    response = org.client.get("/orgs/c/tags", params=params)
    assert response.status_code == 200, response.text
    return {t["name"]: (t["contact_count"], t["registered"], t["state"]) for t in response.json()["items"]}


def _field(response: Any) -> str:
    assert response.status_code == 422, response.text
    return response.json()["error"]["fields"][0]["field"]


# -- registry ---------------------------------------------------------------------------------------


def test_tags_list_registered_and_unregistered_with_counts_from_contacts(org: Any) -> None:
    # Given contacts carrying tags, none of them registered yet
    a = _contact(org, email="a@x.io", tags=["vip", "news"])
    _contact(org, email="b@x.io", tags=["vip"])
    _contact(org, email="c@x.io", tags=["news", "Beta"])

    # When one is created with a description and a color
    created = org.client.post(
        "/orgs/c/tags", json={"name": " vip ", "description": "  Top buyers ", "color": "#FFAA00"}
    )

    # Then it carries the contacts' count, and the others are listed as unregistered
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["description"], body["color"]) == ("vip", "Top buyers", "#ffaa00")
    assert (body["contact_count"], body["registered"], body["state"]) == (2, True, "ready")
    assert org.client.post("/orgs/c/tags", json={"name": "vip"}).status_code == 409
    assert list(_listed(org).items()) == [
        ("Beta", (1, False, "ready")),
        ("news", (2, False, "ready")),
        ("vip", (2, True, "ready")),
    ]
    assert list(_listed(org, q="N")) == ["news"]
    assert _tag(org, "news")["registered"] is False
    assert org.client.get("/orgs/c/tags/nobody").status_code == 404

    # Counts follow contacts as they change
    org.client.patch(f"/orgs/c/contacts/{a['id']}", json={"tags": ["news"]})
    assert _tag(org, "vip")["contact_count"] == 1

    # Editing: null clears, a color is stored in lower case; editing an unregistered tag registers it
    edited = org.client.patch("/orgs/c/tags/vip", json={"description": None, "color": "#0A0B0C"}).json()
    assert (edited["description"], edited["color"]) == (None, "#0a0b0c")
    registered = org.client.patch("/orgs/c/tags/news", json={"color": "#112233"}).json()
    assert (registered["registered"], registered["contact_count"], registered["color"]) == (True, 2, "#112233")

    # Names hold any printable character, "/" included, URL-encoded in paths
    odd = "a/b c?%#"
    assert org.client.post("/orgs/c/tags", json={"name": odd}).status_code == 201
    assert _tag(org, odd)["name"] == odd
    assert org.client.patch(f"/orgs/c/tags/{quote(odd, safe='')}", json={"color": "#abcdef"}).status_code == 200

    # A tag no contact has is deleted at once
    assert org.client.delete(f"/orgs/c/tags/{quote(odd, safe='')}").status_code == 204
    assert org.client.get(f"/orgs/c/tags/{quote(odd, safe='')}").status_code == 404


def test_an_org_registers_a_bounded_number_of_tags(org: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audience.tags.service.MAX_TAGS_PER_ORG", 2)
    for name in ("one", "two"):
        assert org.client.post("/orgs/c/tags", json={"name": name}).status_code == 201
    refused = org.client.post("/orgs/c/tags", json={"name": "three"})
    assert _field(refused) == "name"
    assert "at most 2" in refused.json()["error"]["message"]


# -- tagging contacts -------------------------------------------------------------------------------


def test_bulk_by_ids_reports_each_outcome(org: Any, other_org: Any) -> None:
    plain = _contact(org, email="plain@x.io", tags=["old"])
    tagged = _contact(org, email="tagged@x.io", tags=["vip"])
    full = _contact(org, email="full@x.io", tags=[f"t{i}" for i in range(30)])
    foreign = _contact(other_org, email="foreign@x.io")

    response = org.client.post(
        "/orgs/c/tags/vip/contacts",
        json={"contact_ids": [plain["id"], tagged["id"], full["id"], foreign["id"], MISSING, "nope", plain["id"]]},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["id"], r["result"]) for r in body["results"]] == [
        (plain["id"], "changed"),
        (tagged["id"], "unchanged"),
        (full["id"], "invalid"),
        (foreign["id"], "not_found"),
        (MISSING, "not_found"),
        ("nope", "not_found"),
    ]
    assert "at most 30" in body["results"][2]["message"]
    assert body["summary"] == {"changed": 1, "unchanged": 1, "not_found": 3, "invalid": 1, "conflict": 0}
    assert _tags_of(org, plain) == ["old", "vip"]
    assert other_org.client.get(f"/orgs/c/contacts/{foreign['id']}").json()["tags"] == []
    assert _tag(org, "vip")["contact_count"] == 2
    activity = org.client.get(f"/orgs/c/contacts/{plain['id']}/activity").json()["items"]
    assert {"type": "updated", "data": {"fields": ["tags"]}}.items() <= activity[0].items()

    removed = org.client.post(
        "/orgs/c/tags/vip/contacts/remove", json={"contact_ids": [plain["id"], full["id"]]}
    ).json()
    assert [r["result"] for r in removed["results"]] == ["changed", "unchanged"]
    assert _tags_of(org, plain) == ["old"]
    assert _tag(org, "vip")["contact_count"] == 1


def test_one_contact_gains_and_loses_tags(org: Any) -> None:
    contact = _contact(org, email="one@x.io", tags=["a"])
    added = org.client.post(f"/orgs/c/contacts/{contact['id']}/tags", json={"tags": ["b", " a ", "c/d"]})
    assert added.status_code == 200, added.text
    assert added.json()["tags"] == ["a", "b", "c/d"]
    assert org.client.delete(f"/orgs/c/contacts/{contact['id']}/tags/{quote('c/d', safe='')}").status_code == 204
    assert org.client.delete(f"/orgs/c/contacts/{contact['id']}/tags/never").status_code == 204  # idempotent
    assert _tags_of(org, contact) == ["a", "b"]
    assert org.client.post(f"/orgs/c/contacts/{MISSING}/tags", json={"tags": ["x"]}).status_code == 404

    crowded = _contact(org, email="crowded@x.io", tags=[f"t{i}" for i in range(29)])
    refused = org.client.post(f"/orgs/c/contacts/{crowded['id']}/tags", json={"tags": ["x", "y"]})
    assert _field(refused) == "tags"
    assert len(_tags_of(org, crowded)) == 29


def test_bulk_by_segment_runs_in_the_background(org: Any, other_org: Any, stack: Any) -> None:
    members = [_contact(org, email=f"m{i}@x.io") for i in range(3)]
    outsider = _contact(org, email="out@x.io")
    segment = org.client.post("/orgs/c/segments", json={"name": "Fair", "type": "static"}).json()
    org.client.post(f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [m["id"] for m in members]})

    accepted = org.client.post("/orgs/c/tags/fair 2026/contacts", json={"segment_id": segment["id"]})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["job"].startswith("tag-add-")
    stack.drain()
    assert all(_tags_of(org, m) == ["fair 2026"] for m in members)
    assert _tags_of(org, outsider) == []
    assert _tag(org, "fair 2026")["contact_count"] == 3

    removal = org.client.post("/orgs/c/tags/fair 2026/contacts/remove", json={"segment_id": segment["id"]})
    assert removal.status_code == 202
    assert removal.json()["job"] != accepted.json()["job"]
    stack.drain()
    assert all(_tags_of(org, m) == [] for m in members)
    assert org.client.get("/orgs/c/tags/fair 2026").status_code == 404

    foreign = other_org.client.post("/orgs/c/segments", json={"name": "Theirs", "type": "static"}).json()
    assert org.client.post("/orgs/c/tags/x/contacts", json={"segment_id": foreign["id"]}).status_code == 404
    assert org.client.post("/orgs/c/tags/x/contacts", json={"segment_id": "sg_" + "0" * 26}).status_code == 404


# -- rename and delete ------------------------------------------------------------------------------


@pytest.fixture
def held_jobs(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Segment job parts wait for the returned event, so checks made while a job runs see it running
    (the emulator starts executions at once, in the background)."""
    from audience.segments.jobs import JobRunner

    gate = threading.Event()
    run = JobRunner.run
    monkeypatch.setattr(JobRunner, "run", lambda self, *a, **k: (gate.wait(30), run(self, *a, **k))[1])
    return gate


def test_rename_onto_an_existing_tag_merges_across_contacts(org: Any, stack: Any, held_jobs: threading.Event) -> None:
    a = _contact(org, email="a@x.io", tags=["first", "old", "last"])
    b = _contact(org, email="b@x.io", tags=["old", "new"])
    c = _contact(org, email="c@x.io", tags=["new"])
    org.client.post("/orgs/c/tags", json={"name": "old", "color": "#ff0000"})
    org.client.post("/orgs/c/tags", json={"name": "new", "description": "Kept"})

    renamed = org.client.patch("/orgs/c/tags/old", json={"name": "new"})

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "new"
    assert (renamed.json()["state"], renamed.json()["renaming_from"]) == ("renaming", "old")
    old = _tag(org, "old")
    assert (old["state"], old["renaming_to"], old["job"]) == ("renaming", "new", renamed.json()["job"])
    # While the contacts move, the old name takes no contacts and the tags cannot be deleted
    assert org.client.post(f"/orgs/c/contacts/{c['id']}/tags", json={"tags": ["old"]}).status_code == 409
    assert org.client.delete("/orgs/c/tags/new").status_code == 409
    assert org.client.patch("/orgs/c/tags/old", json={"name": "new"}).status_code == 200  # asked again

    held_jobs.set()
    stack.drain()

    assert _tags_of(org, a) == ["first", "new", "last"]  # in the old one's place
    assert _tags_of(org, b) == ["new"]
    assert _tags_of(org, c) == ["new"]
    assert org.client.get("/orgs/c/tags/old").status_code == 404
    merged = _tag(org, "new")
    assert (merged["state"], merged["contact_count"], merged["description"], merged["job"]) == (
        "ready",
        3,
        "Kept",
        None,
    )
    assert "old" not in _listed(org)


def test_rename_to_a_new_name_and_of_a_tag_without_contacts(org: Any, stack: Any) -> None:
    a = _contact(org, email="a@x.io", tags=["legacy"])
    renamed = org.client.patch("/orgs/c/tags/legacy", json={"name": "modern", "color": "#00ff00"})
    assert renamed.json()["state"] == "renaming"
    stack.drain()
    assert _tags_of(org, a) == ["modern"]
    assert _listed(org) == {"modern": (1, True, "ready")}
    assert _tag(org, "modern")["color"] == "#00ff00"

    org.client.post("/orgs/c/tags", json={"name": "empty", "description": "d"})
    moved = org.client.patch("/orgs/c/tags/empty", json={"name": "vacant"}).json()
    assert (moved["name"], moved["state"], moved["description"]) == ("vacant", "ready", "d")
    assert org.client.get("/orgs/c/tags/empty").status_code == 404


def test_delete_removes_the_tag_from_every_contact(org: Any, stack: Any, held_jobs: threading.Event) -> None:
    tagged = [_contact(org, email=f"p{i}@x.io", tags=["promo", "keep"]) for i in range(3)]
    unregistered = _contact(org, email="u@x.io", tags=["stray"])
    org.client.post("/orgs/c/tags", json={"name": "promo"})

    deleting = org.client.delete("/orgs/c/tags/promo")
    assert deleting.status_code == 202, deleting.text
    assert (deleting.json()["state"], deleting.json()["contact_count"]) == ("deleting", 3)
    assert _tag(org, "promo")["state"] == "deleting"
    again = org.client.delete("/orgs/c/tags/promo")
    assert (again.status_code, again.json()["job"]) == (202, deleting.json()["job"])
    assert org.client.post("/orgs/c/tags/promo/contacts", json={"contact_ids": [tagged[0]["id"]]}).status_code == 409
    assert org.client.delete("/orgs/c/tags/stray").status_code == 202

    held_jobs.set()
    stack.drain()

    assert all(_tags_of(org, t) == ["keep"] for t in tagged)
    assert _tags_of(org, unregistered) == []
    assert org.client.get("/orgs/c/tags/promo").status_code == 404
    assert _listed(org) == {"keep": (3, False, "ready")}
    assert org.client.get("/orgs/c/contacts", params={"tag": "promo"}).json()["items"] == []


# -- search -----------------------------------------------------------------------------------------


def test_search_by_several_tags_all_or_any_pages_without_repeats(org: Any) -> None:
    combos = [["a", "b"], ["a"], ["b", "c"], ["a", "b", "c"], ["c"], [], ["b"], ["a", "b"], ["c", "a"]]
    contacts = [_contact(org, email=f"s{i}@x.io", tags=tags) for i, tags in enumerate(combos)]
    newest_first = sorted(contacts, key=lambda c: (c["created_at"], c["id"]), reverse=True)

    def walk(**params: Any) -> tuple[list[str], set[str | None]]:
        seen: list[str] = []
        totals: set[str | None] = set()
        cursor = None
        while True:
            query = {"take": 2, **params, **({"cursor": cursor} if cursor else {})}
            page = org.client.get("/orgs/c/contacts", params=query)
            assert page.status_code == 200, page.text
            seen.extend(c["id"] for c in page.json()["items"])
            totals.add(page.headers.get("x-total-count"))
            cursor = page.json()["next_cursor"]
            if not cursor:
                return seen, totals

    def expected(pick: Any) -> list[str]:
        return [c["id"] for c in newest_first if pick(set(c["tags"]))]

    both, totals = walk(tag=["a", "b"])
    assert both == expected(lambda t: {"a", "b"} <= t)
    assert totals == {None}
    either, totals = walk(tag=["a", "c"], tag_match="any")
    assert either == expected(lambda t: bool(t & {"a", "c"}))
    assert len(either) == len(set(either)) == 7
    assert totals == {None}
    every, _ = walk(tag=["a", "b", "c"], tag_match="any")
    assert every == expected(bool)
    one, totals = walk(tag=["c"], tag_match="any")
    assert one == expected(lambda t: "c" in t)
    assert totals == {"4"}
    narrowed, _ = walk(tag=["a", "c"], tag_match="any", q="s3@")
    assert narrowed == [contacts[3]["id"]]


# -- isolation and validation -----------------------------------------------------------------------


def test_other_orgs_tags_and_contacts_are_not_found(org: Any, other_org: Any) -> None:
    theirs = _contact(other_org, email="t@x.io", tags=["secret"])
    other_org.client.post("/orgs/c/tags", json={"name": "secret"})

    assert org.client.get("/orgs/c/tags/secret").status_code == 404
    assert org.client.patch("/orgs/c/tags/secret", json={"color": "#000000"}).status_code == 404
    assert org.client.patch("/orgs/c/tags/secret", json={"name": "mine"}).status_code == 404
    assert org.client.delete("/orgs/c/tags/secret").status_code == 404
    assert "secret" not in _listed(org)
    assert org.client.get(f"/orgs/{other_org.org_id}/tags").status_code == 404
    assert org.client.post(f"/orgs/{other_org.org_id}/tags", json={"name": "x"}).status_code == 404
    assert org.client.post(f"/orgs/c/contacts/{theirs['id']}/tags", json={"tags": ["x"]}).status_code == 404
    assert org.client.delete(f"/orgs/c/contacts/{theirs['id']}/tags/secret").status_code == 404
    removed = org.client.post("/orgs/c/tags/secret/contacts/remove", json={"contact_ids": [theirs["id"]]})
    assert removed.json()["results"][0]["result"] == "not_found"
    assert org.client.get("/orgs/c/contacts", params={"tag": "secret"}).json()["items"] == []
    assert other_org.client.get(f"/orgs/c/contacts/{theirs['id']}").json()["tags"] == ["secret"]
    assert _listed(other_org) == {"secret": (1, True, "ready")}


def test_invalid_requests_name_the_field(org: Any) -> None:
    contact = _contact(org, email="v@x.io")
    post = org.client.post
    assert _field(post("/orgs/c/tags", json={})) == "name"
    assert _field(post("/orgs/c/tags", json={"name": "x" * 65})) == "name"
    assert _field(post("/orgs/c/tags", json={"name": "bad\x01name"})) == "name"
    assert _field(post("/orgs/c/tags", json={"name": "   "})) == "name"
    assert _field(post("/orgs/c/tags", json={"name": "ok", "color": "red"})) == "color"
    assert _field(post("/orgs/c/tags", json={"name": "ok", "description": "d" * 501})) == "description"
    assert _field(post("/orgs/c/tags", json={"name": "ok", "contact_count": 3})) == "contact_count"
    post("/orgs/c/tags", json={"name": "ok"})
    assert _field(org.client.patch("/orgs/c/tags/ok", json={"name": None})) == "name"
    assert _field(org.client.get("/orgs/c/tags/" + "x" * 65)) == "name"
    assert _field(post("/orgs/c/tags/ok/contacts", json={})) == "contact_ids"
    assert _field(post("/orgs/c/tags/ok/contacts", json={"contact_ids": []})) == "contact_ids"
    assert _field(post("/orgs/c/tags/ok/contacts", json={"contact_ids": [MISSING] * 1001})) == "contact_ids"
    both = {"contact_ids": [contact["id"]], "segment_id": "sg_" + "0" * 26}
    assert _field(post("/orgs/c/tags/ok/contacts", json=both)) == "contact_ids"
    assert _field(post(f"/orgs/c/contacts/{contact['id']}/tags", json={"tags": []})) == "tags"
    assert _field(post(f"/orgs/c/contacts/{contact['id']}/tags", json={"tags": ["\x7f"]})) == "tags"
    listing = org.client.get
    assert _field(listing("/orgs/c/contacts", params={"tag": [f"t{i}" for i in range(11)]})) == "tag"
    assert _field(listing("/orgs/c/contacts", params={"tag": "x" * 65})) == "tag.0"
    assert _field(listing("/orgs/c/contacts", params={"tag": "a", "tag_match": "some"})) == "tag_match"
