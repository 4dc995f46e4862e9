"""A broadcast's template made into the message one contact receives. No I/O.

Templates are validated when the broadcast is saved (models.parse_channel_template), so every placeholder
met here names a property or a contact value. A variable without a value for the contact raises
MissingVariable: WhatsApp refuses empty parameters, and a message with a hole in it is worse than none, so
the sender marks that recipient failed with the reason.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from audience.broadcasts.models import (
    FIELD_PREFIX,
    PLACEHOLDER,
    ChannelTemplate,
    EmailTemplate,
    VariableSource,
    WhatsAppTemplate,
)
from audience.contacts.models import Contact
from audience.errors import ValidationError
from audience.providers.base import ButtonParam, Outbound, Param, Template

_LINE_BREAKS = re.compile(r"[\r\n]+")


class MissingVariable(ValidationError):
    """A template variable has no value for this contact; `variable` names it (a source such as
    "custom_field gold_tier" or a placeholder such as "{{coupon}}") and `where` says where it is used."""

    def __init__(self, variable: str, where: str, reason: str) -> None:
        super().__init__(
            f"{where}: {variable} has no value for this contact ({reason})",
            [{"field": where, "value": variable, "message": reason}],
        )
        self.variable = variable
        self.where = where


def render(
    template: ChannelTemplate,
    contact: Contact,
    *,
    properties: dict[str, str],
    defaults: dict[str, str | None],
    to: str,
    idempotency_key: str,
    unsubscribe_url: str | None,
    marketing: bool,
    from_address: str | None = None,
) -> Outbound:
    """The message `template` makes for `contact`, addressed to `to`.

    `properties` are this recipient's property values and `defaults` the broadcast's default for each
    property. A marketing email carries `unsubscribe_url` (required then); other messages ignore it.
    """
    values = _Values(contact, properties, defaults)
    common: dict[str, Any] = {
        "channel": template.channel,
        "to": to,
        "idempotency_key": idempotency_key,
        "marketing": marketing,
    }
    if template.whatsapp is not None:
        return Outbound(kind="template", template=_whatsapp(template.whatsapp, values), **common)
    if template.email is not None:
        if marketing and not unsubscribe_url:
            raise ValueError("a marketing email needs an unsubscribe_url")
        email: EmailTemplate = template.email
        return Outbound(
            kind="email",
            subject=_LINE_BREAKS.sub(" ", _fill(email.subject, values, "email.subject", str)),
            html=_fill(email.html, values, "email.html", html.escape) if email.html is not None else None,
            text_body=_fill(email.text, values, "email.text", str) if email.text is not None else None,
            from_address=from_address,
            unsubscribe_url=unsubscribe_url if marketing else None,
            **common,
        )
    if template.text is not None:
        return Outbound(kind="text", text=_fill(template.text.text, values, "text", str), **common)
    raise ValueError(f"the {template.channel} channel has no template")


def format_field(value: Any) -> str | None:
    """A custom field's value as text: numbers without a needless ".0", booleans as true/false, dates and
    text as stored; None for no value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


class _Values:
    """The values a template may use for one contact."""

    def __init__(self, contact: Contact, properties: dict[str, str], defaults: dict[str, str | None]) -> None:
        self.contact = contact
        self.properties = properties
        self.defaults = defaults

    def source(self, source: VariableSource, where: str) -> str:
        contact = self.contact
        if source.kind == "contact_name":
            return _present(contact.display_name(), "contact name", where, "the contact has no name")
        if source.kind == "contact_first_name":
            return _present(contact.first_name, "contact first name", where, "the contact has no first name")
        if source.kind == "contact_phone":
            return _present(contact.phone, "contact phone", where, "the contact has no phone number")
        if source.kind == "contact_email":
            return _present(contact.email, "contact email", where, "the contact has no email address")
        name = source.value or ""
        if source.kind == "custom_field":
            return self.field(name, f"custom field {name}", where)
        if source.kind == "property":
            return self.property(name, f"property {name}", where)
        return _present(source.value, "static text", where, "the text is empty")

    def placeholder(self, name: str, where: str) -> str:
        label = f"{{{{{name}}}}}"
        if name == "contact.first_name":
            return _present(self.contact.first_name, label, where, "the contact has no first name")
        if name == "contact.name":
            return _present(self.contact.display_name(), label, where, "the contact has no name")
        if name == "contact.phone":
            return _present(self.contact.phone, label, where, "the contact has no phone number")
        if name == "contact.email":
            return _present(self.contact.email, label, where, "the contact has no email address")
        if name.startswith(FIELD_PREFIX):
            return self.field(name.removeprefix(FIELD_PREFIX), label, where)
        return self.property(name, label, where)

    def field(self, name: str, label: str, where: str) -> str:
        value = format_field(self.contact.custom_fields.get(name))
        return _present(value, label, where, f"the contact's custom field {name} is empty")

    def property(self, name: str, label: str, where: str) -> str:
        value = self.properties.get(name)
        if value is None or not value.strip():
            value = self.defaults.get(name)
        return _present(value, label, where, f"no value was given for property {name} and it has no default")


def _present(value: str | None, label: str, where: str, reason: str) -> str:
    if value is None or not value.strip():
        raise MissingVariable(label, where, reason)
    return value


def _whatsapp(template: WhatsAppTemplate, values: _Values) -> Template:
    return Template(
        name=template.name,
        language=template.language,
        header=tuple(Param(values.source(s, f"whatsapp.header[{i}]")) for i, s in enumerate(template.header)),
        body=tuple(Param(values.source(s, f"whatsapp.body[{i}]")) for i, s in enumerate(template.body)),
        buttons=tuple(
            ButtonParam(index, sub_type, values.source(source, f"whatsapp.buttons[{i}]"))  # type: ignore[arg-type]
            for i, (index, sub_type, source) in enumerate(template.buttons)
        ),
    )


def _fill(text: str, values: _Values, where: str, escape: Callable[[str], str]) -> str:
    return PLACEHOLDER.sub(lambda match: escape(values.placeholder(match.group(1), where)), text)
