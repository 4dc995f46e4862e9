"""The inbound processor: applies what the webhooks enqueued (and SNS delivered) to contacts.

One queue record is one webhook call (or one SNS notification); it may carry many events. Each event
is applied once, however often it arrives: the provider's own id keys a processed-event item (8 days,
longer than Meta's 7-day retries), a message's log entry is appended in one transaction with an item
keyed by its provider id, and every other effect (a do-not-contact entry, a consent record with an id
derived from the event, a status that only moves forward) is idempotent. A record that fails part-way
is retried whole and redoes only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from audience import clock, ids
from audience.broadcasts.keys import is_marketing_row
from audience.broadcasts.repository import BroadcastsRepository
from audience.channels.inbound_rules import rules_of
from audience.channels.models import PLATFORMS
from audience.channels.repository import ConnectionsRepository
from audience.channels.secrets import SecretStore
from audience.compliance.consent import latest_consent
from audience.compliance.dnc import DoNotContactService
from audience.compliance.eligibility import identifiers_for
from audience.compliance.models import ConsentRecord
from audience.compliance.repository import ConsentRepository
from audience.contacts import quality
from audience.contacts.models import MAX_CHANNELS, Activity, Contact, Identity
from audience.contacts.repository import ContactsRepository
from audience.contacts.service import ContactService
from audience.errors import ConcurrentUpdateError, ConflictError, NotFoundError, ValidationError
from audience.events import EventPublisher
from audience.events import make as make_event
from audience.followups.service import FollowUpService
from audience.inbound import keywords, names, parse
from audience.inbound.events import Event, Message, Other, Preference, Sender, Status
from audience.inbound.repository import ContactGoneError, InboundRepository
from audience.orgs.repository import OrgsRepository

log = logging.getLogger(__name__)

END_USER_SOURCE = "end_user_message"  # consent records written for STOP / START
PLATFORM_SOURCE = "platform_signal"  # consent records from a platform's own preference signals
MARKETING_STOPPED = "131050"  # WhatsApp: the user stopped marketing messages from the business
_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class Route:
    org_id: str
    connection_id: str


@dataclass
class Outcome:
    """What one queue record did (for logs and metrics)."""

    events: int = 0
    applied: int = 0
    duplicates: int = 0
    unrouted: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class InboundProcessor:
    def __init__(
        self,
        *,
        inbound: InboundRepository,
        contacts: ContactService,
        contacts_repository: ContactsRepository,
        dnc: DoNotContactService,
        consent: ConsentRepository,
        connections: ConnectionsRepository,
        secrets: SecretStore,
        orgs: OrgsRepository,
        publisher: EventPublisher,
        confirm_subscription: Any,
        broadcasts: BroadcastsRepository | None = None,
        followups: FollowUpService | None = None,
        segments: Any = None,
        tags: Any = None,
    ) -> None:
        self._inbound = inbound
        self._contacts = contacts
        self._contacts_repository = contacts_repository
        self._dnc = dnc
        self._consent = consent
        self._connections = connections
        self._secrets = secrets
        self._orgs = orgs
        self._publisher = publisher
        self._confirm_subscription = confirm_subscription
        self._broadcasts = broadcasts
        self._followups = followups
        self._segments = segments  # SegmentService: static segments a new contact joins (inbound rules)
        self._tags = tags  # TagService: a rule's tag being deleted or renamed is not put on new contacts

    # -- records ------------------------------------------------------------------------------------------

    def process(self, body: str) -> Outcome:
        """Apply one queue record: an envelope from the webhook function, or an SNS notification that
        a topic of the stack delivered to the queue itself."""
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("a queue record must be a JSON object")
        outcome = Outcome()
        if "TopicArn" in document and "Type" in document:
            self._sns(document, None, outcome)
            return outcome
        if document.get("v") != 1:
            raise ValueError(f"unknown envelope version {document.get('v')!r}")
        try:
            self._envelope(document, outcome)
        except parse.PayloadError as error:
            # Authenticated, but not the documented shape: retrying cannot help. It is kept in the org's
            # event log (with the reason) rather than dropped or retried into the DLQ.
            route = _first_route(document)
            if route is None:
                raise
            self._inbound.record_other(
                route.org_id,
                f"malformed:{document.get('dedupe')}",
                document.get("received_at") or clock.now_iso(),
                {
                    "kind": "malformed",
                    "channel": PLATFORMS.get(document.get("platform", ""), "custom"),
                    "connection_id": route.connection_id,
                    "error": str(error)[:1000],
                    "raw": str(document.get("body", ""))[:32_000],
                },
            )
            outcome.count("malformed")
        return outcome

    def _envelope(self, document: dict[str, Any], outcome: Outcome) -> None:
        platform = document["platform"]
        payload = json.loads(document["body"])
        if platform in ("whatsapp", "messenger", "instagram"):
            routes = self._current_routes(document, outcome)
            for event in parse.parse_meta(payload):
                self._apply(_meta_route(routes, event), event, outcome)
            return
        route = Route(document["org_id"], document["connection_id"])
        connection = self._connections.find(route.connection_id)
        if connection is None or connection.org_id != route.org_id:
            # Disconnected after the webhook acknowledged the call (its cache may hold a connection for
            # up to a minute): nothing is applied to a connection that is gone.
            outcome.count("connection_gone")
            log.warning("a record for a connection that no longer exists", extra={"connection_id": route.connection_id})
            return
        if platform == "telegram":
            events = parse.parse_telegram(payload, route.connection_id)
        elif platform in ("ses", "sms"):
            self._sns(payload, route, outcome)
            return
        elif platform in ("custom", "webchat", "sandbox"):
            events = parse.parse_custom(payload, route.connection_id, connection.channel)
        else:
            raise ValueError(f"unknown platform {platform!r}")
        for event in events:
            self._apply(route, event, outcome)

    def _current_routes(self, document: dict[str, Any], outcome: Outcome) -> dict[str, Route]:
        """The envelope's routes as they stand now. The webhook routes from a cache; an account whose
        connection was deleted since is dropped, and one that moved to another connection is kept only
        if the payload's signature holds with that connection's app secret."""
        current: dict[str, Route] = {}
        for key, value in (document.get("routes") or {}).items():
            kind, account = key.split("#", 1)
            found = self._connections.route(kind, account)
            if found is None:
                outcome.count("connection_gone")
                continue
            route = Route(*found)
            if route != Route(*value) and not self._signed_for(route.connection_id, document):
                outcome.count("route_moved_unverified")
                log.warning("an account changed hands and the payload is not signed for its new owner")
                continue
            current[key] = route
        return current

    def _signed_for(self, connection_id: str, document: dict[str, Any]) -> bool:
        signature = document.get("signature") or ""
        try:
            secret = self._secrets.get(connection_id).get("app_secret") or ""
        except NotFoundError:
            return False
        expected = hmac.new(secret.encode(), document["body"].encode(), hashlib.sha256).hexdigest()
        return bool(secret) and hmac.compare_digest(expected, signature)

    def _sns(self, envelope: dict[str, Any], route: Route | None, outcome: Outcome) -> None:
        kind = envelope.get("Type")
        if kind == "SubscriptionConfirmation":
            # Only topics a connection lists reach this far (the webhook checks it; the stack's own topics
            # confirm their queue subscriptions themselves).
            if route is not None:
                self._confirm_subscription(envelope["TopicArn"], envelope["Token"])
                outcome.count("subscription_confirmed")
            return
        if kind != "Notification":
            return
        for event in parse.parse_sns(envelope):
            self._apply(route or self._sns_route(event), event, outcome)

    def _sns_route(self, event: Event) -> Route | None:
        account = event.account_id.lower() if event.account_id else ""
        if not account:
            return None
        candidates = [("sms", account)] if account.startswith("+") else [("ses", account)]
        if "@" in account:
            candidates.append(("ses", account.split("@", 1)[1]))
        for kind, value in candidates:
            found = self._connections.route(kind, value)
            if found is not None:
                return Route(*found)
        return None

    # -- events -------------------------------------------------------------------------------------------

    def _apply(self, route: Route | None, event: Event, outcome: Outcome) -> None:
        outcome.events += 1
        if route is None:
            outcome.unrouted += 1
            log.warning("event for an account no connection owns", extra={"account_id": event.account_id})
            return
        link = self._link(route, event)
        if link is not None and isinstance(event, Status) and event.error_code != MARKETING_STOPPED:
            # A broadcast message's receipt moves its recipient forward only, and its counters only with a
            # move: applying it twice changes nothing, so it needs no dedupe mark (nor that mark's read, write
            # and stream records). A failure that also records consent goes through the dedupe.
            self._status(route, event, outcome, link)
            outcome.applied += 1
            return
        if self._inbound.seen(route.org_id, event.dedupe_key):
            outcome.duplicates += 1
            return
        if isinstance(event, Message):
            self._message(route, event, outcome)
        elif isinstance(event, Status):
            self._status(route, event, outcome, link)
        elif isinstance(event, Preference):
            self._preference(route, event, outcome)
        else:
            self._other(route, event, outcome)
        self._inbound.mark(route.org_id, event.dedupe_key, event.at)
        outcome.applied += 1

    def _message(self, route: Route, message: Message, outcome: Outcome) -> None:
        sender = message.sender
        channel = sender.channel
        contact, created = self._find_or_create(route.org_id, sender, route.connection_id)
        entry = {
            "kind": message.kind,
            "text": message.text,
            "media": message.media,
            "referral": message.referral,
            "reply_to": message.reply_to,
            "sender_name": sender.name,
            "sender_username": sender.username,
        }
        preview = (message.text or f"[{message.kind}]")[:120]
        for _ in range(_ATTEMPTS):
            activity = self._contacts_repository.activity_item(
                contact,
                Activity(
                    "message_received",
                    message.at,
                    {"channel": channel, "kind": message.kind, "message_id": message.provider_id, "preview": preview},
                    id=ids.derived(message.dedupe_key),
                ),
            )
            try:
                recorded = self._inbound.record_message(
                    org_id=route.org_id,
                    contact_id=contact.id,
                    channel=channel,
                    connection_id=route.connection_id,
                    provider_id=message.provider_id,
                    direction="inbound",
                    at=message.at,
                    entry={k: v for k, v in entry.items() if v is not None},
                    activity=activity,
                )
                break
            except ContactGoneError:
                # Deleted between find and write: the person wrote again, so they are a contact again.
                contact, created = self._find_or_create(route.org_id, sender, route.connection_id)
        else:
            raise ConcurrentUpdateError("the contact keeps disappearing while its message is recorded; retry")
        outcome.count("message_recorded" if recorded else "message_already_recorded")
        # Counted once (with the log entry); a retried record applies only the fact's time again.
        # An edit or a reaction shows the contact is there, but is not a reply.
        counted = bool(recorded) and message.kind not in ("edit", "reaction")
        self._signal(route.org_id, contact.id, quality.Signal(quality.INBOUND, channel, message.at, count=counted))
        self._inbound.touch_conversation(
            route.org_id, contact.id, channel, direction="inbound", at=message.at, message_id=message.provider_id
        )
        if self._followups is not None:
            # Before this record is acknowledged: no follow-up leaves once the contact's message is processed.
            ended = self._followups.on_inbound(route.org_id, contact.id, message.at)
            if ended:
                outcome.count("follow_ups_ended")
        # Ids derive from the provider's dedupe key: a redelivered message publishes the same ids.
        published = [
            make_event(
                "message.inbound",
                key=(route.org_id, message.dedupe_key),
                org_id=route.org_id,
                occurred_at=message.at,
                data={
                    "contact_id": contact.id,
                    "channel": channel,
                    "connection_id": route.connection_id,
                    "message_id": message.provider_id,
                    "kind": message.kind,
                },
            )
        ]
        settings: dict[str, Any] | None = None  # the org's inbound settings, read once for keywords and names
        if message.kind == "text":
            settings = self._orgs.get_inbound_settings(route.org_id)
            meaning = keywords.classify(
                message.text,
                opt_out=tuple(settings["opt_out_keywords"]),
                opt_in=tuple(settings["opt_in_keywords"]),
            )
            if meaning is not None:
                action, every_channel = meaning
                if action == "opt_out":
                    self.opt_out(route.org_id, contact.id, channel, message, every_channel=every_channel)
                else:
                    self.opt_in(route.org_id, contact.id, channel, message)
                outcome.count(action)
                published.append(
                    make_event(
                        f"conversation.{'opted_out' if action == 'opt_out' else 'opted_in'}",
                        key=(route.org_id, message.dedupe_key, action),
                        org_id=route.org_id,
                        occurred_at=message.at,
                        data={
                            "contact_id": contact.id,
                            "channel": None if every_channel else channel,
                            "connection_id": route.connection_id,
                            "message_id": message.provider_id,
                        },
                    )
                )
        if recorded:
            # After STOP / START (a capture never delays or loses them) and only from a message logged now: a
            # retried or redelivered message never captures again (nor reverts a name set since).
            self._capture_best_effort(
                route.org_id, contact, message, created=created, outcome=outcome, settings=settings
            )
        self._publisher.publish(published)

    def _link(self, route: Route, event: Event) -> Any:
        """The broadcast recipient a status is about, if it is a broadcast message's."""
        if not isinstance(event, Status) or self._broadcasts is None:
            return None
        return self._broadcasts.linked(route.org_id, event.channel, event.provider_id)

    def _status(self, route: Route, status: Status, outcome: Outcome, link: Any) -> None:
        if link is not None and self._broadcasts is not None:
            # A broadcast message: its recipient row (and the broadcast's counters) carry the status.
            moved = self._broadcasts.apply_receipt(
                route.org_id,
                link,
                status.status.upper(),
                status.at,
                error_code=status.error_code,
                error_title=status.error_title,
            )
        else:
            moved = self._inbound.apply_status(
                route.org_id,
                status.channel,
                status.provider_id,
                status.status,
                status.at,
                error_code=status.error_code,
                error_title=status.error_title,
            )
        outcome.count(f"status_{status.status}" if moved else "status_not_forward")
        if (
            link is None
            and self._followups is not None
            and isinstance(moved, dict)
            and moved.get("follow")
            and status.status in ("sent", "delivered", "read")
        ):
            # A conversation message the API sent: its idle timer runs (started again if the API stopped
            # before starting it; a repeated status starts nothing, the execution being named after the message).
            self._followups.arm(
                route.org_id,
                moved["contact_id"],
                moved["channel"],
                moved.get("connection_id") or route.connection_id,
                gen=moved["provider_id"],
                base=moved.get("sent_at") or status.at,
            )
        if moved:
            self._status_signal(route.org_id, status, moved, broadcast=link is not None)
        if status.status == "failed" and status.error_code == MARKETING_STOPPED and status.recipient is not None:
            contact = self._find(route.org_id, status.recipient)
            if contact is not None:
                self._record_consent(
                    route.org_id,
                    contact.id,
                    status.channel,
                    False,
                    PLATFORM_SOURCE,
                    status.dedupe_key,
                    f"WhatsApp error {MARKETING_STOPPED} on message {status.provider_id}: marketing messages stopped",
                    status.at,
                )
                outcome.count("marketing_suppressed")

    def _status_signal(self, org_id: str, status: Status, moved: Any, *, broadcast: bool) -> None:
        """Delivered and read statuses of messages the stack sent count for their contact; a failure that
        means "unreachable" also finds the contact of a message sent elsewhere, by its recipient."""
        row = moved if isinstance(moved, dict) else {}
        if broadcast and row.get("overrides"):
            return  # sent to an address the call gave, not necessarily the contact's own
        # A broadcast's row is as it was before the move; a message's item is after it (stamped per status).
        skipped = row.get("status") not in ("DELIVERED", "READ") if broadcast else "delivered_at" not in row
        signal = quality.signal_for_status(
            status.channel,
            status.status,
            status.at,
            status.error_code,
            broadcast=broadcast and is_marketing_row(row),
            skipped_delivery=skipped,
        )
        if signal is None:
            return
        contact_id = row.get("contact_id")
        if not contact_id and signal.kind == quality.FAILED and status.recipient is not None:
            contact = self._find(org_id, status.recipient)
            contact_id = contact.id if contact is not None else None
        if contact_id:  # a transactional send to an address that is no contact has none
            self._signal(org_id, contact_id, signal)

    def _preference(self, route: Route, preference: Preference, outcome: Outcome) -> None:
        subject = preference.subject
        if preference.kind in ("bounce", "complaint"):
            address = subject.email or subject.user_id
            try:
                self._dnc.add(route.org_id, address, channel="email", source=preference.kind)
            except ValidationError:
                log.warning("a bounce or complaint for an address that is not an email", extra={"value": address})
                return
            outcome.count(f"email_{preference.kind}")
            owner = self._contacts_repository.owners(route.org_id, [Identity("email", address.lower())])
            for contact_id in owner.values():
                kind = quality.BOUNCE if preference.kind == "bounce" else quality.COMPLAINT
                self._signal(route.org_id, contact_id, quality.Signal(kind, "email", preference.at))
            return
        contact = self._find(route.org_id, subject)
        if contact is None:
            outcome.count("preference_unknown_contact")
            return
        opted_in = preference.kind == "marketing_resume"
        self._record_consent(
            route.org_id,
            contact.id,
            preference.channel,
            opted_in,
            PLATFORM_SOURCE,
            preference.dedupe_key,
            f"{preference.channel} user preference: {preference.kind}"
            + (f" ({preference.detail})" if preference.detail else ""),
            preference.at,
        )
        outcome.count(preference.kind)

    def _other(self, route: Route, other: Other, outcome: Outcome) -> None:
        contact = self._find(route.org_id, other.sender) if other.sender is not None else None
        self._inbound.record_other(
            route.org_id,
            other.dedupe_key,
            other.at,
            {
                "kind": other.kind,
                "channel": other.channel,
                "connection_id": route.connection_id,
                "contact_id": contact.id if contact else None,
                "raw": json.dumps(other.raw, separators=(",", ":"))[:32_000],
            },
        )
        outcome.count("other_kept")

    # -- contacts -----------------------------------------------------------------------------------------

    def find_or_create(self, org_id: str, sender: Sender) -> Contact:
        """The contact this sender is: found by channel id, else phone, else email; created (subscribed,
        with the channel and the profile name) when none. A found contact gains the channel."""
        return self._find_or_create(org_id, sender, None)[0]

    def _find_or_create(self, org_id: str, sender: Sender, connection_id: str | None) -> tuple[Contact, bool]:
        """find_or_create, and whether the contact was created. A contact created for a connection gets
        the tags and static segments of the connection's `on_new_contact` rules."""
        channel_entry = {"channel": sender.channel, "user_id": sender.user_id}
        if sender.channel == "email":
            channel_entry["user_id"] = sender.user_id.lower()
        rules: dict[str, list[str]] | None = None
        for _ in range(_ATTEMPTS):
            contact = self._find(org_id, sender)
            if contact is None:
                if rules is None:
                    rules = self._new_contact_rules(org_id, connection_id)
                data: dict[str, Any] = {"channels": [channel_entry]}
                if sender.phone:
                    data["phone"] = sender.phone
                if sender.email:
                    data["email"] = sender.email
                profile = names.clean_name(sender.name)
                if profile:
                    data["full_name"] = profile
                if rules["tags"]:
                    data["tags"] = list(rules["tags"])  # in the contact's own write: never created without them
                try:
                    created = self._contacts.create(org_id, data).contact
                except ConflictError:
                    continue  # created meanwhile by another event of the same person: find it
                except ValidationError:
                    if "phone" not in data:
                        raise
                    data.pop("phone")  # a number the phone library rejects is still a channel id
                    try:
                        created = self._contacts.create(org_id, data).contact
                    except ConflictError:
                        continue
                assert created is not None
                self._join_segments(org_id, created, rules["segments"])
                return created, True

            def changes(current: Contact) -> dict[str, Any]:
                found: dict[str, Any] = {}
                if channel_entry not in current.channels and len(current.channels) < MAX_CHANNELS:
                    found["channels"] = [*current.channels, channel_entry]
                return found

            try:
                return self._contacts.update(org_id, contact.id, changes, source=END_USER_SOURCE), False
            except NotFoundError:
                continue
            except ConflictError:
                return contact, False  # the channel id belongs to another contact: keep the one found
        raise ConcurrentUpdateError("the sender's contact keeps changing; retry")

    def _new_contact_rules(self, org_id: str, connection_id: str | None) -> dict[str, list[str]]:
        """The connection's `on_new_contact` rules (none for a connection that is gone). Its tags go
        through the tag registry: one being deleted or renamed is left out (as the API refuses it)."""
        connection = self._connections.find(connection_id) if connection_id else None
        if connection is None:
            return {"tags": [], "segments": []}
        rules: dict[str, list[str]] = rules_of(connection)["on_new_contact"]
        if rules["tags"] and self._tags is not None:
            rules["tags"] = self._tags.taking_contacts(org_id, rules["tags"])
        return rules

    def _join_segments(self, org_id: str, contact: Contact, segment_ids: list[str]) -> None:
        """Add a new contact to the static segments of its connection's rules. Best effort, never a reason
        to fail the record: a write that lost a race (a TransactionConflict on the segment's counter, common
        when many new contacts arrive at once, reads as a stale contact) is tried again; a segment deleted,
        or made something else, since the rules were saved is skipped; what still fails is logged.

        Known gap: the joins follow the contact's creation. A function stopped between the two (a timeout,
        a crash) leaves the contact without them: the retried record finds the contact (no longer new) and
        joins nothing."""
        if not segment_ids or self._segments is None:
            return
        for segment_id in segment_ids:
            for _ in range(_ATTEMPTS):
                try:
                    segments = self._segments.check_static(org_id, [segment_id])
                except (NotFoundError, ValidationError):
                    log.warning("an inbound rule names a segment that is gone", extra={"segment_id": segment_id})
                    break
                try:
                    self._segments.assign(org_id, segments, contact)
                    break
                except (NotFoundError, ClientError, BotoCoreError, ConcurrentUpdateError):
                    # A stale contact (a conflict) or a segment deleted meanwhile: check it and try again.
                    continue
            else:
                log.warning(
                    "a new contact was not added to its connection's segment",
                    extra={"segment_id": segment_id, "contact_id": contact.id},
                )

    # -- names --------------------------------------------------------------------------------------------

    def _capture_best_effort(
        self,
        org_id: str,
        contact: Contact,
        message: Message,
        *,
        created: bool,
        outcome: Outcome,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """_capture_names, never a reason to apply the message again: a name that cannot be written is logged."""
        try:
            self._capture_names(org_id, contact, message, created=created, outcome=outcome, settings=settings)
        except (ClientError, BotoCoreError, ConcurrentUpdateError, NotFoundError, ValidationError):
            outcome.count("name_not_captured")
            log.warning("a name was not captured", exc_info=True, extra={"contact_id": contact.id})

    def _capture_names(
        self,
        org_id: str,
        contact: Contact,
        message: Message,
        *,
        created: bool,
        outcome: Outcome,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """A name the message shares becomes the contact's name (over any name it had); else the platform
        profile's name, when the contact has none. Each capture is one `name_captured` activity entry
        whose id derives from the message's dedupe key. Called only for a message logged by this delivery
        (a retried one captures nothing, so it never reverts a name set since)."""
        profile = names.clean_name(message.sender.name) or ""
        if created and profile and contact.full_name:
            # A new contact is created with its profile name (capture on or off): only its entry is missing.
            entry = self._name_entry(contact.full_name, None, "profile", message)
            self._contacts_repository.put_items([self._contacts_repository.activity_item(contact, entry)])
        text = message.text if message.kind == "text" else None
        if not text and (created or not profile or contact.display_name()):
            return  # nothing to capture: no settings to read
        if settings is None:  # not read yet for this message (only text messages read them for keywords)
            settings = self._orgs.get_inbound_settings(org_id)
        chosen = names.org_patterns(settings.get("name_capture"))
        if chosen is None:
            return  # the org turned name capture off
        found = names.extract(text, chosen)
        captured = found.name if found is not None else None
        if captured is not None:
            if self._capture_name(org_id, contact.id, captured, "message", message):
                outcome.count("name_captured")
            return
        if profile and not created and self._capture_name(org_id, contact.id, profile, "profile", message):
            outcome.count("name_from_profile")

    def _capture_name(self, org_id: str, contact_id: str, name: str, source: str, message: Message) -> bool:
        """Set the contact's name (`full_name`); a profile name only fills an empty one. The name it had
        before its first replaced name is kept as `original_name`, once. False when nothing changed."""
        for _ in range(_ATTEMPTS):
            try:
                current = self._contacts_repository.get(org_id, contact_id)
            except NotFoundError:
                return False
            before = current.display_name()
            if (source == "profile" and before) or names.same_name(before, name):
                return False
            if names.part_of(name, before):
                return False  # "I'm Sari" never cuts "Sari Wijaya" to "Sari"
            updated = dataclasses.replace(
                current, full_name=name, version=current.version + 1, updated_at=clock.now_iso()
            )
            if before and current.original_name is None:
                updated.original_name = before
            try:
                self._contacts_repository.save(
                    updated, current, activity=[self._name_entry(name, before, source, message)]
                )
            except ConcurrentUpdateError:
                continue
            return True
        raise ConcurrentUpdateError("the contact keeps changing while its name is captured; retry")

    @staticmethod
    def _name_entry(name: str, previous: str | None, source: str, message: Message) -> Activity:
        return Activity(
            "name_captured",
            message.at,
            {"name": name, "previous": previous, "source": source, "message_id": message.provider_id},
            id=ids.derived(f"{message.dedupe_key}:name:{source}"),
        )

    def _find(self, org_id: str, who: Sender) -> Contact | None:
        identities = [Identity(who.channel, who.user_id.lower() if who.channel == "email" else who.user_id)]
        if who.phone:
            identities.append(Identity("phone", who.phone))
        if who.email:
            identities.append(Identity("email", who.email.lower()))
        owners = self._contacts_repository.owners(org_id, identities)
        for identity in identities:  # the channel id first: it names the person on this channel
            owner = owners.get(identity)
            if owner is not None:
                try:
                    return self._contacts_repository.get(org_id, owner)
                except NotFoundError:
                    continue
        return None

    # -- subscriptions ------------------------------------------------------------------------------------

    def opt_out(self, org_id: str, contact_id: str, channel: str, message: Message, *, every_channel: bool) -> None:
        """The contact asked to stop: a do-not-contact entry (source user_message) for its identifiers on
        the channel (every channel for STOPALL), a consent record, and the contact unsubscribed once no
        channel of it is still opted in."""
        contact = self._contacts_repository.get(org_id, contact_id)
        scope = None if every_channel else channel
        identifiers = identifiers_for(contact, channel)
        for _, value in identifiers:
            self._dnc.add(org_id, value, channel=scope, source="user_message")
        proof = f"{channel} message {message.provider_id}: {(message.text or '')[:100]!r}"
        self._record_consent(
            org_id, contact_id, scope or "all", False, END_USER_SOURCE, message.dedupe_key, proof, message.at
        )
        if contact.status == "SUBSCRIBED" and (every_channel or self._all_opted_out(org_id, contact)):
            self._contacts.update(org_id, contact_id, {"status": "UNSUBSCRIBED"}, source=END_USER_SOURCE)
        if self._followups is not None:
            self._followups.on_opt_out(org_id, contact_id, scope)

    def opt_in(self, org_id: str, contact_id: str, channel: str, message: Message) -> None:
        """START / UNSTOP: a consent record for the channel, the do-not-contact entries the contact's own
        messages put there removed (not ones a person or an import added), and an unsubscribed contact
        subscribed again (a blocked one stays blocked)."""
        contact = self._contacts_repository.get(org_id, contact_id)
        identifiers = identifiers_for(contact, channel)
        every_channel = False
        for entry in self._dnc.matching(org_id, identifiers, channel=channel, sender=None):
            if entry.source == "user_message":
                with contextlib.suppress(NotFoundError):  # removed meanwhile
                    self._dnc.remove(org_id, entry.id)
                every_channel = every_channel or entry.channel is None
        proof = f"{channel} message {message.provider_id}: {(message.text or '')[:100]!r}"
        self._record_consent(org_id, contact_id, channel, True, END_USER_SOURCE, message.dedupe_key, proof, message.at)
        if every_channel:  # it lifted a STOPALL: every channel is open again, as the do-not-contact list says
            self._signal(org_id, contact_id, quality.Signal(quality.START, quality.ALL_CHANNELS, message.at))
        if contact.status == "UNSUBSCRIBED":
            self._contacts.update(org_id, contact_id, {"status": "SUBSCRIBED"}, source=END_USER_SOURCE)

    def _all_opted_out(self, org_id: str, contact: Contact) -> bool:
        channels = {entry["channel"] for entry in contact.channels}
        for name in channels:
            record = latest_consent(self._consent, org_id, contact.id, name)
            if record is None or record.opted_in:
                return False
        return True

    def _record_consent(
        self, org_id: str, contact_id: str, channel: str, opted_in: bool, source: str, key: str, proof: str, at: str
    ) -> None:
        record = ConsentRecord(
            id=f"cn_{ids.derived(f'{key}:{channel}:{opted_in}')}",
            contact_id=contact_id,
            channel=channel,
            opted_in=opted_in,
            source=source,
            proof=proof[:2000],
            at=at,
            recorded_at=clock.now_iso(),
        )
        # The same record (its id derives from the event) may be there already: a retried event.
        with contextlib.suppress(ConcurrentUpdateError):
            self._consent.append(org_id, record)
        scope = quality.ALL_CHANNELS if channel == "all" else channel
        self._signal(org_id, contact_id, quality.Signal(quality.START if opted_in else quality.STOP, scope, at))

    def _signal(self, org_id: str, contact_id: str, signal: quality.Signal) -> None:
        """Record a reachability / engagement fact on the contact (scores and metrics read these). Best
        effort: a fact that cannot be written is logged, never a reason to apply the event again."""
        try:
            self._contacts_repository.record_signal(org_id, contact_id, signal)
        except (ClientError, BotoCoreError, ConcurrentUpdateError):
            log.warning(
                "a contact fact was not recorded",
                exc_info=True,
                extra={"contact_id": contact_id, "kind": signal.kind, "channel": signal.channel},
            )


def _first_route(document: dict[str, Any]) -> Route | None:
    if document.get("org_id") and document.get("connection_id"):
        return Route(document["org_id"], document["connection_id"])
    routes = list((document.get("routes") or {}).values())
    return Route(*routes[0]) if routes else None


def _meta_route(routes: dict[str, Route], event: Event) -> Route | None:
    channel = getattr(event, "channel", None) or getattr(getattr(event, "sender", None), "channel", None)
    account = event.account_id
    for key in (f"{channel}#{account}", f"whatsapp_waba#{account}"):
        if key in routes:
            return routes[key]
    return None
