"""Contact quality: each factor of the validation score, reachability, system tags and engagement counts,
the facts as signals apply them, and the segment attributes that read them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from audience.contacts import quality
from audience.contacts.models import Contact
from audience.contacts.normalize import normalize_phone, phone_type
from audience.segments.rules import compile_rules, parse_rules

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def contact(**fields: Any) -> Contact:
    base: dict[str, Any] = {"id": "ct_1", "org_id": "org_1", "full_name": "Sari", "created_at": "", "updated_at": ""}
    return Contact(**{**base, **fields})


def signal(kind: str, channel: str = "whatsapp", at: str = "2026-11-24T10:00:00Z", **extra: Any) -> quality.Signal:
    return quality.Signal(kind, channel, at, **extra)


def with_signals(c: Contact, *signals: quality.Signal) -> Contact:
    for s in signals:
        c.reach, c.engagement = quality.apply(c.reach, c.engagement, s, TODAY)
    return c


# -- phone types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("+6281234567890", "mobile"),  # Indonesian mobile
        ("+442079460000", "fixed_line"),  # London landline
        ("+14155552671", "fixed_line_or_mobile"),  # North America cannot tell
        ("+445600123456", "voip"),  # UK 056 range
    ],
)
def test_a_phone_is_normalised_with_its_number_type(raw: str, kind: str) -> None:
    assert normalize_phone(raw, "ID").type == kind
    assert phone_type(raw) == kind


# -- validation score -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "score"),
    [
        ({"phone": "+6281234567890", "phone_type": "mobile"}, 100),
        ({"phone": "+14155552671", "phone_type": "fixed_line_or_mobile"}, 90),
        ({"phone": "+6281234567890", "phone_type": None}, 80),  # stored before types were recorded
        ({"phone": "+442079460000", "phone_type": "fixed_line"}, 70),
        ({"phone": "+445600123456", "phone_type": "voip"}, 60),
        ({"phone": "+448001234567", "phone_type": "toll_free"}, 40),
        ({"email": "sari@example.com"}, 100),
        ({"email": "info@example.com"}, 60),  # a role address
        ({"channels": [{"channel": "whatsapp", "user_id": "12"}]}, 0),  # a WhatsApp id that is no phone
        ({"channels": [{"channel": "telegram", "user_id": "12"}]}, 100),
        ({"phone": "+6281234567890", "phone_type": "mobile", "email": "info@example.com"}, 80),  # the mean
        ({}, 0),
    ],
)
def test_validation_score_per_identifier(fields: dict[str, Any], score: int) -> None:
    assert quality.validation_score(contact(**fields)) == score


def test_validation_score_loses_ten_without_a_name() -> None:
    assert quality.validation_score(contact(full_name=None, email="sari@example.com")) == 90
    assert quality.validation_score(contact(full_name=None, email="info@example.com")) == 50


@pytest.mark.parametrize("local", ["info", "admin", "support", "sales", "noreply", "Info+shop"])
def test_role_addresses(local: str) -> None:
    assert quality.is_role_email(f"{local}@example.com")
    assert not quality.is_role_email("sari.info@example.com")


# -- reachability -----------------------------------------------------------------------------------------

MOBILE = {"phone": "+6281234567890", "phone_type": "mobile"}


def test_reachability_starts_from_what_the_address_says() -> None:
    scores = quality.reachability(contact(**MOBILE, email="sari@example.com"))
    assert scores == {"whatsapp": 50, "sms": 60, "email": 60}
    landline = quality.reachability(contact(phone="+442079460000", phone_type="fixed_line"))
    assert landline == {"whatsapp": 20, "sms": 10}
    voip = quality.reachability(contact(phone="+445600123456", phone_type="voip"))
    assert voip == {"whatsapp": 30, "sms": 40}
    assert quality.reachability(contact(email="info@example.com")) == {"email": 45}
    assert quality.reachability(contact(channels=[{"channel": "telegram", "user_id": "7"}])) == {"telegram": 50}
    assert quality.reachability(contact(channels=[{"channel": "whatsapp", "user_id": "7"}])) == {"whatsapp": 40}


def test_a_message_from_the_contact_adds_40_and_a_delivery_30_up_to_100() -> None:
    c = with_signals(contact(**MOBILE), signal(quality.INBOUND))
    assert quality.reachability(c)["whatsapp"] == 90
    assert quality.reachability(c)["sms"] == 60  # another channel is not affected
    with_signals(c, signal(quality.DELIVERED, at="2026-11-24T11:00:00Z"))
    assert quality.reachability(c)["whatsapp"] == 100
    assert quality.reachability(with_signals(contact(**MOBILE), signal(quality.READ)))["whatsapp"] == 80


def test_an_unreachable_failure_after_the_last_success_caps_it_at_10_until_reached_again() -> None:
    c = with_signals(contact(**MOBILE), signal(quality.INBOUND, at="2026-11-20T10:00:00Z"))
    failure = quality.signal_for_status("whatsapp", "failed", "2026-11-21T10:00:00Z", "131026", broadcast=False)
    assert failure is not None
    with_signals(c, failure)
    assert quality.reachability(c)["whatsapp"] == 10
    assert "unreachable_whatsapp" in quality.system_tags(c)
    assert c.reach["whatsapp"]["code"] == "131026"
    with_signals(c, signal(quality.INBOUND, at="2026-11-22T10:00:00Z"))
    assert quality.reachability(c)["whatsapp"] == 90  # messaged again after the failure: reachable
    assert "unreachable_whatsapp" not in quality.system_tags(c)


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("whatsapp", "131026"),
        ("messenger", "551"),
        ("messenger", "551:1545041"),  # the Send API's "code:subcode"
        ("instagram", "551:1545041"),
        ("telegram", "403"),
        ("sms", "TEXT_UNREACHABLE"),  # AWS End User Messaging event types, as parsed
        ("sms", "TEXT_CARRIER_UNREACHABLE"),
        ("sms", "TEXT_INVALID"),
    ],
)
def test_the_codes_that_mean_unreachable_as_the_providers_give_them(channel: str, code: str) -> None:
    assert quality.is_unreachable(channel, code)
    assert not quality.is_unreachable(channel, "1" + code)
    assert not quality.is_unreachable("whatsapp" if channel != "whatsapp" else "sms", code)


def test_only_codes_that_mean_unreachable_are_failures() -> None:
    assert quality.signal_for_status("whatsapp", "failed", "2026-11-21T10:00:00Z", "131047", broadcast=False) is None
    assert quality.signal_for_status("whatsapp", "failed", "2026-11-21T10:00:00Z", None, broadcast=False) is None
    assert quality.signal_for_status("whatsapp", "sent", "2026-11-21T10:00:00Z", None, broadcast=False) is None
    telegram = quality.signal_for_status("telegram", "failed", "2026-11-21T10:00:00Z", "403", broadcast=False)
    assert telegram is not None
    assert telegram.kind == quality.FAILED


def test_a_bounce_caps_email_and_a_complaint_zeroes_it() -> None:
    c = with_signals(contact(email="sari@example.com"), signal(quality.DELIVERED, "email", "2026-11-20T10:00:00Z"))
    assert quality.reachability(c)["email"] == 90
    with_signals(c, signal(quality.BOUNCE, "email", "2026-11-21T10:00:00Z"))
    assert quality.reachability(c)["email"] == 10
    assert "unreachable_email" in quality.system_tags(c)
    with_signals(c, signal(quality.COMPLAINT, "email", "2026-11-22T10:00:00Z"))
    assert quality.reachability(c)["email"] == 0
    assert "complained" in quality.system_tags(c)


def test_an_opt_out_zeroes_the_channel_until_an_opt_in_and_stopall_zeroes_every_channel() -> None:
    c = with_signals(contact(**MOBILE), signal(quality.INBOUND, at="2026-11-20T10:00:00Z"))
    with_signals(c, signal(quality.STOP, at="2026-11-21T10:00:00Z"))
    assert quality.reachability(c) == {"whatsapp": 0, "sms": 60}
    assert "opted_out_whatsapp" in quality.system_tags(c)
    with_signals(c, signal(quality.START, at="2026-11-22T10:00:00Z"))
    assert quality.reachability(c)["whatsapp"] == 90
    with_signals(c, signal(quality.STOP, quality.ALL_CHANNELS, at="2026-11-23T10:00:00Z"))
    assert quality.reachability(c) == {"whatsapp": 0, "sms": 0}


def test_an_opt_in_on_a_channel_lifts_a_stopall_there_and_a_stopall_lift_opens_every_channel() -> None:
    c = with_signals(
        contact(**MOBILE, email="sari@example.com"),
        signal(quality.STOP, "whatsapp", at="2026-11-20T10:00:00Z"),
        signal(quality.STOP, quality.ALL_CHANNELS, at="2026-11-21T10:00:00Z"),
        signal(quality.START, "sms", at="2026-11-22T10:00:00Z"),
    )
    assert quality.reachability(c) == {"whatsapp": 0, "sms": 60, "email": 0}
    with_signals(c, signal(quality.START, quality.ALL_CHANNELS, at="2026-11-23T10:00:00Z"))
    # Every channel is open, but WhatsApp's own STOP stands until a START on WhatsApp.
    assert quality.reachability(c) == {"whatsapp": 0, "sms": 60, "email": 60}
    assert quality.system_tags(c) == ["opted_out_whatsapp"]


@pytest.mark.parametrize("status", ["UNSUBSCRIBED", "BLOCKED"])
def test_an_unsubscribed_or_blocked_contact_is_unreachable_everywhere(status: str) -> None:
    c = with_signals(contact(**MOBILE, status=status), signal(quality.INBOUND))
    assert quality.reachability(c) == {"whatsapp": 0, "sms": 0}


def test_a_fact_applied_twice_changes_nothing_and_an_older_one_never_replaces_a_newer() -> None:
    once = with_signals(contact(**MOBILE), signal(quality.INBOUND, count=False))
    twice = with_signals(contact(**MOBILE), signal(quality.INBOUND, count=False), signal(quality.INBOUND, count=False))
    assert (once.reach, once.engagement) == (twice.reach, twice.engagement)
    older = with_signals(twice, signal(quality.INBOUND, at="2026-11-01T10:00:00Z", count=False))
    assert older.reach["whatsapp"]["in"] == "2026-11-24T10:00:00Z"


# -- system tags ------------------------------------------------------------------------------------------


def test_system_tags_from_the_identifiers() -> None:
    assert quality.system_tags(contact(channels=[{"channel": "sms", "user_id": "12"}])) == ["invalid_phone"]
    assert quality.system_tags(contact(channels=[{"channel": "email", "user_id": "nobody"}])) == ["invalid_email"]
    assert quality.system_tags(contact(email="admin@example.com")) == ["role_email"]
    role_channel = contact(channels=[{"channel": "email", "user_id": "info@example.com"}])
    assert quality.system_tags(role_channel) == ["role_email"]
    assert quality.validation_score(role_channel) == 60
    assert quality.system_tags(contact(phone="+442079460000", phone_type="fixed_line")) == ["landline"]
    assert quality.system_tags(contact(phone="+445600123456", phone_type="voip")) == ["voip"]
    assert quality.system_tags(contact(**MOBILE, email="sari@example.com")) == []


# -- engagement -------------------------------------------------------------------------------------------


def test_counts_by_window_and_the_last_engaged_time() -> None:
    c = with_signals(
        contact(**MOBILE),
        signal(quality.DELIVERED, at="2026-11-24T09:00:00Z", broadcast=True),
        signal(quality.READ, at="2026-11-24T09:05:00Z"),
        signal(quality.DELIVERED, at="2026-10-01T09:00:00Z"),  # 54 days ago: in 90, not in 30
        signal(quality.INBOUND, at="2026-11-23T09:00:00Z"),
        signal(quality.DELIVERED, at="2026-11-24T09:30:00Z", count=False),  # a retried record: not counted
    )
    shown = quality.engagement(c, NOW)
    assert shown["messages_received_30d"] == 1
    assert shown["messages_received_90d"] == 2
    assert shown["messages_read_30d"] == 1
    assert shown["messages_replied_30d"] == 1
    assert shown["broadcasts_received_30d"] == 1
    assert shown["broadcasts_received"] == 1
    assert shown["last_engaged_at"] == "2026-11-24T09:05:00Z"  # a read or a message, not a delivery


def test_a_bucket_after_today_counts_in_no_window() -> None:
    c = with_signals(contact(**MOBILE), signal(quality.INBOUND, at="2026-12-30T10:00:00Z"))
    assert quality.engagement(c, NOW)["messages_replied_90d"] == 0
    assert quality.engagement(c, datetime(2026, 12, 30, tzinfo=UTC))["messages_replied_30d"] == 1


def test_buckets_older_than_90_days_are_dropped_on_write() -> None:
    c = with_signals(contact(**MOBILE), signal(quality.DELIVERED, at="2026-08-01T09:00:00Z"))
    assert c.engagement["days"] == {}  # too old to count anywhere
    c = with_signals(contact(**MOBILE), signal(quality.DELIVERED, at="2026-09-01T09:00:00Z"))
    assert len(c.engagement["days"]) == 1
    c.reach, c.engagement = quality.apply(c.reach, c.engagement, signal(quality.READ), date(2027, 1, 1))
    assert list(c.engagement["days"]) == [str(quality.day_number("2026-11-24"))]


def test_merging_keeps_the_later_fact_and_sums_the_counts() -> None:
    a = with_signals(contact(**MOBILE), signal(quality.INBOUND, at="2026-11-20T10:00:00Z"))
    b = with_signals(
        contact(**MOBILE),
        signal(quality.INBOUND, at="2026-11-22T10:00:00Z"),
        signal(quality.DELIVERED, at="2026-11-22T11:00:00Z", broadcast=True),
    )
    reach = quality.merge(a.reach, b.reach, "reach")
    engagement = quality.merge(a.engagement, b.engagement, "engagement")
    assert reach["whatsapp"]["in"] == "2026-11-22T10:00:00Z"
    merged = contact(**MOBILE, reach=reach, engagement=engagement)
    assert quality.engagement(merged, NOW)["messages_replied_30d"] == 2
    assert quality.engagement(merged, NOW)["broadcasts_received"] == 1


# -- segment attributes -----------------------------------------------------------------------------------


def matches(rules: dict[str, Any], c: Contact, now: datetime = NOW) -> bool:
    from audience.segments.rules import Subject

    class NoEvents:
        def count(self, *args: Any) -> int:
            return 0

    return compile_rules(parse_rules(rules, {}), now=now, timezone="UTC")(Subject(c, NoEvents()))


def rule(attribute: str, operator: str, value: Any) -> dict[str, Any]:
    return {"match": "all", "rules": [{"attribute": attribute, "operator": operator, "value": value}]}


def test_segment_rules_read_scores_tags_and_windowed_counts() -> None:
    c = with_signals(contact(**MOBILE), signal(quality.INBOUND, at="2026-11-20T10:00:00Z"))
    assert matches(rule("reachability.whatsapp", "greater_or_equal", 70), c)
    assert not matches(rule("reachability.email", "greater_or_equal", 1), c)
    assert matches(rule("validation_score", "greater_than", 90), c)
    assert matches(rule("phone_type", "is", "mobile"), c)
    assert matches(rule("messages_replied_30d", "is", 1), c)
    # 30 days later the message is outside the window: the attribute is relative to today.
    assert not matches(rule("messages_replied_30d", "is", 1), c, datetime(2026, 12, 21, tzinfo=UTC))
    assert parse_rules(rule("messages_replied_30d", "is", 1), {}).relative
    assert not parse_rules(rule("reachability.whatsapp", "greater_or_equal", 70), {}).relative
    failure = quality.signal_for_status("whatsapp", "failed", "2026-11-21T10:00:00Z", "131026", broadcast=False)
    assert failure is not None
    with_signals(c, failure)
    assert not matches(rule("reachability.whatsapp", "greater_or_equal", 70), c)
    assert matches(rule("system_tags", "contains", "unreachable_whatsapp"), c)


def test_explain_shows_a_windowed_count_and_the_quality_attributes_are_known() -> None:
    from audience.segments.rules import QUALITY_ATTRIBUTES, Subject, attribute_names, explain

    class NoEvents:
        def count(self, *args: Any) -> int:
            return 0

    c = with_signals(contact(**MOBILE, custom_fields={"ved_30d": 999}), signal(quality.INBOUND))
    tree = rule("messages_replied_30d", "is", 1)
    shown = explain(parse_rules(tree, {}), Subject(c, NoEvents()), now=NOW)
    assert (shown["rules"][0]["matched"], shown["rules"][0]["actual"]) == (True, 1)
    assert attribute_names(tree) & QUALITY_ATTRIBUTES == {"messages_replied_30d"}
    assert not attribute_names(rule("email", "is", "a@b.co")) & QUALITY_ATTRIBUTES


def _record(old: dict[str, Any], new: dict[str, Any], sk: str = "#CONTACT") -> dict[str, Any]:
    return {
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"pk": {"S": "O#org_1#C#ct_1"}, "sk": {"S": sk}},
            "OldImage": old,
            "NewImage": new,
            "SequenceNumber": "1",
        },
    }


def test_a_change_of_facts_alone_is_told_apart_from_a_change_of_the_contact() -> None:
    from audience.segments.stream import facts_only, facts_only_targets

    base = {"pk": {"S": "O#org_1#C#ct_1"}, "sk": {"S": "#CONTACT"}, "version": {"N": "3"}, "email": {"S": "a@b.co"}}
    fact = {**base, "version": {"N": "4"}, "reach": {"M": {"whatsapp": {"M": {"in": {"S": "2026"}}}}}}
    edit = {**fact, "email": {"S": "c@d.co"}}
    assert facts_only(_record(base, fact))
    assert not facts_only(_record(base, edit))
    assert facts_only_targets([_record(base, fact)]) == {("org_1", "ct_1")}
    assert facts_only_targets([_record(base, fact), _record(fact, edit)]) == set()


# -- the write ----------------------------------------------------------------------------------------------


def test_record_signal_moves_the_version_writes_nothing_for_a_known_fact_and_skips_a_gone_contact(org: Any) -> None:
    from audience.contacts.repository import ContactsRepository
    from audience.settings import get_settings

    created = org.client.post("/orgs/c/contacts", json={"phone": "+6281234567890", "first_name": "Sari"}).json()
    repository = ContactsRepository(get_settings().contacts_table)
    before = repository.get(org.org_id, created["id"])
    fact = signal(quality.INBOUND, at=datetime.now(UTC).isoformat())
    assert repository.record_signal(org.org_id, created["id"], fact)
    after = repository.get(org.org_id, created["id"])
    assert after.version == before.version + 1
    assert after.reach["whatsapp"]["in"] == fact.at
    assert after.updated_at == before.updated_at  # a fact is not an edit of the contact
    again = quality.Signal(fact.kind, fact.channel, fact.at, count=False)
    assert repository.record_signal(org.org_id, created["id"], again)
    assert repository.get(org.org_id, created["id"]).version == after.version  # nothing new: nothing written
    # A concurrent edit of the contact keeps the fact: the edit's version check makes it read again.
    reply = org.client.patch(f"/orgs/c/contacts/{created['id']}", json={"last_name": "Putri"})
    assert reply.status_code == 200, reply.text
    assert repository.get(org.org_id, created["id"]).reach == after.reach
    assert not repository.record_signal(org.org_id, "ct_missing", fact)


def test_segment_function_skips_a_fact_only_change_unless_a_segment_reads_quality(stack: Any, org: Any) -> None:
    from audience import container

    created = org.client.post("/orgs/c/contacts", json={"email": "sari@example.com"}).json()
    by_email = {"match": "all", "rules": [{"attribute": "email", "operator": "ends_with", "value": "@example.com"}]}
    assert (
        org.client.post("/orgs/c/segments", json={"name": "E", "type": "dynamic", "rules": by_email}).status_code == 201
    )
    stack.drain()
    old = {"pk": {"S": f"O#{org.org_id}#C#{created['id']}"}, "sk": {"S": "#CONTACT"}, "version": {"N": "1"}}
    new = {**old, "version": {"N": "2"}, "engagement": {"M": {"last": {"S": "2026-11-24"}}}}
    record = _record(old, new)
    record["dynamodb"]["Keys"]["pk"] = old["pk"]
    evaluated: list[str] = []
    evaluator = container.segment_evaluator()
    original = evaluator.evaluate

    def counting(org_id: str, contact_id: str, book: Any) -> Any:
        evaluated.append(contact_id)
        return original(org_id, contact_id, book)

    evaluator.evaluate = counting  # type: ignore[method-assign]
    try:
        assert stack.invoke("SegmentFunction", {"Records": [record]}) == {"batchItemFailures": []}
        assert evaluated == []  # no segment of the org reads a quality attribute
        reach = {"match": "all", "rules": [{"attribute": "reachability.email", "operator": "greater_than", "value": 1}]}
        assert (
            org.client.post("/orgs/c/segments", json={"name": "R", "type": "dynamic", "rules": reach}).status_code
            == 201
        )
        assert stack.invoke("SegmentFunction", {"Records": [record]}) == {"batchItemFailures": []}
        assert evaluated == [created["id"]]
    finally:
        evaluator.evaluate = original  # type: ignore[method-assign]
