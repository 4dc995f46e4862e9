"""API keys: hashed at rest, shown once, revocable at once, scoped to one org, rate limited."""

import boto3

from audience.orgs.service import hash_key


def _scan(table_name):
    return boto3.resource("dynamodb").Table(table_name).scan()["Items"]


def test_key_is_stored_only_as_a_hash_and_shown_once(org, stack):
    created = org.client.post("/orgs/c/api-keys", json={"name": "backend"})
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("aud_")

    items = _scan(stack.resources["OrgsTable"])
    dumped = repr(items)
    assert secret not in dumped
    assert hash_key(secret) in dumped

    listed = org.client.get("/orgs/c/api-keys").json()
    assert {k["name"] for k in listed} == {"default", "backend"}
    assert all("key" not in k and "key_hash" not in k for k in listed)


def test_new_key_works_and_deleted_key_is_refused_at_once(org):
    created = org.client.post("/orgs/c/api-keys", json={"name": "temp"}).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert org.client.get("/orgs/c/contacts", headers=headers).status_code == 200

    assert org.client.delete(f"/orgs/c/api-keys/{created['id']}").status_code == 204
    refused = org.client.get("/orgs/c/contacts", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_malformed_and_forged_keys_are_401(org):
    forged = org.api_key[:-4] + "aaaa" if not org.api_key.endswith("aaaa") else org.api_key[:-4] + "bbbb"
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {forged}"}):
        response = org.client.get("/orgs/c/contacts", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"


def test_another_orgs_key_cannot_be_deleted(org, other_org):
    theirs = other_org.client.post("/orgs/c/api-keys", json={"name": "theirs"}).json()
    assert org.client.delete(f"/orgs/c/api-keys/{theirs['id']}").status_code == 404
    headers = {"Authorization": f"Bearer {theirs['key']}"}
    assert other_org.client.get("/orgs/c", headers=headers).status_code == 200


def test_rate_limit_answers_429_with_retry_after_and_spares_other_keys(org, other_org):
    limited = org.client.post("/orgs/c/api-keys", json={"name": "tiny", "rate_limit_per_minute": 3}).json()
    headers = {"Authorization": f"Bearer {limited['key']}"}
    statuses = [org.client.get("/orgs/c/contacts/stats", headers=headers) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["X-RateLimit-Limit"] == "3"
    assert statuses[2].headers["X-RateLimit-Remaining"] == "0"
    retry_after = int(statuses[3].headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert statuses[3].json()["error"]["code"] == "rate_limited"

    assert org.client.get("/orgs/c/contacts/stats").status_code == 200
    assert other_org.client.get("/orgs/c/contacts/stats").status_code == 200


def test_oversized_body_is_413(org):
    from audience.settings import get_settings

    too_big = "x" * (get_settings().max_body_bytes + 1)
    response = org.client.post("/orgs/c/contacts", content=too_big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_org_can_be_read_and_its_default_country_changed(org):
    assert org.client.get("/orgs/c").json()["default_country"] == "ID"
    assert org.client.patch("/orgs/c", json={"default_country": "us"}).json()["default_country"] == "US"
    created = org.client.post("/orgs/c/contacts", json={"phone": "(415) 555-2671"}).json()
    assert created["phone"] == "+14155552671"
    bad = org.client.patch("/orgs/c", json={"default_country": "U1"})
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["value"] == "U1"
