"""May this contact be sent to on this channel, from this sender, for marketing or transactional messages?

The rules, checked in this order; the decision carries the reason code of the first that fails:

1. `blocked`: a BLOCKED contact is never sent to.
2. `unsubscribed`: an UNSUBSCRIBED contact gets no marketing; transactional messages are allowed.
3. `do_not_contact`: a do-not-contact entry matching one of the contact's identifiers relevant to the
   channel (its phones for whatsapp and sms, with its ids on that channel read as phones; its emails for
   email; its user ids on the channel for the others), whose channel is blank or this channel and
   whose sender is blank or this sender: no marketing; transactional allowed.
4. `opted_out`: the contact's consent for the channel (its latest record for the channel or for `all`,
   whichever is later) is an opt-out: no marketing; transactional allowed.
5. `no_address`: the contact has nothing to send to on the channel (neither a phone nor an id on the
   channel for whatsapp and sms; no email for email; no user id on the channel for the others): not allowed.
6. Otherwise `ok`.

Senders call this at send time (broadcasts, transactional sends, follow-ups). Reads are made only when a
rule needs them: a transactional check reads nothing beyond the contact, and a marketing check stops at
the first failing rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from audience.compliance.consent import latest_consent
from audience.compliance.dnc import PHONE_CHANNELS, DoNotContactService, normalize_sender
from audience.compliance.models import (
    BLOCKED,
    DO_NOT_CONTACT,
    EMAIL,
    NO_ADDRESS,
    OK,
    OPTED_OUT,
    PHONE,
    PURPOSES,
    UNSUBSCRIBED,
    Decision,
)
from audience.compliance.repository import ConsentRepository
from audience.contacts.models import CHANNELS, Contact
from audience.contacts.repository import ContactsRepository
from audience.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Request:
    channel: str
    purpose: str
    sender: str | None = None


def identifiers_for(contact: Contact, channel: str) -> list[tuple[str, str]]:
    """The (type, value) identifiers of `contact` a do-not-contact entry is matched against on `channel`."""
    owned = contact.identities()
    if channel in PHONE_CHANNELS:
        found = [(PHONE, i.value) for i in owned if i.type == PHONE]
        # A WhatsApp (or sms) id is the number itself, usually in international digits without the +.
        for identity in owned:
            digits = identity.value.removeprefix("+")
            if identity.type == channel and digits.isdigit():
                found.append((PHONE, f"+{digits}"))
        return list(dict.fromkeys(found))
    if channel == EMAIL:
        return list(dict.fromkeys((EMAIL, i.value) for i in owned if i.type == EMAIL))
    return list(dict.fromkeys((channel, i.value) for i in owned if i.type == channel))


def has_address(contact: Contact, channel: str) -> bool:
    """Whether the contact can be reached on `channel` at all."""
    kinds = {i.type for i in contact.identities()}
    if channel in PHONE_CHANNELS:
        return bool(kinds & {PHONE, channel})
    return channel in kinds  # email: the contact's email or an email channel id (both type "email")


class EligibilityService:
    """The one place that answers whether a contact may be sent to."""

    def __init__(self, contacts: ContactsRepository, dnc: DoNotContactService, consent: ConsentRepository) -> None:
        self._contacts = contacts
        self._dnc = dnc
        self._consent = consent

    def check(self, org_id: str, contact_id: str, *, channel: str, purpose: str, sender: str | None = None) -> Decision:
        """The decision for a contact by id (NotFoundError when the org has no such contact)."""
        request = self.request(channel, purpose, sender)
        return self.decide(self._contacts.get(org_id, contact_id, consistent=True), request)

    @staticmethod
    def request(channel: str, purpose: str, sender: str | None = None) -> Request:
        """A validated request, for callers that check many contacts with the same one."""
        if channel not in CHANNELS:
            raise ValidationError.for_field("channel", channel, f"must be one of {', '.join(CHANNELS)}")
        if purpose not in PURPOSES:
            raise ValidationError.for_field("purpose", purpose, f"must be one of {', '.join(PURPOSES)}")
        return Request(channel, purpose, normalize_sender(sender))

    def decide(self, contact: Contact, request: Request) -> Decision:
        """The decision for a contact already read (a sender holding a batch of recipients)."""
        channel, marketing = request.channel, request.purpose == "marketing"
        if contact.status == "BLOCKED":
            return Decision(False, BLOCKED, "the contact is blocked: nothing is sent to it")
        if marketing and contact.status == "UNSUBSCRIBED":
            return Decision(False, UNSUBSCRIBED, "the contact unsubscribed: transactional messages only")
        if marketing:
            entries = self._dnc.matching(
                contact.org_id, identifiers_for(contact, channel), channel=channel, sender=request.sender
            )
            if entries:
                entry = min(entries, key=lambda e: e.added_at)
                scope = f"on {entry.channel}" if entry.channel else "on every channel"
                by = f" from sender {entry.sender}" if entry.sender else ""
                return Decision(
                    False,
                    DO_NOT_CONTACT,
                    f"{entry.identifier} is on the do-not-contact list {scope}{by} (entry {entry.id}, "
                    f"source {entry.source}): transactional messages only",
                )
            consent = latest_consent(self._consent, contact.org_id, contact.id, channel)
            if consent is not None and not consent.opted_in:
                return Decision(
                    False,
                    OPTED_OUT,
                    f"the contact opted out of {consent.channel if consent.channel != 'all' else 'every channel'} "
                    f"at {consent.at} (source {consent.source}): transactional messages only",
                )
        if not has_address(contact, channel):
            return Decision(False, NO_ADDRESS, f"the contact has no address on {channel}")
        return Decision(True, OK, f"{request.purpose} messages on {channel} are allowed")
