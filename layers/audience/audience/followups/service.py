"""Outbound conversation messages, and the follow-ups they start.

A backend sends a session message to a contact (`send_message`): free text inside the 24-hour window of
WhatsApp, Messenger and Instagram (opened by the contact's last message), only a WhatsApp template
outside it. The message is recorded in the conversation log, and it arms the conversation's idle timer:
one Step Functions execution per conversation and outbound message, named after both, so a retried call
or a repeated status webhook never starts a second one. Each execution waits until its next step is due
and calls `step`, which checks the execution is still the conversation's current one (`fu_gen`), that the
contact has not written since, and that it may still be messaged, before it claims the step and sends.

An inbound message ends the timer (`on_inbound`): the conditional write that moves it off "waiting" is
what every step's claim is conditioned on, and `on_inbound` returns only once a step that had already
claimed its send has finished (or its lease ran out). So no follow-up leaves after the inbound message
has been processed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from audience import aws, clock, ids
from audience.broadcasts.delivery import Delivery, address, sender_of
from audience.broadcasts.quiet import zone_of_phone
from audience.channels.models import Connection
from audience.compliance.eligibility import EligibilityService
from audience.contacts.models import Activity, Contact
from audience.contacts.repository import ContactsRepository
from audience.errors import ConflictError, NotFoundError, RateLimitedError, UpstreamError, ValidationError
from audience.followups.repository import SCHEDULED, SENDING, WAITING, FollowUpsRepository
from audience.followups.rules import DISABLED, Content, Rules, parse_content, parse_rules
from audience.idempotency import once
from audience.inbound.repository import InboundRepository
from audience.providers.base import Failed, Outbound, Result, Sent

logger = Logger(child=True)

WINDOW_CHANNELS = frozenset({"whatsapp", "messenger", "instagram"})  # 24-hour customer service window
TEMPLATE_CHANNELS = frozenset({"whatsapp"})
# A claimed step's send: longer than FollowUpFunction's timeout (25 s), so no step still runs once its lease
# is over. Whoever ends a timer waits at most this long for a step that is sending.
LEASE_SECONDS = 30
RECORD_ATTEMPTS = 3
MAX_AHEAD = 360 * 24 * 3600  # a requested follow-up: within a standard execution's year, with room for retries
MAX_RULES_BYTES = 100_000  # stored rules, as JSON (a DynamoDB item holds 400 KB)
MAX_REQUESTED = 20  # follow-ups scheduled at once per contact
CANCEL_WAIT_SECONDS = 10.0  # how long a cancel through the API waits for a step that is sending
# A Wait state ends on whole seconds, so a step may be woken up to a second early: it waits out a gap this
# short itself rather than go round the state machine again (three more transitions).
EARLY = timedelta(seconds=2)


class StepNotReady(Exception):
    """A step's send is held by another attempt, or failed for a reason a retry may clear; Step Functions
    retries the task (its Retry names this class)."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message that went: its provider id, and what was sent (text or template)."""

    provider_id: str
    kind: str


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _plus(at: str, seconds: float) -> str:
    return clock.iso(_parse_time(at) + timedelta(seconds=seconds))


def _wake(at: str) -> str:
    """`at` rounded up to the whole second: when a Wait state is told to end (Step Functions waits to the
    second; a step woken before its due time would only wait again)."""
    moment = _parse_time(at)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return clock.iso(moment)


def execution_name(org_id: str, contact_id: str, channel: str, gen: str) -> str:
    """The execution of one conversation's timer for one outbound message (at most 80 characters)."""
    digest = hashlib.sha256(f"{org_id}|{contact_id}|{channel}|{gen}".encode()).hexdigest()[:48]
    return f"fu-{digest}"


def gen_token(gen: str) -> str:
    """What an execution's input names its message by: a digest, since provider message ids can carry the
    person's address (Telegram's `{chat id}:{message id}`) and Step Functions keeps an execution's input for
    90 days after it ends, past the contact's deletion."""
    return "g:" + hashlib.sha256(gen.encode()).hexdigest()[:32]


def in_words(seconds: float) -> str:
    """A due time as people say it: "in 23 hours", "in 5 minutes", "now"."""
    if seconds < 1:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = math.floor(seconds / size)
            return f"in {count} {unit}{'' if count == 1 else 's'}"
    return "now"


class FollowUpService:
    def __init__(
        self,
        repository: FollowUpsRepository,
        inbound: InboundRepository,
        contacts: ContactsRepository,
        eligibility: EligibilityService,
        delivery: Delivery,
        *,
        state_machine_arn: str,
        idempotency: Any = None,
        caps: Any = None,
        now: Callable[[], datetime] = clock.now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._repo = repository
        self._inbound = inbound
        self._contacts = contacts
        self._eligibility = eligibility
        self._delivery = delivery
        self._arn = state_machine_arn
        self._idempotency = idempotency
        self._caps = caps
        self._now = now
        self._sleep = sleep

    # -- rules -----------------------------------------------------------------------------------------------

    def rules(self, org_id: str, connection_id: str | None = None) -> Rules:
        """The rules as set for the org, or for one connection (NotFoundError when it has none of its own)."""
        if connection_id is not None:
            self._delivery.connection(org_id, connection_id)  # 404 for another org's connection
            found = self._repo.rules(org_id, connection_id)
            if found is None:
                raise NotFoundError(f"connection {connection_id} has no follow-up rules of its own")
            return found
        return self._repo.rules(org_id, None) or DISABLED

    def put_rules(self, org_id: str, connection_id: str | None, data: dict[str, Any]) -> Rules:
        if connection_id is not None:
            self._delivery.connection(org_id, connection_id)
        rules = parse_rules(data, connection_id=connection_id)
        stamp = clock.now_iso()
        stored = {k: v for k, v in rules.as_dict().items() if k not in ("connection_id", "updated_at")}
        stored["closing"] = {k: v for k, v in stored["closing"].items() if v is not None}
        if stored["business_hours"] is None:
            stored.pop("business_hours")
        size = len(json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_RULES_BYTES:
            raise ValidationError.for_field(
                "messages", None, f"the rules take {size} bytes; at most {MAX_RULES_BYTES} (shorten the messages)"
            )
        self._repo.put_rules(org_id, connection_id, stored, stamp)
        return parse_rules(stored, connection_id=connection_id, updated_at=stamp)

    def delete_rules(self, org_id: str, connection_id: str) -> None:
        self._delivery.connection(org_id, connection_id)
        if not self._repo.delete_rules(org_id, connection_id):
            raise NotFoundError(f"connection {connection_id} has no follow-up rules of its own")

    def effective_rules(self, org_id: str, connection_id: str | None) -> Rules:
        """The connection's own rules, else the org's, else none (follow-ups off)."""
        if connection_id:
            own = self._repo.rules(org_id, connection_id)
            if own is not None:
                return own
        return self._repo.rules(org_id, None) or DISABLED

    # -- outbound messages ---------------------------------------------------------------------------------

    def send_message(
        self, org_id: str, contact_id: str, body: dict[str, Any], idempotency_key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Send a session message (HTTP status, answer). With an idempotency key, a repeated call answers
        as the first did without sending again."""
        return once(
            self._idempotency,
            org_id,
            f"messages:{contact_id}",
            idempotency_key,
            body,
            lambda key: self._send_message(org_id, contact_id, body, key=key),
            prefix="m",
        )

    def _request(self, org_id: str, contact_id: str, body: dict[str, Any]) -> tuple[Contact, Connection, Content]:
        """The contact, the connection and the message a request names (NotFoundError, ValidationError)."""
        contact = self._contacts.get(org_id, contact_id, consistent=True)
        connection_id = body.get("connection_id")
        if not isinstance(connection_id, str) or not connection_id:
            raise ValidationError.for_field("connection_id", connection_id, "name the connection to send through")
        content = parse_content({k: body[k] for k in ("text", "template") if body.get(k) is not None}, "message")
        return contact, self._delivery.connection(org_id, connection_id), content

    def _send_message(self, org_id: str, contact_id: str, body: dict[str, Any], *, key: str) -> tuple[int, dict]:
        contact, connection, content = self._request(org_id, contact_id, body)
        connection_id, channel = connection.id, connection.channel
        decision = self._eligibility.decide(
            contact, self._eligibility.request(channel, "transactional", sender_of(connection))
        )
        if not decision.allowed:
            raise ConflictError(decision.detail, contact_id=contact.id, reason=decision.reason)
        conversation = self._repo.conversation(org_id, contact.id, channel) or {}
        kind = self._kind(channel, content, conversation)
        if kind is None:
            expires = conversation.get("window_expires_at")
            raise ValidationError.for_field(
                "template" if channel in TEMPLATE_CHANNELS else "text",
                None,
                f"the 24-hour window of this {channel} conversation "
                + (f"closed at {expires}" if expires else "is not open (the contact has not written)")
                + (": only a template may be sent" if channel in TEMPLATE_CHANNELS else ": nothing may be sent now"),
            )
        result = self._provider_send(org_id, contact, connection_id, content, kind, key=key)
        if isinstance(result, Failed):
            if result.kind == "rate_limited":
                wait = max(1, math.ceil(result.retry_after or 1))
                raise RateLimitedError(
                    f"{channel} is rate limiting this connection ({result.code}: {result.title}); retry after {wait} s",
                    retry_after=wait,
                )
            if result.kind == "retryable":
                raise UpstreamError(f"{channel} did not take the message ({result.code}: {result.title}); retry")
            raise ValidationError(
                f"{channel} refused the message ({result.code}: {result.title})",
                [{"field": "message", "value": None, "message": f"{result.code}: {result.title}"}],
            )
        # The message went: nothing after this fails the call (a retry would send it again, and an
        # Idempotency-Key is released when a call fails).
        at = clock.now_iso()
        self._record_sent(org_id, contact, channel, connection_id, result.provider_message_id, content, kind, at, "api")
        try:
            timer = self.arm(org_id, contact.id, channel, connection_id, gen=result.provider_message_id, base=at)
        except Exception:
            # Its first status starts the timer instead (the execution is named after the message).
            logger.exception("the follow-up timer did not start; the message's status will start it")
            timer = None
        return 201, {
            "id": result.provider_message_id,
            "contact_id": contact.id,
            "channel": channel,
            "connection_id": connection_id,
            "kind": kind,
            "at": at,
            "follow_up_due_at": timer,
        }

    @staticmethod
    def _kind(channel: str, content: Content, conversation: dict[str, Any]) -> str | None:
        """text or template for this conversation now; None when neither may go."""
        if channel not in WINDOW_CHANNELS:
            return "text" if content.text is not None else None
        expires = conversation.get("window_expires_at")
        if content.text is not None and expires and expires > clock.now_iso():
            return "text"
        if content.template is not None and channel in TEMPLATE_CHANNELS:
            return "template"
        return None

    def _provider_send(
        self, org_id: str, contact: Contact, connection_id: str, content: Content, kind: str, *, key: str
    ) -> Result:
        connection, provider = self._delivery.get(org_id, connection_id)
        to = address(contact, connection.channel)
        if not to:
            raise ValidationError.for_field(
                "contact_id", contact.id, f"the contact has no address on {connection.channel}"
            )
        outbound = Outbound(
            channel=connection.channel,  # type: ignore[arg-type]
            to=to,
            kind=kind,  # type: ignore[arg-type]
            idempotency_key=key,
            text=content.text if kind == "text" else None,
            template=content.template if kind == "template" else None,
            reference=key,
        )
        return provider.send(outbound)

    def _record(
        self,
        org_id: str,
        contact: Contact,
        channel: str,
        connection_id: str,
        provider_id: str,
        content: Content,
        kind: str,
        at: str,
        sent_by: str,
    ) -> None:
        entry: dict[str, Any] = {"kind": kind, "sent_by": sent_by}
        if kind == "text":
            entry["text"] = content.text
        elif content.template is not None:
            entry["template"] = content.template.name
        preview = (content.text if kind == "text" else f"[template {entry.get('template')}]") or ""
        activity = self._contacts.activity_item(
            contact,
            Activity(
                "message_sent",
                at,
                {
                    "channel": channel,
                    "kind": kind,
                    "message_id": provider_id,
                    "sent_by": sent_by,
                    "preview": preview[:120],
                },
                id=ids.derived(f"{channel}:{provider_id}"),
            ),
        )
        self._inbound.record_message(
            org_id=org_id,
            contact_id=contact.id,
            channel=channel,
            connection_id=connection_id,
            provider_id=provider_id,
            direction="outbound",
            at=at,
            entry=entry,
            activity=activity,
            ref={"follow": sent_by == "api", "sent_at": at, "connection_id": connection_id},
        )
        self._inbound.touch_conversation(
            org_id, contact.id, channel, direction="outbound", at=at, message_id=provider_id
        )

    def _record_sent(self, *args: Any) -> None:
        """Record a message that went (see `_record`), retried a few times; a record that still fails is
        logged, not raised: the message went, and a caller retrying would send it again."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                self._record(*args)
                return
            except Exception:
                if attempt == RECORD_ATTEMPTS - 1:
                    logger.exception("a sent message could not be recorded", extra={"message_id": args[4]})
                    return
                self._sleep(0.1 * (attempt + 1))

    # -- the idle timer ------------------------------------------------------------------------------------

    def arm(self, org_id: str, contact_id: str, channel: str, connection_id: str, *, gen: str, base: str) -> str | None:
        """Start (or confirm) the idle timer that follows outbound message `gen` sent at `base`; when the
        first follow-up is due, or None when follow-ups are off or the timer is not this message's.

        The execution starts before the conversation records the timer: a start that fails leaves nothing
        waiting without an execution, and an execution whose timer was not recorded (not the newest
        message, or a reply came first) ends at its first step."""
        rules = self.effective_rules(org_id, connection_id)
        due = _wake(_plus(base, rules.idle_seconds)) if rules.enabled else None
        if due is not None:
            self._start(
                execution_name(org_id, contact_id, channel, gen),
                {
                    "kind": "idle",
                    "org_id": org_id,
                    "contact_id": contact_id,
                    "channel": channel,
                    "gen": gen_token(gen),
                    "next": {"done": False, "wait_until": due},
                },
            )
        old = self._repo.arm(
            org_id,
            contact_id,
            channel,
            gen=gen,
            base=base,
            reply_cutoff=_plus(base, -1),
            connection_id=connection_id,
            due_at=due,
        )
        if old is None:
            current = self._repo.conversation(org_id, contact_id, channel) or {}
            if current.get("fu_gen") != gen or current.get("fu_state") != WAITING:
                return None  # a newer message, a reply, or an end already moved past this one
            return str(current.get("fu_due_at") or due)
        if old.get("fu_gen") and old.get("fu_gen") != gen and old.get("fu_state") == WAITING:
            self._stop(execution_name(org_id, contact_id, channel, old["fu_gen"]))
        return due

    def _start(self, name: str, payload: dict[str, Any]) -> None:
        client = aws.client("stepfunctions")
        # A timer that runs (or ran) already: a repeated event starts nothing.
        with contextlib.suppress(client.exceptions.ExecutionAlreadyExists):
            client.start_execution(stateMachineArn=self._arn, name=name, input=json.dumps(payload))

    def _stop(self, name: str) -> None:
        arn = self._arn.replace(":stateMachine:", ":execution:") + f":{name}"
        with contextlib.suppress(Exception):  # it may have ended; its next step would see it is stale anyway
            aws.client("stepfunctions").stop_execution(executionArn=arn, cause="superseded")

    def step(self, event: dict[str, Any]) -> dict[str, Any]:
        """One step of an execution: {"done": bool, "wait_until": when to call again}."""
        if event.get("kind") == "requested":
            return self._requested_step(event["org_id"], event["contact_id"], event["follow_up_id"])
        return self._idle_step(event["org_id"], event["contact_id"], event["channel"], event["gen"])

    def _idle_step(self, org_id: str, contact_id: str, channel: str, gen: str) -> dict[str, Any]:
        done = {"done": True, "wait_until": clock.now_iso()}
        conversation = self._repo.conversation(org_id, contact_id, channel)
        current = (conversation or {}).get("fu_gen")
        # The input names the message by its token (or, for executions started before tokens, by its id).
        if (
            conversation is None
            or not current
            or gen not in (current, gen_token(current))
            or conversation.get("fu_state") != WAITING
        ):
            return done  # stale: a newer message, a reply or an end moved the timer on
        gen = current
        at = self._now()
        now = clock.iso(at)

        def end(state: str, reason: str) -> dict[str, Any]:
            self._repo.end(org_id, contact_id, channel, state=state, reason=reason, at=now, gen=gen)
            return done

        try:
            contact = self._contacts.get(org_id, contact_id, consistent=True)
        except NotFoundError:
            return end("cancelled", "contact_deleted")
        connection_id = conversation.get("fu_connection") or conversation.get("connection_id")
        rules = self.effective_rules(org_id, connection_id)
        if not rules.enabled:
            return end("cancelled", "rules_disabled")
        step = int(conversation.get("fu_step", 0))
        closing = step >= rules.max_follow_ups
        content = rules.closing_message if closing else rules.message(step)
        due = _parse_time(_plus(conversation.get("fu_prev_at") or conversation["fu_base"], rules.wait_after(step)))
        if content is not None and rules.business_hours is not None:
            due = rules.business_hours.next_open(due, zone_of_phone(contact.phone))
        if due > at + EARLY:
            wait_until = _wake(clock.iso(due))
            if wait_until != conversation.get("fu_due_at"):
                self._repo.reschedule(org_id, contact_id, channel, gen, step, wait_until)
            return {"done": False, "wait_until": wait_until}
        if due > at:
            self._sleep((due - at).total_seconds())
            at = self._now()
            now = clock.iso(at)
        try:
            connection = self._delivery.connection(org_id, connection_id)
        except (NotFoundError, ValidationError):
            return end("cancelled", "connection_gone")
        decision = self._eligibility.decide(
            contact, self._eligibility.request(channel, "marketing", sender_of(connection))
        )
        if not decision.allowed:
            return end("cancelled" if decision.reason == "no_address" else "opted_out", decision.reason)
        owner = ids.ulid()
        claimed = self._repo.claim(
            org_id,
            contact_id,
            channel,
            gen,
            step,
            owner=owner,
            reply_cutoff=_plus(conversation["fu_base"], -1),
            now=int(time.time()),
            lease=LEASE_SECONDS,
        )
        if claimed is None:
            fresh = self._repo.conversation(org_id, contact_id, channel) or {}
            if fresh.get("fu_gen") != gen or fresh.get("fu_state") != WAITING:
                return done
            if int(fresh.get("fu_step", 0)) != step:
                return {"done": False, "wait_until": now}  # another attempt did this step: work out the next
            raise StepNotReady("another attempt holds this step's send; retried once its lease runs out")
        outcome: dict[str, Any] = {"step": step + 1, "at": now}
        if claimed.get("fu_lease_by"):
            # An attempt claimed this step and stopped without recording it: its message may have gone.
            outcome["possible_duplicate"] = True
        if content is not None:
            try:
                sent = self._follow_up_send(
                    org_id, contact, connection_id, channel, content, gen, step, closing, conversation
                )
            except Exception:
                self._repo.release(org_id, contact_id, channel, owner)  # nothing went: a retry may go at once
                raise
            if isinstance(sent, Failed):
                if sent.kind != "permanent":
                    self._repo.release(org_id, contact_id, channel, owner)
                    raise StepNotReady(f"{channel} did not take the follow-up ({sent.code}: {sent.title}); retrying")
                outcome.update(outcome="failed", error_code=sent.code, error_title=sent.title[:200])
            elif isinstance(sent, Delivered):
                outcome.update(outcome="sent", message_id=sent.provider_id, message_kind=sent.kind)
            else:
                outcome.update(outcome="skipped", reason=sent)
        next_due = None if closing else _wake(_plus(now, rules.wait_after(step + 1)))
        recorded = self._repo.advance(
            org_id,
            contact_id,
            channel,
            step,
            owner=owner,
            at=now,
            due_at=next_due,
            outcome=outcome,
            close=("no_reply", rules.resolve) if closing else None,
        )
        if not recorded:
            # The lease ran out while sending and another attempt took the step over: it records the step.
            # The timer moved on while this step sent (a newer message, a reply), or the lease ran out and
            # another attempt took the step over: its lease (if still this attempt's) goes, the step is left.
            self._repo.release(org_id, contact_id, channel, owner)
            logger.warning("a follow-up step could not be recorded", extra={"contact_id": contact_id, "step": step})
            return {"done": False, "wait_until": clock.now_iso()}
        if closing:
            return done
        return {"done": False, "wait_until": next_due}

    def _follow_up_send(
        self,
        org_id: str,
        contact: Contact,
        connection_id: str,
        channel: str,
        content: Content,
        gen: str,
        step: int,
        closing: bool,
        conversation: dict[str, Any],
    ) -> Delivered | Failed | str:
        """Send one step's message; what went, the provider's refusal, or why it was skipped. The window
        is the one the step read: a message that opened it since would have ended the timer. Follow-ups and
        the closing message are marketing messages: they take a place under the org's frequency cap."""
        key = f"fu:{gen}:{step}"
        if self._caps is not None and not self._caps.take(org_id, contact.id, key):
            return "frequency_cap"
        kind = self._kind(channel, content, conversation)
        if kind is None:
            self._release_cap(org_id, contact.id, key)
            return "window_closed"
        try:
            result = self._provider_send(org_id, contact, connection_id, content, kind, key=key)
        except ValidationError:
            self._release_cap(org_id, contact.id, key)
            return "no_address"
        if isinstance(result, Sent):
            sent_by = "closing" if closing else "follow_up"
            self._record_sent(
                org_id,
                contact,
                channel,
                connection_id,
                result.provider_message_id,
                content,
                kind,
                clock.now_iso(),
                sent_by,
            )
            return Delivered(result.provider_message_id, kind)
        self._release_cap(org_id, contact.id, key)
        return result

    def _release_cap(self, org_id: str, contact_id: str, key: str) -> None:
        if self._caps is not None:
            self._caps.release(org_id, contact_id, key)

    # -- what ends a timer --------------------------------------------------------------------------------

    def on_inbound(self, org_id: str, contact_id: str, at: str) -> int:
        """The contact wrote: every waiting timer of it ends (replied). Returns once no follow-up of it is
        being sent, so none leaves after this returns. How many timers ended."""
        # Platforms stamp messages to the second: a message stamped within a second before the outbound one
        # may have been written after it, and is taken as its reply.
        return self._end_all(
            org_id, contact_id, state="replied", reason="contact_replied", at=clock.now_iso(), after=_plus(at, 1)
        )

    def on_opt_out(self, org_id: str, contact_id: str, channel: str | None, *, wait: float = LEASE_SECONDS + 1) -> int:
        """The contact opted out of `channel` (None: of every channel): the timers and requested follow-ups
        on it end, and a step sending is waited for (at most `wait` seconds). How many ended."""
        now = clock.now_iso()
        ended = self._end_all(
            org_id, contact_id, state="opted_out", reason="opted_out", at=now, channel=channel, wait=wait
        )
        for item in self._repo.list_requested(org_id, contact_id):
            if channel is not None and item.get("channel") != channel:
                continue
            if self._cancel_requested(org_id, contact_id, item, reason="opted_out", at=now) is not None:
                ended += 1
        return ended

    def on_contact_stopped(self, org_id: str, contact_id: str) -> int:
        """The contact was deleted, unsubscribed or blocked: its timers and requested follow-ups end at
        once (each step would also see it before sending). How many ended."""
        return self.on_opt_out(org_id, contact_id, None, wait=CANCEL_WAIT_SECONDS)

    def _end_all(
        self,
        org_id: str,
        contact_id: str,
        *,
        state: str,
        reason: str,
        at: str,
        after: str | None = None,
        channel: str | None = None,
        wait: float = LEASE_SECONDS + 1,
    ) -> int:
        """End every waiting timer of the contact (on `channel` only, when given; only those following a
        message sent before `after`, when given), and wait for any step of it still sending."""
        ended = 0
        for conversation in self._inbound.conversations(org_id, contact_id):
            if channel is not None and conversation["channel"] != channel:
                continue
            item: dict[str, Any] | None = conversation
            if conversation.get("fu_state") == WAITING:
                item = self._repo.end(
                    org_id, contact_id, conversation["channel"], state=state, reason=reason, at=at, before=after
                )
                if item is not None:
                    ended += 1
                    self._stop(execution_name(org_id, contact_id, conversation["channel"], item["fu_gen"]))
            if item is not None:
                self._await_lease(org_id, contact_id, conversation["channel"], item, limit=wait)
        return ended

    def _await_lease(
        self, org_id: str, contact_id: str, channel: str, item: dict[str, Any], limit: float = LEASE_SECONDS + 1
    ) -> bool:
        """Wait (at most `limit` seconds) while a step that claimed its send before the timer ended is still
        sending; False when it still was."""
        deadline = time.time() + limit
        while item.get("fu_lease") is not None and int(item["fu_lease"]) >= int(time.time()):
            if time.time() >= deadline:
                return False
            self._sleep(0.05)
            item = self._repo.conversation(org_id, contact_id, channel) or {}
        return True

    # -- follow-ups requested for a time -------------------------------------------------------------------

    def schedule(
        self, org_id: str, contact_id: str, body: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Request a follow-up for a time: (HTTP status, its view). With an idempotency key, a repeated call
        answers as the first did without scheduling a second."""
        return once(
            self._idempotency,
            org_id,
            f"follow-ups:{contact_id}",
            idempotency_key,
            body,
            lambda follow_up_id: self._schedule(org_id, contact_id, body, follow_up_id=follow_up_id),
            prefix="fu_",
        )

    def _schedule(self, org_id: str, contact_id: str, body: dict[str, Any], *, follow_up_id: str) -> tuple[int, dict]:
        contact, connection, content = self._request(org_id, contact_id, body)
        connection_id, channel = connection.id, connection.channel
        now = self._now()
        due = _due(body, now)
        if not address(contact, channel):
            raise ValidationError.for_field("contact_id", contact.id, f"the contact has no address on {channel}")
        if channel in WINDOW_CHANNELS and content.template is None:
            expires = (self._repo.conversation(org_id, contact.id, channel) or {}).get("window_expires_at")
            if not expires or expires <= clock.iso(due):
                raise ValidationError.for_field(
                    "template",
                    None,
                    f"the 24-hour window of this {channel} conversation "
                    + (f"closes at {expires}" if expires else "is not open")
                    + f", before the follow-up is due at {clock.iso(due)}: give a template for it"
                    if channel in TEMPLATE_CHANNELS
                    else f"the 24-hour window of this {channel} conversation is closed when the follow-up is due",
                )
        scheduled = [
            i for i in self._repo.list_requested(org_id, contact.id) if i.get("status") in (SCHEDULED, SENDING)
        ]
        if len(scheduled) >= MAX_REQUESTED:
            raise ConflictError(
                f"the contact has {len(scheduled)} follow-ups scheduled, the most it may have; cancel one first",
                reason="too_many_follow_ups",
            )
        item = {
            "id": follow_up_id,
            "contact_id": contact.id,
            "channel": channel,
            "connection_id": connection_id,
            "due_at": clock.iso(due),
            "message": content.as_dict(),
            "status": SCHEDULED,
            "created_at": clock.iso(now),
            # Kept 90 days after it is due, then expires with its outcome.
            "expires_at": int(due.timestamp()) + 90 * 86400,
        }
        if body.get("note"):
            item["note"] = str(body["note"])[:500]
        # The execution first: a start that fails leaves nothing scheduled that would never go, and an
        # execution whose item was not written ends at its first step.
        self._start(
            f"fr-{follow_up_id}",
            {
                "kind": "requested",
                "org_id": org_id,
                "contact_id": contact.id,
                "follow_up_id": follow_up_id,
                "next": {"done": False, "wait_until": _wake(item["due_at"])},
            },
        )
        self._repo.put_requested(org_id, contact.id, item)
        return 201, self._requested_view(item, now)

    def _requested_step(self, org_id: str, contact_id: str, follow_up_id: str) -> dict[str, Any]:
        done = {"done": True, "wait_until": clock.now_iso()}
        item = self._repo.requested(org_id, contact_id, follow_up_id)
        if item is None or item.get("status") not in (SCHEDULED, SENDING):
            return done
        at = self._now()
        due = _parse_time(item["due_at"])
        if due > at + EARLY:
            return {"done": False, "wait_until": _wake(item["due_at"])}
        if due > at:
            self._sleep((due - at).total_seconds())
            at = self._now()
        now = clock.iso(at)

        def end(status: str, **fields: Any) -> dict[str, Any]:
            self._repo.move_requested(
                org_id,
                contact_id,
                follow_up_id,
                expected=item["status"],
                changes={"status": status, "ended_at": now, **fields},
            )
            return done

        try:
            contact = self._contacts.get(org_id, contact_id, consistent=True)
        except NotFoundError:
            return end("cancelled", reason="contact_deleted")
        try:
            connection = self._delivery.connection(org_id, item["connection_id"])
        except (NotFoundError, ValidationError):
            return end("failed", reason="connection_gone")
        decision = self._eligibility.decide(
            contact, self._eligibility.request(item["channel"], "marketing", sender_of(connection))
        )
        if not decision.allowed:
            return end("cancelled", reason=decision.reason)
        claimed = self._repo.move_requested(
            org_id,
            contact_id,
            follow_up_id,
            expected=item["status"],
            changes={"status": SENDING, **({"possible_duplicate": True} if item["status"] == SENDING else {})},
            now=int(time.time()),
            lease=LEASE_SECONDS,
        )
        if claimed is None:
            fresh = self._repo.requested(org_id, contact_id, follow_up_id) or {}
            if fresh.get("status") in (SCHEDULED, SENDING):
                raise StepNotReady("another attempt holds this follow-up's send; retried once its lease runs out")
            return done
        item = claimed
        content = parse_content(item["message"], "message")
        conversation = self._repo.conversation(org_id, contact_id, item["channel"]) or {}
        kind = self._kind(item["channel"], content, conversation)
        if kind is None:
            return end("failed", reason="window_closed")
        try:
            result = self._provider_send(
                org_id, contact, item["connection_id"], content, kind, key=f"fr:{follow_up_id}"
            )
        except ValidationError as error:
            return end("failed", reason="not_sendable", error_title=error.message[:200])
        if isinstance(result, Sent):
            sent_at = clock.now_iso()
            self._record_sent(
                org_id,
                contact,
                item["channel"],
                item["connection_id"],
                result.provider_message_id,
                content,
                kind,
                sent_at,
                "requested_follow_up",
            )
            return end("sent", message_id=result.provider_message_id, sent_at=sent_at)
        if result.kind == "permanent":
            return end("failed", reason="provider", error_code=result.code, error_title=result.title[:200])
        # Nothing went: scheduled again (and cancellable meanwhile); the state machine retries the step.
        self._repo.move_requested(org_id, contact_id, follow_up_id, expected=SENDING, changes={"status": SCHEDULED})
        raise StepNotReady(f"{item['channel']} did not take the follow-up ({result.code}: {result.title}); retrying")

    def list(self, org_id: str, contact_id: str, *, status: str | None = SCHEDULED) -> list[dict[str, Any]]:
        """The contact's follow-ups, soonest first: requested ones and the next of each idle timer."""
        self._contacts.get(org_id, contact_id)
        now = self._now()
        found = [
            self._requested_view(item, now)
            for item in self._repo.list_requested(org_id, contact_id)
            if status is None or item.get("status") == status
        ]
        for conversation in self._inbound.conversations(org_id, contact_id):
            state = conversation.get("fu_state")
            if state is None or (status is not None and not (status == SCHEDULED and state == WAITING)):
                continue
            rules = self.effective_rules(org_id, conversation.get("fu_connection"))
            step = int(conversation.get("fu_step", 0))
            view: dict[str, Any] = {
                "id": f"idle-{conversation['channel']}",
                "kind": "idle",
                "channel": conversation["channel"],
                "connection_id": conversation.get("fu_connection"),
                "status": SCHEDULED if state == WAITING else state,
                "reason": conversation.get("fu_reason"),
                "step": step + 1 if state == WAITING else None,
                "closing": step >= rules.max_follow_ups if state == WAITING else None,
                "max_follow_ups": rules.max_follow_ups,
                "due_at": conversation.get("fu_due_at"),
                "after_message_id": conversation.get("fu_gen"),
                "last": conversation.get("fu_last"),
            }
            found.append(_with_due(view, now))
        found.sort(key=lambda v: (v.get("due_at") or "~", v["id"]))
        return found

    def cancel(self, org_id: str, contact_id: str, follow_up_id: str) -> dict[str, Any]:
        """Cancel a scheduled follow-up; `idle-<channel>` ends that conversation's idle timer. A step that is
        sending at that moment is waited for a few seconds; past that it may still go."""
        self._contacts.get(org_id, contact_id)
        now = self._now()
        if follow_up_id.startswith("idle-"):
            channel = follow_up_id.removeprefix("idle-")
            current = self._repo.conversation(org_id, contact_id, channel)
            if current is None or current.get("fu_state") is None:
                raise NotFoundError(f"follow-up {follow_up_id} not found")
            after = self._repo.end(
                org_id, contact_id, channel, state="cancelled", reason="cancelled", at=clock.iso(now)
            )
            if after is None:
                raise ConflictError(f"follow-up {follow_up_id} is not scheduled", status=current.get("fu_state"))
            self._stop(execution_name(org_id, contact_id, channel, after["fu_gen"]))
            self._await_lease(org_id, contact_id, channel, after, limit=CANCEL_WAIT_SECONDS)
            return {"id": follow_up_id, "kind": "idle", "channel": channel, "status": "cancelled"}
        item = self._repo.requested(org_id, contact_id, follow_up_id)
        if item is None:
            raise NotFoundError(f"follow-up {follow_up_id} not found")
        moved = self._cancel_requested(org_id, contact_id, item, reason="cancelled", at=clock.iso(now))
        if moved is None:
            status = item.get("status")
            raise ConflictError(
                f"follow-up {follow_up_id} is {status}: it can no longer be cancelled"
                if status != SENDING
                else f"follow-up {follow_up_id} is being sent; it cannot be cancelled now",
                status=status,
            )
        return self._requested_view(moved, now)

    def _cancel_requested(
        self, org_id: str, contact_id: str, item: dict[str, Any], *, reason: str, at: str
    ) -> dict[str, Any] | None:
        """Cancel a requested follow-up that is scheduled, or stuck sending (its attempt's lease ran out):
        the item after, or None when it went, ended or is being sent."""
        changes = {"status": "cancelled", "reason": reason, "ended_at": at}
        moved = None
        if item.get("status") == SCHEDULED:
            moved = self._repo.move_requested(org_id, contact_id, item["id"], expected=SCHEDULED, changes=changes)
        elif item.get("status") == SENDING:
            moved = self._repo.move_requested(
                org_id, contact_id, item["id"], expected=SENDING, changes=changes, now=int(time.time())
            )
        if moved is not None:
            self._stop(f"fr-{item['id']}")
        return moved

    @staticmethod
    def _requested_view(item: dict[str, Any], now: datetime) -> dict[str, Any]:
        view = {
            "id": item["id"],
            "kind": "requested",
            "channel": item["channel"],
            "connection_id": item["connection_id"],
            "status": item["status"],
            "reason": item.get("reason"),
            "due_at": item["due_at"],
            "message": item.get("message"),
            "note": item.get("note"),
            "message_id": item.get("message_id"),
            "created_at": item.get("created_at"),
        }
        return _with_due(view, now)


def _with_due(view: dict[str, Any], now: datetime) -> dict[str, Any]:
    due = view.get("due_at")
    if due and view.get("status") in (SCHEDULED, SENDING):
        seconds = max(0.0, (_parse_time(due) - now).total_seconds())
        view["due_in_seconds"] = int(seconds)
        view["due_in"] = in_words(seconds)
    return view


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DELAY = re.compile(r"[0-9]{1,6}[smhd]")


def _due(body: dict[str, Any], now: datetime) -> datetime:
    """When a requested follow-up is due: `at` (ISO 8601 with a zone) or `in` (seconds, or "90m", "24h", "2d")."""
    at, after = body.get("at"), body.get("in")
    if (at is None) == (after is None):
        raise ValidationError.for_field("at", at, "give exactly one of at (a time) or in (a delay such as 24h)")
    if at is not None:
        due = clock.parse_zoned(str(at))
    else:
        seconds: float
        if isinstance(after, int) and not isinstance(after, bool) and 0 < after <= MAX_AHEAD:
            seconds = after
        elif isinstance(after, str) and _DELAY.fullmatch(after):
            seconds = int(after[:-1]) * _UNITS[after[-1]]
        else:
            raise ValidationError.for_field(
                "in", after, "must be seconds (1 to 360 days), or a number with s, m, h or d (24h, 2d)"
            )
        due = now + timedelta(seconds=seconds)
    ahead = (due - now).total_seconds()
    if ahead < 1 or ahead > MAX_AHEAD:
        raise ValidationError.for_field(
            "at" if at is not None else "in", at or after, "must be from 1 second to 360 days ahead"
        )
    return due


__all__ = ["FollowUpService", "StepNotReady", "execution_name", "in_words"]
