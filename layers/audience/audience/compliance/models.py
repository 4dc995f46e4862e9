"""Do-not-contact entries, consent records and eligibility decisions (no I/O, cheap to import)."""

from __future__ import annotations

from dataclasses import dataclass

# Where a do-not-contact entry came from. Bounces and complaints are kept apart: providers report them
# separately and they call for different follow-ups.
DNC_SOURCES: tuple[str, ...] = (
    "user_message",  # the end user asked in a message (STOP, "unsubscribe")
    "campaign_action",  # an action in a campaign (a button or quick reply)
    "unsubscribe_link",  # the unsubscribe link of an email (RFC 8058 one-click included)
    "manual",  # someone added it by hand (API, console)
    "import",  # a CSV import
    "bounce",  # a hard bounce or a permanently undeliverable number
    "complaint",  # a spam complaint (SES feedback loop, a carrier report)
)
# Identifier types: a phone (E.164), an email (lower case), or a channel name for a channel user id.
PHONE, EMAIL = "phone", "email"
ALL_CHANNELS = "all"  # a consent record, or a do-not-contact filter, that covers every channel
PURPOSES: tuple[str, ...] = ("marketing", "transactional")
MAX_PROOF = 2000

# Reason codes of an eligibility decision, in the order the rules are checked.
OK = "ok"
BLOCKED = "blocked"
UNSUBSCRIBED = "unsubscribed"
DO_NOT_CONTACT = "do_not_contact"
OPTED_OUT = "opted_out"
NO_ADDRESS = "no_address"
REASONS: tuple[str, ...] = (OK, BLOCKED, UNSUBSCRIBED, DO_NOT_CONTACT, OPTED_OUT, NO_ADDRESS)


@dataclass(frozen=True, slots=True)
class DncEntry:
    """One do-not-contact entry: contact information, optionally narrowed to a channel and a sender."""

    id: str
    org_id: str
    identifier_type: str  # phone, email, or the channel name of a channel user id
    identifier: str
    channel: str | None  # None: every channel
    sender: str | None  # None: every sender
    source: str
    added_at: str

    @property
    def natural_key(self) -> tuple[str, str, str | None, str | None]:
        return (self.identifier_type, self.identifier, self.channel, self.sender)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One appended consent record of a contact for a channel (or `all`); never rewritten."""

    id: str
    contact_id: str
    channel: str  # a channel name or `all`
    opted_in: bool
    source: str
    proof: str
    at: str  # when the consent was given or withdrawn
    recorded_at: str  # when it was written here


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a contact may be sent to: `reason` is the code of the first failing rule, or `ok`."""

    allowed: bool
    reason: str
    detail: str
