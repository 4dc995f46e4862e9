"""Broadcasts without I/O: lifecycle transitions, template parsing and rendering per channel."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from audience.broadcasts.models import (
    ACTIONS,
    STATUSES,
    TYPES,
    ChannelTemplate,
    EmailTemplate,
    Property,
    TextTemplate,
    VariableSource,
    WhatsAppTemplate,
    deletable,
    editable,
    parse_channel_template,
    parse_channels,
    parse_properties,
    transition,
)
from audience.broadcasts.render import MissingVariable, format_field, render
from audience.contacts.models import Contact
from audience.errors import ConflictError, ValidationError
from audience.providers.base import ButtonParam, Param, Template

CONNECTION = "ch_" + "0" * 26

# The lifecycle, written out independently of the module's table.
ALLOWED = {
    ("marketing", "DRAFT", "schedule"): "SCHEDULED",
    ("marketing", "CANCELLED", "schedule"): "SCHEDULED",
    ("marketing", "FAILED", "schedule"): "SCHEDULED",
    ("marketing", "SCHEDULED", "start_sending"): "SENDING",
    ("marketing", "SENDING", "finish"): "SENT",
    ("marketing", "SCHEDULED", "fail"): "FAILED",
    ("marketing", "SENDING", "fail"): "FAILED",
    ("marketing", "SCHEDULED", "cancel"): "CANCELLED",
    ("marketing", "SENDING", "cancel"): "CANCELLED",
    ("transactional", "DRAFT", "activate"): "ACTIVE",
    ("transactional", "PAUSED", "activate"): "ACTIVE",
    ("transactional", "ACTIVE", "pause"): "PAUSED",
}
EVERY = [(kind, status, action) for kind in TYPES for status in STATUSES[kind] for action in ACTIONS]


def test_statuses_and_actions_are_the_documented_ones() -> None:
    assert TYPES == ("marketing", "transactional")
    assert STATUSES["marketing"] == ("DRAFT", "SCHEDULED", "SENDING", "SENT", "CANCELLED", "FAILED")
    assert STATUSES["transactional"] == ("DRAFT", "ACTIVE", "PAUSED")
    assert set(ACTIONS) == {"schedule", "start_sending", "finish", "fail", "cancel", "activate", "pause"}
    assert len(EVERY) == 63


@pytest.mark.parametrize(("kind", "status", "action"), EVERY)
def test_every_transition(kind: str, status: str, action: str) -> None:
    expected = ALLOWED.get((kind, status, action))
    if expected is not None:
        assert transition(kind, status, action) == expected
        return
    with pytest.raises(ConflictError) as caught:
        transition(kind, status, action)
    message = caught.value.message
    assert caught.value.details == {"type": kind, "status": status, "action": action}
    # Each refusal says either what this type of broadcast does instead, or what status it is in.
    if action in ("activate", "pause") and kind == "marketing":
        assert message.startswith("marketing broadcasts are scheduled, not ")
    elif action not in ("activate", "pause") and kind == "transactional":
        assert message.startswith("transactional broadcasts are activated, not ")
    else:
        assert status in message


@pytest.mark.parametrize(
    ("kind", "status", "action", "message"),
    [
        ("marketing", "SENT", "schedule", "a SENT broadcast cannot be scheduled again: duplicate it to send it again"),
        (
            "marketing",
            "SENDING",
            "schedule",
            "only a DRAFT, CANCELLED or FAILED marketing broadcast can be scheduled, this one is SENDING",
        ),
        ("transactional", "DRAFT", "schedule", "transactional broadcasts are activated, not scheduled"),
        ("marketing", "DRAFT", "pause", "marketing broadcasts are scheduled, not paused: cancel it to stop sending"),
        (
            "marketing",
            "DRAFT",
            "start_sending",
            "only a SCHEDULED marketing broadcast can start sending, this one is DRAFT",
        ),
        ("marketing", "SENT", "cancel", "a SENT broadcast cannot be cancelled: its messages have all gone out"),
        ("marketing", "CANCELLED", "cancel", "this marketing broadcast is already CANCELLED"),
        ("transactional", "ACTIVE", "activate", "this transactional broadcast is already ACTIVE"),
        ("transactional", "DRAFT", "pause", "a DRAFT broadcast is not active, so there is nothing to pause"),
    ],
)
def test_refusal_messages(kind: str, status: str, action: str, message: str) -> None:
    with pytest.raises(ConflictError) as caught:
        transition(kind, status, action)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("broadcast", "DRAFT", "schedule"), "type"),
        (("marketing", "ACTIVE", "schedule"), "status"),
        (("transactional", "SENT", "activate"), "status"),
        (("marketing", "DRAFT", "launch"), "action"),
    ],
)
def test_unknown_type_status_or_action(args: tuple[str, str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        transition(*args)
    assert caught.value.fields[0]["field"] == field


def test_editable_and_deletable() -> None:
    statuses = {s for kind in TYPES for s in STATUSES[kind]}
    assert {s for s in statuses if editable(s)} == {"DRAFT"}
    assert {s for s in statuses if not deletable(s)} == {"SENDING"}


# -- parsing ---------------------------------------------------------------------------------------------


def _whatsapp_channel() -> dict[str, Any]:
    return {
        "channel": "whatsapp",
        "connection_id": CONNECTION,
        "whatsapp": {
            "name": "order_update",
            "language": "en_US",
            "header": [{"kind": "contact_first_name"}],
            "body": [
                {"kind": "contact_name"},
                {"kind": "custom_field", "value": "tier"},
                {"kind": "property", "value": "coupon"},
                {"kind": "static", "value": "See you soon"},
            ],
            "buttons": [{"index": 1, "sub_type": "url", "source": {"kind": "property", "value": "coupon"}}],
        },
    }


def test_parse_whatsapp_channel() -> None:
    parsed = parse_channel_template(_whatsapp_channel(), ["coupon"])
    assert parsed == ChannelTemplate(
        "whatsapp",
        CONNECTION,
        whatsapp=WhatsAppTemplate(
            "order_update",
            "en_US",
            [VariableSource("contact_first_name")],
            [
                VariableSource("contact_name"),
                VariableSource("custom_field", "tier"),
                VariableSource("property", "coupon"),
                VariableSource("static", "See you soon"),
            ],
            [(1, "url", VariableSource("property", "coupon"))],
        ),
    )


def test_parse_email_and_text_channels() -> None:
    channels = parse_channels(
        [
            {
                "channel": "email",
                "connection_id": CONNECTION,
                "email": {"subject": "Hi {{ contact.first_name }}", "html": "<p>{{coupon}}</p>", "text": None},
            },
            {"channel": "telegram", "connection_id": CONNECTION, "text": {"text": "Code {{contact.fields.tier}}"}},
        ],
        ["coupon"],
    )
    assert channels[0].email == EmailTemplate("Hi {{ contact.first_name }}", "<p>{{coupon}}</p>", None)
    assert channels[1].text == TextTemplate("Code {{contact.fields.tier}}")


def _with(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["channel"], "fax", "channels[0].channel"),
        (["connection_id"], "nope", "channels[0].connection_id"),
        (["whatsapp"], KeyError, "channels[0].whatsapp"),
        (["whatsapp", "name"], "Order Update", "channels[0].whatsapp.name"),
        (["whatsapp", "name"], "x" * 513, "channels[0].whatsapp.name"),
        (["whatsapp", "language"], "english", "channels[0].whatsapp.language"),
        (["whatsapp", "body", 1, "kind"], "contact_age", "channels[0].whatsapp.body[1].kind"),
        (["whatsapp", "body", 1, "value"], None, "channels[0].whatsapp.body[1].value"),
        (["whatsapp", "body", 1, "value"], "Tier", "channels[0].whatsapp.body[1].value"),
        (["whatsapp", "body", 2, "value"], "undeclared", "channels[0].whatsapp.body[2].value"),
        (["whatsapp", "body", 3, "value"], "  ", "channels[0].whatsapp.body[3].value"),
        (["whatsapp", "body", 0, "value"], "x", "channels[0].whatsapp.body[0].value"),
        (["whatsapp", "body", 0, "extra"], 1, "channels[0].whatsapp.body[0].extra"),
        (["whatsapp", "body"], [{"kind": "contact_name"}] * 21, "channels[0].whatsapp.body"),
        (["whatsapp", "header"], [{"kind": "contact_name"}] * 2, "channels[0].whatsapp.header"),
        (["whatsapp", "buttons", 0, "index"], 10, "channels[0].whatsapp.buttons[0].index"),
        (["whatsapp", "buttons", 0, "index"], True, "channels[0].whatsapp.buttons[0].index"),
        (["whatsapp", "buttons", 0, "sub_type"], "call", "channels[0].whatsapp.buttons[0].sub_type"),
        (["whatsapp", "buttons", 0, "source", "kind"], None, "channels[0].whatsapp.buttons[0].source.kind"),
        (["email"], {"subject": "x", "html": "y"}, "channels[0].email"),
    ],
)
def test_parse_errors_name_the_path(path: list[Any], value: Any, field: str) -> None:
    data = _with(_whatsapp_channel(), path, value)
    with pytest.raises(ValidationError) as caught:
        parse_channels([data], ["coupon"])
    assert caught.value.fields[0]["field"] == field


def test_too_many_buttons_channels_and_repeated_button() -> None:
    button = {"index": 0, "sub_type": "quick_reply", "source": {"kind": "static", "value": "yes"}}
    many = _with(_whatsapp_channel(), ["whatsapp", "buttons"], [button] * 11)
    with pytest.raises(ValidationError, match=r"channels\[0\]\.whatsapp\.buttons: must have at most 10"):
        parse_channels([many], ["coupon"])
    twice = _with(_whatsapp_channel(), ["whatsapp", "buttons"], [button, button])
    with pytest.raises(ValidationError, match=r"buttons\[1\]\.index: is given more than once"):
        parse_channels([twice], ["coupon"])
    with pytest.raises(ValidationError, match="at most 10 items"):
        parse_channels([_whatsapp_channel()] * 11, ["coupon"])
    with pytest.raises(ValidationError, match="at least one channel"):
        parse_channels([], [])


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"subject": "", "html": "x"}, "channels[0].email.subject"),
        ({"subject": "a" * 999, "html": "x"}, "channels[0].email.subject"),
        ({"subject": "a\r\nBcc: x@example.com", "html": "x"}, "channels[0].email.subject"),
        ({"subject": "Hi {{nickname}}", "html": "x"}, "channels[0].email.subject"),
        ({"subject": "Hi", "html": "x" * (256 * 1024 + 1)}, "channels[0].email.html"),
        ({"subject": "Hi", "html": "{{contact.fields.Bad}}"}, "channels[0].email.html"),
        ({"subject": "Hi", "text": "{{contact.age}}"}, "channels[0].email.text"),
        ({"subject": "Hi"}, "channels[0].email.html"),
        ({"subject": "Hi", "html": "x", "bcc": "y"}, "channels[0].email.bcc"),
    ],
)
def test_email_parse_errors(content: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_channels([{"channel": "email", "connection_id": CONNECTION, "email": content}], ["coupon"])
    assert caught.value.fields[0]["field"] == field


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Hi {{coupon}} {{contact.name}} {{contact.phone}} {{contact.email}} {{contact.fields.tier}}", True),
        ("a" * 4096, True),
        ("a" * 4097, False),
        ("   ", False),
        ("Hi {{}}", False),
        ("Hi {{code}}", False),
        ("a literal {{ without an end", True),
    ],
)
def test_text_parse(text: str, ok: bool) -> None:
    data = {"channel": "sms", "connection_id": CONNECTION, "text": {"text": text}}
    if ok:
        assert parse_channel_template(data, ["coupon"]).text == TextTemplate(text)
        return
    with pytest.raises(ValidationError) as caught:
        parse_channel_template(data, ["coupon"], path="channels[2]")
    assert caught.value.fields[0]["field"] == "channels[2].text.text"


def test_parse_properties() -> None:
    assert parse_properties(
        [{"name": "coupon", "default": "WELCOME"}, {"name": "city"}, {"name": "x", "default": ""}]
    ) == [
        Property("coupon", "WELCOME"),
        Property("city", None),
        Property("x", None),
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("coupon", "properties"),
        ([{"name": "c"}] * 51, "properties"),
        ([{"name": "Coupon"}], "properties[0].name"),
        ([{"name": "a" * 65}], "properties[0].name"),
        ([{"name": "a"}, {"name": "a"}], "properties[1].name"),
        ([{"name": "a", "default": 3}], "properties[0].default"),
        ([{"name": "a", "value": "x"}], "properties[0].value"),
        (["a"], "properties[0]"),
    ],
)
def test_parse_properties_errors(data: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_properties(data)
    assert caught.value.fields[0]["field"] == field


# -- rendering -------------------------------------------------------------------------------------------


def _contact(**fields: Any) -> Contact:
    values: dict[str, Any] = {
        "first_name": "Ana",
        "last_name": "Lima",
        "phone": "+5511999990000",
        "email": "ana@example.com",
        "custom_fields": {"tier": "gold", "points": 1200.0, "vip": True, "since": "2024-02-29"},
    }
    values.update(fields)
    return Contact(id="ct_1", org_id="org_1", **values)


def _render(template: ChannelTemplate, contact: Contact | None = None, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "properties": {},
        "defaults": {"coupon": "WELCOME"},
        "to": "destination",
        "idempotency_key": "bc_1:ct_1",
        "unsubscribe_url": "https://example.com/u/abc",
        "marketing": True,
    }
    options.update(kwargs)
    return render(template, contact or _contact(), **options)


def test_render_whatsapp_with_every_source() -> None:
    template = ChannelTemplate(
        "whatsapp",
        CONNECTION,
        whatsapp=WhatsAppTemplate(
            "order_update",
            "en_US",
            [VariableSource("contact_first_name")],
            [
                VariableSource("contact_name"),
                VariableSource("contact_phone"),
                VariableSource("contact_email"),
                VariableSource("custom_field", "points"),
                VariableSource("property", "coupon"),
                VariableSource("static", "Thanks <3"),
            ],
            [
                (0, "quick_reply", VariableSource("custom_field", "vip")),
                (2, "url", VariableSource("property", "coupon")),
            ],
        ),
    )
    message = _render(template, properties={"coupon": "ANA10"}, to="5511999990000")
    assert message.channel == "whatsapp"
    assert message.kind == "template"
    assert message.to == "5511999990000"
    assert message.idempotency_key == "bc_1:ct_1"
    assert message.marketing is True
    assert message.template == Template(
        "order_update",
        "en_US",
        (Param("Ana"),),
        (
            Param("Ana Lima"),
            Param("+5511999990000"),
            Param("ana@example.com"),
            Param("1200"),
            Param("ANA10"),
            Param("Thanks <3"),
        ),
        (ButtonParam(0, "quick_reply", "true"), ButtonParam(2, "url", "ANA10")),
    )


@pytest.mark.parametrize(
    ("properties", "defaults", "expected"),
    [
        ({"coupon": "ANA10"}, {"coupon": "WELCOME"}, "ANA10"),
        ({}, {"coupon": "WELCOME"}, "WELCOME"),
        ({"coupon": " "}, {"coupon": "WELCOME"}, "WELCOME"),
        ({"coupon": "ANA10"}, {"coupon": None}, "ANA10"),
    ],
)
def test_property_value_else_default(properties: dict[str, str], defaults: dict[str, Any], expected: str) -> None:
    template = ChannelTemplate("sms", CONNECTION, text=TextTemplate("Code: {{coupon}}"))
    message = _render(template, properties=properties, defaults=defaults)
    assert message.kind == "text"
    assert message.text == f"Code: {expected}"


def test_text_channels_render_every_placeholder() -> None:
    text = (
        "{{contact.first_name}}|{{ contact.name }}|{{contact.phone}}|{{contact.email}}|"
        "{{contact.fields.tier}}|{{contact.fields.since}}|{{coupon}}|<b>&"
    )
    for channel in ("sms", "telegram", "messenger", "instagram"):
        message = _render(ChannelTemplate(channel, CONNECTION, text=TextTemplate(text)), marketing=False)
        assert (message.channel, message.kind, message.marketing) == (channel, "text", False)
        assert message.text == "Ana|Ana Lima|+5511999990000|ana@example.com|gold|2024-02-29|WELCOME|<b>&"


def test_email_escapes_html_only() -> None:
    contact = _contact(first_name='<Tom & "Jerry">', full_name=None, last_name=None)
    template = ChannelTemplate(
        "email",
        CONNECTION,
        email=EmailTemplate(
            "Hi {{contact.first_name}}", "<p>Hi {{contact.first_name}}, {{coupon}}</p>", "Hi {{contact.first_name}}"
        ),
    )
    message = _render(template, contact, properties={"coupon": "<10% off>"}, from_address="Shop <news@example.com>")
    assert message.kind == "email"
    assert message.subject == 'Hi <Tom & "Jerry">'
    assert message.html == "<p>Hi &lt;Tom &amp; &quot;Jerry&quot;&gt;, &lt;10% off&gt;</p>"
    assert message.text_body == 'Hi <Tom & "Jerry">'
    assert message.from_address == "Shop <news@example.com>"
    assert message.unsubscribe_url == "https://example.com/u/abc"
    assert message.marketing is True


def test_email_subject_stays_one_line_and_unsubscribe_only_for_marketing() -> None:
    template = ChannelTemplate("email", CONNECTION, email=EmailTemplate("Hi {{coupon}}", None, "Body"))
    message = _render(template, properties={"coupon": "A\r\nBcc: x@example.com"}, marketing=False)
    assert message.subject == "Hi A Bcc: x@example.com"
    assert message.html is None
    assert message.text_body == "Body"
    assert message.unsubscribe_url is None
    with pytest.raises(ValueError, match="unsubscribe_url"):
        _render(template, unsubscribe_url=None, marketing=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.0, "3"),
        (1200, "1200"),
        (2.5, "2.5"),
        (-0.1, "-0.1"),
        (1e20, "100000000000000000000"),
        (Decimal("7"), "7"),
        (Decimal("7.50"), "7.5"),
        (True, "true"),
        (False, "false"),
        ("2024-02-29", "2024-02-29"),
        ("2024-02-29T10:00:00.000Z", "2024-02-29T10:00:00.000Z"),
        (None, None),
        (float("nan"), None),
    ],
)
def test_custom_field_formatting(value: Any, expected: str | None) -> None:
    assert format_field(value) == expected


def test_false_and_zero_are_values() -> None:
    contact = _contact(custom_fields={"vip": False, "points": 0})
    template = ChannelTemplate("sms", CONNECTION, text=TextTemplate("{{contact.fields.vip}} {{contact.fields.points}}"))
    assert _render(template, contact).text == "false 0"


@pytest.mark.parametrize(
    ("template", "contact", "variable", "where"),
    [
        (
            ChannelTemplate(
                "whatsapp",
                CONNECTION,
                whatsapp=WhatsAppTemplate("t", "id", [], [VariableSource("contact_first_name")], []),
            ),
            _contact(first_name=None),
            "contact first name",
            "whatsapp.body[0]",
        ),
        (
            ChannelTemplate(
                "whatsapp", CONNECTION, whatsapp=WhatsAppTemplate("t", "id", [VariableSource("contact_name")], [], [])
            ),
            _contact(first_name=None, last_name=None),
            "contact name",
            "whatsapp.header[0]",
        ),
        (
            ChannelTemplate(
                "whatsapp",
                CONNECTION,
                whatsapp=WhatsAppTemplate("t", "id", [], [], [(0, "url", VariableSource("custom_field", "tier"))]),
            ),
            _contact(custom_fields={"tier": ""}),
            "custom field tier",
            "whatsapp.buttons[0]",
        ),
        (
            ChannelTemplate(
                "whatsapp",
                CONNECTION,
                whatsapp=WhatsAppTemplate("t", "id", [], [VariableSource("property", "city")], []),
            ),
            _contact(),
            "property city",
            "whatsapp.body[0]",
        ),
        (
            ChannelTemplate("sms", CONNECTION, text=TextTemplate("Hi {{contact.email}}")),
            _contact(email=None),
            "{{contact.email}}",
            "text",
        ),
        (
            ChannelTemplate("email", CONNECTION, email=EmailTemplate("Hi", "{{contact.fields.missing}}", None)),
            _contact(),
            "{{contact.fields.missing}}",
            "email.html",
        ),
        (
            ChannelTemplate("email", CONNECTION, email=EmailTemplate("{{contact.phone}}", "x", None)),
            _contact(phone=None),
            "{{contact.phone}}",
            "email.subject",
        ),
    ],
)
def test_missing_variable(template: ChannelTemplate, contact: Contact, variable: str, where: str) -> None:
    with pytest.raises(MissingVariable) as caught:
        _render(template, contact, defaults={"city": None})
    assert isinstance(caught.value, ValidationError)
    assert caught.value.variable == variable
    assert caught.value.where == where
    assert variable in caught.value.message


def test_parsed_template_renders() -> None:
    properties = parse_properties([{"name": "coupon", "default": "WELCOME"}])
    template = parse_channel_template(_whatsapp_channel(), [p.name for p in properties])
    message = _render(
        template, _contact(custom_fields={"tier": "gold"}), defaults={p.name: p.default for p in properties}
    )
    assert [p.value for p in message.template.body] == ["Ana Lima", "gold", "WELCOME", "See you soon"]
    assert message.template.buttons == (ButtonParam(1, "url", "WELCOME"),)
