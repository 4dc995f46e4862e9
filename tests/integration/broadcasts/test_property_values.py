"""Per-recipient property values of a marketing broadcast, uploaded as a CSV or XLSX keyed by email or
phone: a dry run that reports and writes nothing, an upload that the next run's messages use (an empty
cell keeps the default), and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.channels import BotApiStub, Tenant
from tests.importfiles import write_xlsx
from tests.integration.broadcasts.conftest import telegram_connection
from tests.integration.broadcasts.test_marketing_send import _schedule

CSV = (
    "Email,Coupon,Notes\n"
    "ann@example.com,AAA,first\n"
    "BOB@Example.com,BBB,\n"
    "nobody@example.com,ZZZ,\n"
    "not-an-email,QQQ,\n"
    "cy@example.com,,\n"
    "ann@example.com,AAA2,again\n"
)


def _contacts(org: Tenant) -> dict[str, str]:
    ids = {}
    for chat, (name, email, phone) in enumerate(
        [
            ("Ann", "ann@example.com", "+6281100000001"),
            ("Bob", "bob@example.com", None),
            ("Cy", "cy@example.com", None),
        ],
        start=1,
    ):
        body: dict[str, Any] = {
            "first_name": name,
            "email": email,
            "channels": [{"channel": "telegram", "user_id": str(chat)}],
        }
        if phone:
            body["phone"] = phone
        answer = org.client.post("/orgs/c/contacts", json=body)
        assert answer.status_code == 201, answer.text
        ids[name] = answer.json()["id"]
    return ids


def _broadcast(org: Tenant, connection_id: str, **fields: Any) -> str:
    body = {
        "type": "marketing",
        "name": "Coupons",
        "audience_all": True,
        "properties": [{"name": "coupon", "default": "WELCOME"}],
        "channels": [
            {
                "channel": "telegram",
                "connection_id": connection_id,
                "text": {"text": "Hi {{contact.first_name}}: {{coupon}}"},
            }
        ],
        **fields,
    }
    answer = org.client.post("/orgs/c/broadcasts", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _upload(org: Tenant, broadcast_id: str, content: bytes, expected: int = 200, **params: Any) -> Any:
    answer = org.client.post(
        f"/orgs/c/broadcasts/{broadcast_id}/property-values",
        content=content,
        params=params,
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == expected, answer.text
    return answer.json()


def test_a_dry_run_reports_every_row_and_writes_nothing(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    _contacts(org)
    broadcast_id = _broadcast(org, connection_id)

    report = _upload(org, broadcast_id, CSV.encode(), dry_run=True)
    assert report["dry_run"] is True
    assert report["key"] == "email"
    assert report["columns"] == {"Coupon": "coupon"}
    assert report["ignored_columns"] == ["Notes"]
    assert (report["rows"], report["matched"], report["unmatched"], report["invalid"], report["duplicates"]) == (
        6,
        3,
        1,
        1,
        1,
    )
    assert [(e["row"], e["column"]) for e in report["errors"]] == [(4, "email"), (5, "email")]
    assert "no contact" in report["errors"][0]["message"]
    assert org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()["property_values"] is None


def test_uploaded_values_fill_each_recipients_message_and_empty_cells_keep_the_default(
    stack: Any, bot_api: BotApiStub, org: Tenant
) -> None:
    connection_id, token = telegram_connection(org)
    _contacts(org)
    broadcast_id = _broadcast(org, connection_id)
    report = _upload(org, broadcast_id, CSV.encode())
    assert report["dry_run"] is False
    assert report["matched"] == 3
    view = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()
    assert view["property_values"]["contacts"] == 3

    _schedule(org, broadcast_id)
    stack.drain()
    texts = sorted(body["text"] for body in bot_api.sent(token))
    # Ann's last row wins; Cy's empty cell keeps the default.
    assert texts == ["Hi Ann: AAA2", "Hi Bob: BBB", "Hi Cy: WELCOME"]


def test_an_xlsx_keyed_by_phone_replaces_the_earlier_upload(
    stack: Any, bot_api: BotApiStub, org: Tenant, tmp_path: Path
) -> None:
    connection_id, token = telegram_connection(org)
    _contacts(org)
    broadcast_id = _broadcast(org, connection_id)
    _upload(org, broadcast_id, CSV.encode())
    # The org reads national numbers in Indonesia: 0811-0000-0001 is Ann's +6281100000001.
    workbook = write_xlsx(tmp_path, [["Phone", "COUPON"], ["0811-0000-0001", "XLS1"]], name="values.xlsx")
    report = _upload(org, broadcast_id, workbook.read_bytes(), key="phone", file_name="values.xlsx")
    assert (report["rows"], report["matched"]) == (1, 1)

    _schedule(org, broadcast_id)
    stack.drain()
    texts = sorted(body["text"] for body in bot_api.sent(token))
    assert texts == ["Hi Ann: XLS1", "Hi Bob: WELCOME", "Hi Cy: WELCOME"]


def test_refusals_name_what_is_wrong(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    broadcast_id = _broadcast(org, connection_id)
    no_key = _upload(org, broadcast_id, b"Name,Coupon\nAnn,A\n", 422)
    assert "email" in str(no_key)
    no_property = _upload(org, broadcast_id, b"Email,Discount\nann@example.com,A\n", 422)
    assert "coupon" in str(no_property)
    not_a_sheet = _upload(org, broadcast_id, b"\x00\x01\x02" * 100, 422, file_name="values.bin")
    assert not_a_sheet["error"]["message"]

    otp = org.client.post(
        "/orgs/c/broadcasts",
        json={
            "type": "transactional",
            "name": "Codes",
            "properties": [{"name": "coupon"}],
            "channels": [{"channel": "telegram", "connection_id": connection_id, "text": {"text": "{{coupon}}"}}],
        },
    ).json()["id"]
    assert "marketing" in str(_upload(org, otp, b"Email,Coupon\nann@example.com,A\n", 422))
