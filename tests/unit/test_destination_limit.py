"""The per-destination limit of transactional sends on moto, from template.yaml's broadcasts table: at most
`limit` sends of a broadcast to one address in any period (rolling), one address's flood leaving the others
alone, nothing counted for a refused send, and items that name no address and expire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from audience import aws
from audience.broadcasts.destinations import DestinationLimit, DestinationLimits, destination, destination_pk
from audience.errors import RateLimitedError, ValidationError

ORG, BROADCAST = "org_01hzzzzzzzzzzzzzzzzzzzzzzz", "bc_01hzzzzzzzzzzzzzzzzzzzzzzz"
NOW = 1_800_000_000.0
PHONE = "+6281234567890"


@pytest.fixture(scope="module")
def table() -> Iterator[tuple[Any, str]]:
    """The stack (one for the module) and its broadcasts table's name."""
    from devstack.testing import local_stack
    from tests.conftest import ROOT

    with local_stack(str(ROOT / "template.yaml"), parameters={"Stage": "test"}) as running:
        yield running, running.outputs["BroadcastsTableName"]


@pytest.fixture
def limits(table: tuple[Any, str]) -> DestinationLimits:
    stack, name = table
    dynamodb = stack.client("dynamodb")
    for item in dynamodb.scan(TableName=name)["Items"]:
        dynamodb.delete_item(TableName=name, Key={"pk": item["pk"], "sk": item["sk"]})
    return DestinationLimits(name)


def refused(limits: DestinationLimits, to: list[str], limit: DestinationLimit, at: float) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as caught:
        limits.take(ORG, BROADCAST, to, limit, now=at)
    return caught.value


def test_limit_sends_go_at_once_then_the_next_waits_one_interval(limits: DestinationLimits) -> None:
    limit = DestinationLimit(5, 600)
    for n in range(5):
        limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW + n)

    error = refused(limits, [PHONE], limit, NOW + 5)

    # One send frees up one interval (600 s / 5) after the first one.
    assert error.retry_after == 120 - 5
    assert error.limit == 5
    assert "destination_rate_limit" in error.message
    assert "5 messages per 600 s" in error.message
    assert PHONE not in error.message
    assert PHONE.removeprefix("+") not in error.message


def test_the_limit_rolls_rather_than_resetting_at_a_window_edge(limits: DestinationLimits) -> None:
    limit = DestinationLimit(3, 60)
    for _ in range(3):
        limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW)
    refused(limits, [PHONE], limit, NOW + 19)

    # One interval (20 s) later one more fits, not a whole new batch of three.
    limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW + 20)
    assert refused(limits, [PHONE], limit, NOW + 20).retry_after == 20
    # A period of silence frees them all again.
    for _ in range(3):
        limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW + 200)
    refused(limits, [PHONE], limit, NOW + 200)


def test_one_address_flooded_leaves_other_addresses_and_broadcasts_alone(limits: DestinationLimits) -> None:
    limit = DestinationLimit(2, 600)
    for _ in range(2):
        limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW)
    refused(limits, [PHONE], limit, NOW)

    limits.take(ORG, BROADCAST, ["+6281200000000"], limit, now=NOW)
    limits.take(ORG, "bc_other", [PHONE], limit, now=NOW)
    limits.take("org_other", BROADCAST, [PHONE], limit, now=NOW)


def test_a_phone_counts_once_whatever_the_channel_and_form() -> None:
    assert destination("whatsapp", "6281234567890") == PHONE
    assert destination("sms", PHONE) == PHONE
    assert destination("sms", "+62 812-3456-7890") == PHONE
    assert destination("sms", "0812-3456-7890", "ID") == PHONE
    assert destination("whatsapp", "6281234567890", "ID") == PHONE
    assert destination("email", " Siti@Example.COM") == "siti@example.com"
    assert destination("telegram", "12345") == "telegram:12345"
    assert destination("messenger", "12345") != destination("telegram", "12345")


def test_a_whatsapp_id_is_an_international_number_in_any_org_country() -> None:
    # A WhatsApp id is the number's international digits: read in a German org's country as if national,
    # 49 151 ... would become +49 49 151 ..., a second destination for the same phone.
    assert destination("whatsapp", "4915112345678", "DE") == "+4915112345678"
    assert destination("whatsapp", "4915112345678", "DE") == destination("sms", "+4915112345678", "DE")
    assert destination("sms", "015112345678", "DE") == "+4915112345678"


def test_a_fault_on_one_destination_gives_back_the_others(limits: DestinationLimits) -> None:
    limit = DestinationLimit(1, 600)
    email = "siti@example.com"
    phone_pk = destination_pk(ORG, BROADCAST, PHONE)

    def throttle(params: dict[str, Any], **_: Any) -> None:
        if params["Key"]["pk"]["S"] == phone_pk:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds"}
            raise ClientError({"Error": error}, "UpdateItem")

    # The table throttles writes to the phone's schedule after the email was already counted.
    events = aws.client("dynamodb").meta.events
    events.register("provide-client-params.dynamodb.UpdateItem", throttle)
    try:
        with pytest.raises(ClientError, match="Rate of requests"):
            limits.take(ORG, BROADCAST, [email, PHONE], limit, now=NOW)
    finally:
        events.unregister("provide-client-params.dynamodb.UpdateItem", throttle)

    # The failed call counted nothing: the email's one send of the period is still there.
    limits.take(ORG, BROADCAST, [email], limit, now=NOW)
    refused(limits, [email], limit, NOW)


def test_one_send_to_a_phone_on_whatsapp_and_sms_counts_once(limits: DestinationLimits) -> None:
    limit = DestinationLimit(2, 600)
    both = [destination("whatsapp", PHONE.removeprefix("+")), destination("sms", PHONE)]

    limits.take(ORG, BROADCAST, both, limit, now=NOW)
    limits.take(ORG, BROADCAST, both, limit, now=NOW)

    refused(limits, both, limit, NOW)


def test_a_refused_send_counts_against_none_of_its_addresses(limits: DestinationLimits) -> None:
    limit = DestinationLimit(1, 600)
    email = "siti@example.com"
    limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW)

    # The email is counted first, then the phone refuses: the email's count is given back.
    refused(limits, [email, PHONE], limit, NOW)

    limits.take(ORG, BROADCAST, [email], limit, now=NOW)
    refused(limits, [email], limit, NOW)


def test_a_release_gives_the_sends_back(limits: DestinationLimits) -> None:
    limit = DestinationLimit(1, 600)
    taken = limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW)

    limits.release(taken)

    limits.take(ORG, BROADCAST, [PHONE], limit, now=NOW)


def test_items_name_no_address_and_expire(table: tuple[Any, str], limits: DestinationLimits) -> None:
    stack, name = table
    limits.take(ORG, BROADCAST, [PHONE, "siti@example.com"], DestinationLimit(5, 600), now=NOW)

    items = stack.client("dynamodb").scan(TableName=name)["Items"]

    assert len(items) == 2
    assert {i["pk"]["S"] for i in items} == {
        destination_pk(ORG, BROADCAST, PHONE),
        destination_pk(ORG, BROADCAST, "siti@example.com"),
    }
    for item in items:
        text = repr(item)
        assert "6281234567890" not in text
        assert "siti" not in text
        assert item["sk"]["S"] == "#D"
        assert int(item["expires_at"]["N"]) <= NOW + 600 + 2


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"limit": 0}, "destination_rate_limit.limit"),
        ({"limit": 10_001}, "destination_rate_limit.limit"),
        ({"limit": True}, "destination_rate_limit.limit"),
        ({"limit": 5, "period_seconds": 0}, "destination_rate_limit.period_seconds"),
        ({"period_seconds": 86_401}, "destination_rate_limit.period_seconds"),
        ({"limit": 5, "per": 60}, "destination_rate_limit"),
        ([5, 600], "destination_rate_limit"),
    ],
)
def test_limits_out_of_bounds_are_refused(value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DestinationLimit.parse(value)
    assert caught.value.fields[0]["field"] == field


def test_default_is_five_per_ten_minutes() -> None:
    assert DestinationLimit.parse(None) == DestinationLimit(5, 600)
    assert DestinationLimit.parse({"limit": 10}) == DestinationLimit(10, 600)
    assert DestinationLimit.parse({"limit": 10_000, "period_seconds": 86_400}).as_dict() == {
        "limit": 10_000,
        "period_seconds": 86_400,
    }
