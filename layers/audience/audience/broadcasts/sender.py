"""Sends one batch of recipients: the SendQueue and TransactionalQueue consumer, and the inline path of a
transactional send.

For each recipient, in order:

1. a row already at an outcome (an earlier delivery of this batch got that far) is left alone;
2. a cancelled marketing broadcast ends the row CANCELLED without sending;
3. eligibility is checked again on the contact as it is now (an opt-out that arrived after planning stops
   the send): SKIPPED with the reason;
   a marketing message then takes a place under the org's frequency cap (SKIPPED, `frequency_cap`, when the
   contact already had its share of the window; a take is per recipient row, so a redelivery counts once,
   and it is released when the message does not go out after all: cancelled, failed for good);
4. the message is rendered (a variable without a value: FAILED, `missing_variable`);
5. the connection's pace is respected (a slot on a schedule shared by every sender, 1/rate apart);
6. the row moves PENDING → SENDING by a conditional write, the provider is called, and the row moves to
   SENT (with the provider's message id) or FAILED (with its code). A row found SENDING was claimed by an
   attempt that stopped before recording its result: its message may have left, so it is sent again and
   counted as a possible duplicate (the provider's idempotency key is passed where the platform takes one);
   so is a row whose provider call lost its answer (the connection broke after the request went out).

Rate-limited answers slow the sender down and are retried; transient faults are retried a few times, then
the row goes back to PENDING and the batch is retried later by SQS. Once every row has an outcome the batch
is tallied (counters moved once, whatever the redeliveries) and the broadcast finishes when nothing is left.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from audience import aws, clock, ids
from audience.broadcasts import keys
from audience.broadcasts import repository as r
from audience.broadcasts.delivery import Delivery, from_address, sender_of
from audience.broadcasts.erasure import ERASE_MARK
from audience.broadcasts.models import ChannelTemplate, Property, parse_channel_template, parse_properties
from audience.broadcasts.quiet import QuietHours, closes_at, parse_quiet_hours, zone_of_phone
from audience.broadcasts.render import MissingVariable, render
from audience.broadcasts.repository import BroadcastsRepository, RecipientRef
from audience.channels.models import DEFAULT_RATE, Connection
from audience.compliance.eligibility import EligibilityService
from audience.contacts import quality
from audience.contacts.models import Contact
from audience.contacts.repository import ContactsRepository
from audience.errors import ConcurrentUpdateError, NotFoundError, ValidationError
from audience.providers.base import Failed, Outbound, Sent

if TYPE_CHECKING:
    from audience.policies.frequency import FrequencyCaps

logger = Logger(child=True)

RETRIES = 3
MAX_LEAD = 0.1
MAX_DELAY = 900  # SQS's longest message delay: a batch held longer is held again
MAX_RATE_WAIT = 60.0
# How long a claimed row is held for one provider call (renewed before each call). Another delivery of the
# same batch waits for it instead of sending again; once it runs out, the attempt is taken to have stopped.
LEASE_SECONDS = 30


class BatchIncomplete(Exception):
    """Some recipients could not be sent yet (transient faults); the batch is retried later."""


@dataclass(frozen=True, slots=True)
class Content:
    """What the sender needs of a broadcast, parsed once per execution environment."""

    kind: str
    templates: dict[str, ChannelTemplate]
    defaults: dict[str, str | None]
    quiet: QuietHours | None = None

    @classmethod
    def parse(cls, kind: str, data: dict[str, Any]) -> Content:
        properties: list[Property] = parse_properties(data.get("properties", []))
        names = [p.name for p in properties]
        templates = [parse_channel_template(c, names) for c in data.get("channels", [])]
        quiet = parse_quiet_hours(data.get("quiet_hours")) if kind == "marketing" else None
        return cls(kind, {t.channel: t for t in templates}, {p.name: p.default for p in properties}, quiet)


# Sends are spaced this much wider than 1/rate, so that a few milliseconds of jitter between the sender and
# the provider never puts rate + 1 sends into one of the provider's rolling seconds.
JITTER_ALLOWANCE = 0.03
# How far ahead of now a sender may book the schedule (what it books it then waits for).
PACE_HORIZON = 1.0
# A slot may be used this late (twice the booking's own round trip, within these bounds: a booking's first
# slot is the moment it was asked for); a slot missed by more is dropped, never sent late. The bound stays
# below the jitter allowance's share of a second, so late sends cannot crowd a rolling second either.
GRACE_BOUNDS = (0.002, 0.01)
# A send may leave at most this late after its slot (a sender woken later takes the next slot instead).
MAX_LATE = 0.015
SLOWED_FOR = 30.0


@dataclass
class Pacer:
    """Per-connection sending schedule shared by every sender (GCRA): one item in the broadcasts table holds
    the time the connection's schedule is booked until. A sender books a tenth of a second's sends at a
    time, then sends them one emission interval (1/rate, plus the jitter allowance) apart. Sends are so
    evenly spaced across all senders that no rolling second holds more than the rate; nothing is spent in
    bursts at the start of a second. A rate-limited answer holds the whole schedule for the provider's
    retry-after and runs this sender a tenth slower for a while."""

    repo: BroadcastsRepository
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    slowed: dict[str, float] = field(default_factory=dict)  # connection → until when it runs slower
    held: dict[str, tuple[float, int]] = field(default_factory=dict)  # connection → (next slot, slots left)
    work: dict[str, float] = field(default_factory=dict)  # connection → this sender's time per send (average)
    returned: dict[str, float] = field(default_factory=dict)  # connection → when acquire last returned
    waited: dict[str, float] = field(default_factory=dict)  # connection → slept since (not this sender's work)
    grace: float = GRACE_BOUNDS[0]
    booked_until: dict[str, float] = field(default_factory=dict)  # connection → end of its last booking seen

    def interval(self, connection_id: str, rate: int) -> float:
        interval = (1 + JITTER_ALLOWANCE) / max(rate, 1)
        return interval * 1.1 if self.slowed.get(connection_id, 0) > self.now() else interval

    def acquire(
        self, connection_id: str, rate: int, daily_limit: int | None, deadline: float, *, lead: float = 0.0
    ) -> float | None:
        """This sender's next slot (epoch seconds), waited for until `lead` before it (the caller's own
        preparation, then `sleep_until` the slot, so that the send itself leaves on time); None when no slot
        comes before `deadline` (or the daily cap is spent)."""
        if daily_limit is not None:
            day = time.strftime("%Y-%m-%d", time.gmtime(self.now()))
            if not self.repo.take_tokens(keys.cap_pk(connection_id, day), 1, daily_limit, int(self.now()) + 2 * 86400):
                return None
        interval = self.interval(connection_id, rate)
        called = self.now()
        if connection_id in self.returned:
            took = called - self.returned[connection_id] - self.waited.pop(connection_id, 0.0)
            self.work[connection_id] = (
                took if connection_id not in self.work else 0.8 * self.work[connection_id] + 0.2 * took
            )
        try:
            return self._acquire(connection_id, rate, interval, deadline, lead)
        finally:
            self.returned[connection_id] = self.now()

    def send_at(self, connection_id: str, slot: float, rate: int, deadline: float) -> bool:
        """Wait for `slot`; a wake-up later than MAX_LATE after it (a busy host) takes the next free slot
        instead: a send that leaves late is what puts rate + 1 sends into the provider's rolling second. False
        when no slot comes before `deadline`."""
        while True:
            self.sleep_until(connection_id, slot)
            if self.now() - slot <= MAX_LATE:
                return True
            following = self.acquire(connection_id, rate, None, deadline)
            if following is None:
                return False
            slot = following

    def sleep_until(self, connection_id: str, slot: float) -> None:
        """Wait for the slot `acquire` gave (the time is not counted as this sender's work)."""
        wait = slot - self.now()
        if wait > 0:
            self.sleep(wait)
            self.waited[connection_id] = self.waited.get(connection_id, 0.0) + wait

    def _acquire(self, connection_id: str, rate: int, interval: float, deadline: float, lead: float) -> float | None:
        while True:
            slot, left = self.held.get(connection_id, (0.0, 0))
            while left > 0 and slot < self.now() - self.grace:
                slot, left = slot + interval, left - 1  # a slot that went by unused is gone, never sent late
            if left > 0:
                if slot > deadline:
                    return None  # keeps the booking: a later call before it passes still uses it
                self.held[connection_id] = (slot + interval, left - 1)
                if slot - lead > self.now():
                    self.sleep(slot - lead - self.now())
                return slot
            moment = self.now()
            # A sender that keeps up with the interval books a tenth of a second's slots at a time; one whose
            # sends take longer than the interval books one at a time (the slots it could not use on time
            # would be lost, and would hold the other senders back).
            count = max(1, rate // 10) if self.work.get(connection_id, 0.0) < interval else 1
            booked, at = self.repo.reserve_pace(
                keys.pace_pk(connection_id),
                round(count * interval * 1e6),
                round(moment * 1e6),
                round(PACE_HORIZON * 1e6),
                int(moment) + 3600,
                idle=self.booked_until.get(connection_id, 0.0) < moment,
            )
            self.grace = min(max(2 * (self.now() - moment), GRACE_BOUNDS[0]), GRACE_BOUNDS[1])
            if booked:
                self.held[connection_id] = (at / 1e6, count)
                self.booked_until[connection_id] = at / 1e6 + count * interval
                continue
            ready = at / 1e6 - PACE_HORIZON
            if ready > deadline:
                return None
            self.sleep(max(0.001, ready - moment))

    def slow_down(self, connection_id: str, seconds: float) -> None:
        moment = self.now()
        self.slowed[connection_id] = moment + max(seconds, 1.0) + SLOWED_FOR
        self.held.pop(connection_id, None)
        self.repo.hold_pace(keys.pace_pk(connection_id), round((moment + seconds) * 1e6), int(moment) + 3600)


class Sender:
    def __init__(
        self,
        repo: BroadcastsRepository,
        contacts: ContactsRepository,
        eligibility: EligibilityService,
        delivery: Delivery,
        *,
        on_tallied: Callable[[str, str], None],
        caps: FrequencyCaps | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        links_base_url: str = "",
        send_queue_url: str = "",
        max_delay: int = MAX_DELAY,
        now: Callable[[], datetime] = clock.now,
    ) -> None:
        self._repo = repo
        self._contacts = contacts
        self._eligibility = eligibility
        self._delivery = delivery
        self._on_tallied = on_tallied
        self._caps = caps  # None: no org's marketing messages are capped
        self._pacer = pacer or Pacer(repo)
        self._sleep = sleep
        self._content: dict[tuple[str, str], Content] = {}
        self._links = links_base_url.rstrip("/")
        self._queue_url = send_queue_url
        self._max_delay = max_delay
        self._now = now  # the time quiet hours are judged by
        self._lead = 0.0  # how long the cancel check and the claim take (an average, with a margin)

    def content(self, org_id: str, broadcast_id: str, kind: str) -> Content:
        # A broadcast's content is fixed once it leaves DRAFT, so one read per execution environment.
        key = (org_id, broadcast_id)
        if key not in self._content:
            self._content[key] = Content.parse(kind, self._repo.content(org_id, broadcast_id))
        return self._content[key]

    def process(self, message: dict[str, Any], *, deadline: float | None = None) -> list[dict[str, Any]]:
        """Send the batch `message` describes; the recipient rows as they end. BatchIncomplete when some
        could not be sent yet."""
        org_id, broadcast_id, batch = message["org_id"], message["broadcast_id"], message["batch"]
        deadline = deadline if deadline is not None else time.time() + 600
        refs = [RecipientRef.of(v) for v in message["recipients"]]
        try:
            summary = self._repo.summary(org_id, broadcast_id)
        except NotFoundError:
            logger.warning("broadcast deleted before its batch was sent", extra={"broadcast_id": broadcast_id})
            return []
        if message.get("hold_until", 0) > self._now().timestamp() and summary["status"] == "SENDING":
            self._hold(message, message["hold_until"])  # still quiet hours: nothing to read or send yet
            return []
        marketing = summary["type"] == "marketing"
        content = self.content(org_id, broadcast_id, summary["type"])
        rows = self._repo.recipients(org_id, broadcast_id, refs)
        contacts = self._contacts.get_many(org_id, {row["contact_id"] for row in rows.values()})
        stopped = [marketing and summary["status"] != "SENDING"]

        def cancelled(read: bool = True) -> bool:
            # Read once per message of a marketing run, just before its row is claimed: nothing is claimed
            # after a cancel is acknowledged. Earlier checks use what the last read found.
            if read and marketing and not stopped[0]:
                stopped[0] = self._repo.summary(org_id, broadcast_id)["status"] != "SENDING"
            return stopped[0]

        closes: float | None = None
        if content.quiet is not None:
            held, zone = self._held(message, content.quiet, refs, rows, contacts, stopped[0])
            if held:
                return []
            if zone is not None:
                # Sending stops when the zone's quiet hours begin; what is left is held until they end.
                closes = closes_at(content.quiet, self._now(), zone).timestamp()
                deadline = min(deadline, time.time() + closes - self._now().timestamp())
                message = {**message, "zone": zone}
        results: list[dict[str, Any]] = []
        incomplete = 0
        for ref in refs:
            row = rows.get(ref)
            if row is None:
                continue  # deleted with its broadcast
            ended = self._one(org_id, row, contacts.get(row["contact_id"]), content, cancelled, deadline)
            if ended is None:
                incomplete += 1
            else:
                results.append(ended)
        if incomplete and closes is not None and self._now().timestamp() >= closes - 1 and content.quiet is not None:
            opens = content.quiet.opens_at(self._now() + timedelta(seconds=1), message["zone"])
            self._enqueue(message, opens)
            return results
        if incomplete:
            raise BatchIncomplete(f"{incomplete} of {len(refs)} recipients of batch {batch} could not be sent yet")
        deltas, activity = _tally(results, summary["type"])
        if self._repo.tally(org_id, broadcast_id, batch, deltas, activity, clock.now_iso()[:10]) and marketing:
            self._on_tallied(org_id, broadcast_id)
        return results

    def _held(
        self,
        message: dict[str, Any],
        quiet: QuietHours,
        refs: list[RecipientRef],
        rows: dict[RecipientRef, dict[str, Any]],
        contacts: dict[str, Contact],
        stopped: bool,
    ) -> tuple[bool, str | None]:
        """Quiet hours, judged per batch. A batch whose recipients live in several time zones is split into
        one batch per zone (`{batch}@{zone}`); the split is recorded in the batch's tally marker first, so
        the batch itself is never tallied and every later delivery of it (a redelivery, a planner retry,
        whatever its zones look like by then) sends the same parts again. A batch of one zone is held,
        whole, while it is quiet hours there. (True, _) when nothing is to be sent now (a cancelled run is
        sent on, to end its rows CANCELLED); else (False, the batch's zone, if it has one)."""
        org_id, broadcast_id, batch = message["org_id"], message["broadcast_id"], message["batch"]
        zone = message.get("zone")
        if zone is None:
            parts = self._repo.split_of(org_id, broadcast_id, batch)
            if parts is None and not stopped:
                groups: dict[str, list[list[Any]]] = {}
                for ref in refs:
                    row = rows.get(ref)
                    if row is not None:
                        contact = contacts.get(row["contact_id"])
                        found = zone_of_phone(contact.phone if contact else None) or quiet.timezone
                        groups.setdefault(found, []).append([ref.shard, ref.sk])
                if len(groups) <= 1:
                    zone = next(iter(groups), quiet.timezone)
                else:
                    parts = [
                        {**message, "batch": f"{batch}@{found}", "zone": found, "recipients": recipients}
                        for found, recipients in sorted(groups.items())
                    ]
                    if not self._repo.record_split(org_id, broadcast_id, batch, parts):
                        parts = self._repo.split_of(org_id, broadcast_id, batch) or []
            if parts is not None:
                for part in parts:
                    self._enqueue(part, None)  # each part holds itself while its zone is quiet
                return True, None  # split, or tallied whole already: nothing of it is sent here
        if stopped or zone is None:
            return False, None
        opens = quiet.opens_at(self._now(), zone)
        if opens is None:
            return False, zone
        self._enqueue({**message, "zone": zone}, opens)
        return True, zone

    def _enqueue(self, message: dict[str, Any], opens: datetime | None) -> None:
        """Put a batch on SendQueue: at once, or held until `opens` (SQS delays a message at most 15 minutes:
        a batch held longer comes back to be held again, without reading anything)."""
        if opens is not None:
            self._hold(message, opens.timestamp())
            return
        if not self._queue_url:
            raise BatchIncomplete("this batch is split by time zone, and no SendQueue is configured to send it on")
        aws.client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))

    def _hold(self, message: dict[str, Any], until: float) -> None:
        """Send the batch to SendQueue again, to come back when `until` comes (or in 15 minutes, SQS's
        longest delay, to be held again)."""
        if not self._queue_url:
            raise BatchIncomplete("quiet hours hold recipients, and no SendQueue is configured to hold them on")
        delay = min(max(1, math.ceil(until - self._now().timestamp())), self._max_delay)
        aws.client("sqs").send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps({**message, "hold_until": until}),
            DelaySeconds=delay,
        )

    def _one(
        self,
        org_id: str,
        row: dict[str, Any],
        contact: Contact | None,
        content: Content,
        cancelled: Callable[..., bool],
        deadline: float,
    ) -> dict[str, Any] | None:
        """One recipient to its outcome; None when it is left for a later attempt."""
        while row["status"] == r.SENDING and not row.get("outcome"):
            # Whole seconds: the hold is over once the clock's second is past lease_until.
            held = float(row.get("lease_until", 0)) + 1 - time.time()
            if held <= 0:
                break  # the attempt that claimed it stopped: claimed again below, as a possible duplicate
            if time.time() + held >= deadline:
                return None
            self._sleep(held + 0.05)  # another delivery of this batch is sending it: see how that ends
            fresh = self._repo.row(row["pk"], row["sk"])
            if fresh is None:
                return None
            row = fresh
        if row.get("outcome") or row["status"] not in (r.PENDING, r.SENDING):
            return row
        now = clock.now_iso()
        if cancelled(read=False):
            if row["status"] == r.PENDING and row.get("attempts") and content.kind == "marketing":
                # An earlier attempt took the row's place under the frequency cap, and did not send.
                self._release(self._caps, org_id, row, f"{row['broadcast_id']}:{row['sk']}")
            return self._repo.finish(row, r.CANCELLED, now, reason="the broadcast was cancelled")
        if contact is None:
            return self._repo.finish(row, r.SKIPPED, now, reason="contact_deleted")
        template = content.templates.get(row["channel"])
        if template is None:
            return self._repo.finish(row, r.FAILED, now, error_code="no_template", error_title="no template")
        try:
            connection, provider = self._delivery.get(org_id, template.connection_id)
        except (NotFoundError, ValidationError) as error:
            return self._repo.finish(row, r.FAILED, now, error_code="connection", error_title=str(error)[:500])
        marketing = content.kind == "marketing"
        purpose = "marketing" if marketing else "transactional"
        decision = self._eligibility.decide(
            contact, self._eligibility.request(row["channel"], purpose, sender_of(connection))
        )
        if not decision.allowed and (marketing or decision.reason == "blocked"):
            return self._repo.finish(row, r.SKIPPED, now, reason=decision.reason)
        caps = self._caps if marketing else None  # transactional messages are never capped
        take = f"{row['broadcast_id']}:{row['sk']}"  # one per recipient row: a redelivery takes it again
        if caps is not None:
            try:
                if not caps.take(org_id, row["contact_id"], take):
                    return self._repo.finish(row, r.SKIPPED, now, reason="frequency_cap")
            except ConcurrentUpdateError:
                return None  # other senders kept writing the contact's cap item: the batch is retried
        try:
            outbound = self.compose(
                org_id,
                template,
                connection,
                _with_overrides(contact, row.get("overrides") or {}),
                to=row.get("to") or "",
                key=f"{row['broadcast_id']}:{row['sk']}",
                properties=row.get("properties") or {},
                defaults=content.defaults,
                marketing=marketing,
                link=(row["broadcast_id"], row["contact_id"]),
            )
        except MissingVariable as error:
            self._release(caps, org_id, row, take)
            return self._repo.finish(row, r.FAILED, now, error_code="missing_variable", error_title=error.message[:500])
        except ValueError as error:
            self._release(caps, org_id, row, take)
            return self._repo.finish(row, r.FAILED, now, error_code="not_sendable", error_title=str(error)[:500])
        rate = int(connection.settings.get("messages_per_second") or DEFAULT_RATE.get(connection.platform, 1))
        cap = connection.settings.get("daily_limit")
        # Woken a little before the slot: the cancel check and the claim happen before it, the send at it.
        slot = self._pacer.acquire(connection.id, rate, int(cap) if cap else None, deadline, lead=self._lead)
        if slot is None:
            return None
        prepared = time.time()
        if cancelled():
            self._release(caps, org_id, row, take)
            return self._repo.finish(row, r.CANCELLED, clock.now_iso(), reason="the broadcast was cancelled")
        claimed = self._repo.start_sending(row, now, now=int(time.time()), lease=LEASE_SECONDS)
        if claimed is None:
            return None  # moved or held by another delivery meanwhile; the batch is retried and sees where it is
        self._lead = min(MAX_LEAD, 0.8 * self._lead + 0.2 * 1.5 * (time.time() - prepared))
        if not self._pacer.send_at(connection.id, slot, rate, deadline):
            self._repo.release(claimed)
            return None
        if time.time() - prepared > LEASE_SECONDS / 3 and not self._repo.renew(
            claimed, now=int(time.time()), lease=LEASE_SECONDS
        ):
            return None  # waited so long for a slot that another delivery took the row over

        def pace() -> bool:
            following = self._pacer.acquire(connection.id, rate, None, deadline)
            return following is not None and self._pacer.send_at(connection.id, following, rate, deadline)

        result = self._send(provider, outbound, claimed, connection.id, deadline, pace)
        finished_at = clock.now_iso()
        if isinstance(result, Sent):
            self._repo.link_message(org_id, row["channel"], result.provider_message_id, claimed, int(time.time()))
            sent = self._repo.finish(claimed, r.SENT, finished_at, provider_message_id=result.provider_message_id)
            if sent.get(ERASE_MARK):
                # The contact was deleted while its message went: its receipts are not kept either.
                self._repo.unlink_message(org_id, row["channel"], result.provider_message_id)
            return sent
        if result.kind == "permanent":
            self._release(caps, org_id, row, take)
            finished = self._repo.finish(
                claimed, r.FAILED, finished_at, error_code=result.code, error_title=result.title
            )
            if (
                quality.is_unreachable(row["channel"], result.code)
                and row.get("contact_id")
                and not row.get("overrides")
            ):
                # The provider says the address cannot be reached (a bot blocked on Telegram): a reachability
                # fact of the contact, as a failed status would be. Best effort, after the row is final.
                fact = quality.Signal(quality.FAILED, row["channel"], finished_at, code=result.code)
                try:
                    self._contacts.record_signal(org_id, row["contact_id"], fact)
                except (ClientError, BotoCoreError, ConcurrentUpdateError):
                    logger.warning("a contact fact was not recorded", exc_info=True, extra={"recipient": row["sk"]})
            return finished
        self._repo.release(claimed)
        logger.warning("send deferred", extra={"recipient": row["sk"], "code": result.code, "title": result.title})
        return None

    @staticmethod
    def _release(caps: FrequencyCaps | None, org_id: str, row: dict[str, Any], take: str) -> None:
        """Give back the frequency cap take of a marketing message that did not go out."""
        if caps is not None:
            caps.release(org_id, row["contact_id"], take)

    def compose(
        self,
        org_id: str,
        template: ChannelTemplate,
        connection: Connection,
        contact: Contact,
        *,
        to: str,
        key: str,
        properties: dict[str, str],
        defaults: dict[str, str | None],
        marketing: bool,
        link: tuple[str, str] | None,
    ) -> Outbound:
        """The message `template` makes for `contact` through `connection` (MissingVariable, ValueError).
        A marketing email gets a one-click unsubscribe link (RFC 8058) naming `link` (broadcast, contact):
        a random token, so links cannot be guessed."""
        unsubscribe_url = None
        if marketing and template.channel == "email" and self._links and link is not None:
            token = ids.random_token(32)
            names = {"org_id": org_id, "broadcast_id": link[0], "contact_id": link[1], "channel": "email"}
            self._repo.put_unsubscribe(token, names, int(time.time()))
            unsubscribe_url = f"{self._links}/u/{token}"
        return render(
            template,
            contact,
            properties=properties,
            defaults=defaults,
            to=to,
            idempotency_key=key,
            unsubscribe_url=unsubscribe_url,
            marketing=marketing,
            from_address=from_address(connection),
        )

    def test(
        self,
        org_id: str,
        broadcast_id: str,
        kind: str,
        channel: str,
        contact: Contact,
        to: str,
        properties: dict[str, str],
    ) -> dict[str, Any]:
        """A test message of the broadcast on `channel` to `to`, sent at once and counted nowhere."""
        content = self.content(org_id, broadcast_id, kind)
        template = content.templates[channel]
        result: dict[str, Any] = {"channel": channel, "to": to}
        try:
            connection, provider = self._delivery.get(org_id, template.connection_id)
            outbound = self.compose(
                org_id,
                template,
                connection,
                contact,
                to=to,
                key=f"test:{ids.ulid()}",
                properties=properties,
                defaults=content.defaults,
                marketing=kind == "marketing",
                link=(broadcast_id, contact.id) if contact.id else None,
            )
        except MissingVariable as error:
            return {**result, "status": r.FAILED, "error_code": "missing_variable", "error_title": error.message}
        except (ValueError, NotFoundError, ValidationError) as error:
            return {**result, "status": r.FAILED, "error_code": "not_sendable", "error_title": str(error)[:500]}
        sent = provider.send(outbound)
        if isinstance(sent, Sent):
            return {**result, "status": r.SENT, "provider_message_id": sent.provider_message_id}
        return {**result, "status": r.FAILED, "error_code": sent.code, "error_title": sent.title}

    def _send(
        self,
        provider: Any,
        outbound: Any,
        claimed: dict[str, Any],
        connection_id: str,
        deadline: float,
        pace: Callable[[], bool],
    ) -> Sent | Failed:
        """The provider call, and its retries: each retry takes a slot of the pace like any send (`pace`),
        then renews the row's hold, so neither the rate nor the hold is overrun by a retry."""
        failures = 0
        first = True
        while True:
            if not first:
                if not pace():
                    return Failed("retryable", "no_slot", "no sending slot before the deadline")
                if not self._repo.renew(claimed, now=int(time.time()), lease=LEASE_SECONDS):
                    return Failed("retryable", "lease_lost", "another delivery took the recipient over")
            first = False
            result = provider.send(outbound)
            if isinstance(result, Sent):
                return result
            # A request whose answer was lost may have reached the platform: a copy sent again is counted.
            lost = result.maybe_sent and not claimed.get("possible_duplicate")
            if lost and self._repo.mark_possible_duplicate(claimed):
                claimed["possible_duplicate"] = True
            if result.kind == "rate_limited":
                wait = min(result.retry_after or 1.0, MAX_RATE_WAIT)
                self._pacer.slow_down(connection_id, wait)
                if time.time() + wait >= deadline:
                    return result
                # Hold the row through the wait too, so no other delivery takes it over meanwhile.
                if not self._repo.renew(claimed, now=int(time.time()), lease=int(wait) + LEASE_SECONDS):
                    return Failed("retryable", "lease_lost", "another delivery took the recipient over")
                self._sleep(wait)
                continue
            if result.kind == "permanent":
                return result
            failures += 1
            if failures >= RETRIES or time.time() >= deadline:
                return result
            self._sleep(min(4.0, 0.25 * 2**failures))


def _with_overrides(contact: Contact, overrides: dict[str, Any]) -> Contact:
    if not overrides:
        return contact
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if overrides.get("name"):
        changes["full_name"] = overrides["name"]
        changes["first_name"] = overrides["name"].split()[0]
    if overrides.get("phone"):
        changes["phone"] = overrides["phone"]
    if overrides.get("email"):
        changes["email"] = overrides["email"]
    return replace(contact, **changes)


def outcome_of(row: dict[str, Any]) -> str:
    """The sender's outcome for a row: recorded, else implied by a receipt that got there first."""
    if row.get("outcome"):
        return str(row["outcome"])
    return (
        r.SENT if row["status"] in (r.DELIVERED, r.READ, r.FAILED) and row.get("provider_message_id") else row["status"]
    )


def _tally(rows: list[dict[str, Any]], kind: str) -> tuple[dict[str, int], dict[str, int]]:
    """What a batch moves: the broadcast's counters, and the org's activity of the day (recipients by
    outcome and by type of broadcast, skipped ones also by reason, messages sent by channel)."""
    deltas: Counter[str] = Counter({"pending": -len(rows)})
    activity: Counter[str] = Counter()
    for row in rows:
        outcome = outcome_of(row).lower()
        deltas[outcome] += 1
        activity[outcome] += 1
        activity[kind] += 1
        if outcome == "skipped":
            reason = f"skipped#{row.get('reason') or 'unknown'}"
            deltas[reason] += 1
            activity[reason] += 1
        if outcome == "sent":
            activity[f"ch#{row['channel']}"] += 1
            if row.get("possible_duplicate"):
                deltas["possible_duplicates"] += 1
    return dict(deltas), dict(activity)
