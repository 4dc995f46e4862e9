"""Marketing email carries a one-click unsubscribe link (RFC 8058): the POST unsubscribes, a GET (a person
opening the link, or a mail scanner following it) only shows a page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.channels import connect


@pytest.fixture
def captured(stack: Any) -> Any:
    """The SendEmail parameters the SES adapter sends (moto keeps no headers)."""
    from audience import aws

    calls: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    client = aws.client("sesv2")
    client.meta.events.register("provide-client-params.sesv2.SendEmail", keep)
    yield calls
    client.meta.events.unregister("provide-client-params.sesv2.SendEmail", keep)


def _email_broadcast(stack: Any, org: Any, domain: str, emails: list[str]) -> str:
    stack.client("ses").verify_domain_identity(Domain=domain)
    connection = connect(org, "ses", {"identity": domain})
    for email in emails:
        assert org.client.post("/orgs/c/contacts", json={"email": email, "first_name": "Ana"}).status_code == 201
    body = {
        "type": "marketing",
        "name": "Newsletter",
        "audience_all": True,
        "channels": [
            {
                "channel": "email",
                "connection_id": connection["id"],
                "email": {"subject": "News for {{contact.first_name}}", "html": "<p>Hello {{contact.first_name}}</p>"},
            }
        ],
    }
    broadcast = org.client.post("/orgs/c/broadcasts", json=body).json()
    assert org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/schedule", json={}).status_code == 200
    stack.drain()
    return str(broadcast["id"])


def _link(params: dict[str, Any]) -> str:
    headers = {h["Name"]: h["Value"] for h in params["Content"]["Simple"]["Headers"]}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = headers["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://")
    return url[url.index("/u/") :]


def test_marketing_email_carries_a_one_click_link_and_only_the_post_unsubscribes(
    stack: Any, org: Any, captured: list[dict[str, Any]]
) -> None:
    broadcast_id = _email_broadcast(stack, org, "news1.example.com", ["ana@x.io", "bo@x.io"])
    stats = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()["stats"]
    assert (stats["total"], stats["sent"]) == (2, 2)
    by_address = {p["Destination"]["ToAddresses"][0]: p for p in captured}
    assert by_address["ana@x.io"]["FromEmailAddress"] == "no-reply@news1.example.com"
    path = _link(by_address["ana@x.io"])
    assert _link(by_address["bo@x.io"]) != path  # one link per message
    ana = org.client.get("/orgs/c/contacts", params={"q": "ana@x.io"}).json()["items"][0]["id"]

    page = org.client.get(path, headers={"Authorization": ""})  # a scanner: no key, just the link
    assert page.status_code == 200
    assert "<form" in page.text
    assert page.headers["cache-control"] == "no-store"
    eligible = org.client.get(
        f"/orgs/c/contacts/{ana}/eligibility", params={"channel": "email", "purpose": "marketing"}
    )
    assert eligible.json()["allowed"] is True

    done = org.client.post(path, content=b"List-Unsubscribe=One-Click", headers={"Authorization": ""})
    assert done.status_code == 200
    assert org.client.post(path, headers={"Authorization": ""}).status_code == 200  # a repeat is harmless
    decision = org.client.get(
        f"/orgs/c/contacts/{ana}/eligibility", params={"channel": "email", "purpose": "marketing"}
    )
    assert (decision.json()["allowed"], decision.json()["reason"]) == (False, "opted_out")
    transactional = org.client.get(
        f"/orgs/c/contacts/{ana}/eligibility", params={"channel": "email", "purpose": "transactional"}
    )
    assert transactional.json()["allowed"] is True

    # The next run of a copy leaves her out.
    copy = org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/duplicate").json()
    assert org.client.post(f"/orgs/c/broadcasts/{copy['id']}/schedule", json={}).status_code == 200
    stack.drain()
    stats = org.client.get(f"/orgs/c/broadcasts/{copy['id']}").json()["stats"]
    assert (stats["total"], stats["excluded"]) == (1, {"opted_out": 1})


@pytest.mark.parametrize("token", ["0" * 32, "short", "A" * 32, "0" * 33])
def test_an_unknown_or_malformed_link_is_not_found(stack: Any, org: Any, token: str) -> None:
    assert org.client.get(f"/u/{token}", headers={"Authorization": ""}).status_code == 404
    assert org.client.post(f"/u/{token}", headers={"Authorization": ""}).status_code == 404
