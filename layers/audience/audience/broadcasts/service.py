"""Broadcasts: create and edit drafts, schedule and cancel marketing runs, activate and pause transactional
broadcasts, send one transactional message, and read analytics.

A marketing broadcast's audience is every contact or one or more segments; scheduling starts a
BroadcastStateMachine execution named after the run (so a run starts once) that waits for the time, then
plans (see planner.py). Cancelling moves the broadcast to CANCELLED first: the planner and the senders read
that before each page and each message, so nothing leaves after the cancel is acknowledged except messages
already handed to the provider.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from audience import aws, clock, ids
from audience.broadcasts import keys, models
from audience.broadcasts.delivery import Delivery, address
from audience.broadcasts.destinations import PHONE_CHANNELS, DestinationLimit, DestinationLimits, Taken, destination
from audience.broadcasts.planner import release_segments
from audience.broadcasts.quiet import parse_quiet_hours
from audience.broadcasts.repository import BroadcastsRepository, RecipientRef
from audience.broadcasts.sender import BatchIncomplete
from audience.broadcasts.values import read_values
from audience.compliance.eligibility import EligibilityService
from audience.contacts.models import Contact, Identity
from audience.contacts.repository import ContactsRepository
from audience.contacts.service import ContactService
from audience.errors import ConflictError, NotFoundError, RateLimitedError, ValidationError
from audience.idempotency import once
from audience.segments.repository import SegmentsRepository

MAX_NAME = 200
MAX_SEGMENTS = 20
DEFAULT_RATE_LIMIT = 100
DEFAULT_RATE_PERIOD = 60
MAX_SCHEDULE_DAYS = 365
MAX_VARIABLES = 50
# Property values may be uploaded until a run starts planning (and again after it ended), and are kept
# 400 days (a draft's values outlive its longest schedule).
VALUES_STATUSES = ("DRAFT", "SCHEDULED", "CANCELLED", "FAILED", "SENT")
VALUES_SECONDS = 400 * 86400
SUMMARY_FIELDS = ("name", "type", "status", "segment_ids", "audience_all", "scheduled_at", "rate_limit")


class BroadcastService:
    def __init__(
        self,
        repo: BroadcastsRepository,
        *,
        contacts: ContactService,
        contacts_repository: ContactsRepository,
        segments: SegmentsRepository,
        eligibility: EligibilityService,
        delivery: Delivery,
        state_machine_arn: str,
        transactional_queue_url: str,
        send_now: Callable[[dict[str, Any]], list[dict[str, Any]]],
        send_test: Callable[..., dict[str, Any]] | None = None,
        record_consent: Callable[..., Any] | None = None,
        destination_limits: DestinationLimits,
    ) -> None:
        self._repo = repo
        self._destinations = destination_limits
        self._contacts = contacts
        self._contacts_repository = contacts_repository
        self._segments = segments
        self._eligibility = eligibility
        self._delivery = delivery
        self._state_machine = state_machine_arn
        self._queue_url = transactional_queue_url
        self._send_now = send_now
        self._record_consent = record_consent
        self._send_test = send_test

    # -- drafts ------------------------------------------------------------------------------------

    def create(self, org_id: str, data: dict[str, Any]) -> dict[str, Any]:
        kind = data.get("type")
        if kind not in models.TYPES:
            raise ValidationError.for_field("type", kind, f"must be one of {', '.join(models.TYPES)}")
        now = clock.now_iso()
        summary = {
            "id": ids.new_id("bc"),
            "org_id": org_id,
            "type": kind,
            "status": "DRAFT",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        summary, content = self._validated(org_id, summary, data)
        self._repo.create(summary, content)
        return self.get(org_id, summary["id"])

    def get(self, org_id: str, broadcast_id: str) -> dict[str, Any]:
        head = self._repo.head(org_id, broadcast_id)
        return _view(head["summary"], head["content"], head["counters"])

    def list(self, org_id: str, *, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        items, after = self._repo.list(org_id, after=cursor, limit=limit)
        return [_view(item, None, None) for item in items], after

    def update(self, org_id: str, broadcast_id: str, data: dict[str, Any]) -> dict[str, Any]:
        head = self._repo.head(org_id, broadcast_id)
        summary, content = head["summary"], head["content"]
        if not models.editable(summary["status"]):
            raise ConflictError(
                f"only a DRAFT broadcast can be edited, this one is {summary['status']}: duplicate it to change it",
                status=summary["status"],
            )
        if "type" in data and data["type"] != summary["type"]:
            raise ValidationError.for_field("type", data["type"], "is fixed when the broadcast is created")
        merged = {**_editable(summary, content), **{k: v for k, v in data.items() if k != "type"}}
        version = int(summary["version"])
        fresh = {**summary, "updated_at": clock.now_iso(), "version": version + 1}
        fresh, content = self._validated(org_id, fresh, merged)
        self._repo.replace(fresh, content, expected_version=version)
        return self.get(org_id, broadcast_id)

    def duplicate(self, org_id: str, broadcast_id: str) -> dict[str, Any]:
        head = self._repo.head(org_id, broadcast_id)
        data = _editable(head["summary"], head["content"])
        data["name"] = f"{data['name']} (Copy)"[:MAX_NAME]
        data["type"] = head["summary"]["type"]
        return self.create(org_id, data)

    def delete(self, org_id: str, broadcast_id: str) -> None:
        summary = self._repo.summary(org_id, broadcast_id)
        if not models.deletable(summary["status"]):
            raise ConflictError(
                f"broadcast {broadcast_id} is SENDING: cancel it before deleting it", status=summary["status"]
            )
        self._stop(summary)
        self._repo.delete(org_id, broadcast_id)
        release_segments(self._segments, org_id, broadcast_id, summary)

    def _validated(self, org_id: str, summary: dict[str, Any], data: dict[str, Any]) -> tuple[dict, dict]:
        allowed = {
            "type",
            "name",
            "channels",
            "properties",
            "segment_ids",
            "audience_all",
            "rate_limit",
            "destination_rate_limit",
            "quiet_hours",
        }
        for key in data:
            if key not in allowed:
                raise ValidationError.for_field(
                    key, None, f"is not a broadcast field (expected {', '.join(sorted(allowed))})"
                )
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ValidationError.for_field("name", name, f"must be 1 to {MAX_NAME} characters")
        properties = models.parse_properties(data.get("properties", []))
        channels = models.parse_channels(data.get("channels"), [p.name for p in properties])
        seen: set[str] = set()
        for i, template in enumerate(channels):
            if template.channel in seen:
                raise ValidationError.for_field(
                    f"channels[{i}].channel",
                    template.channel,
                    "is given twice: a broadcast has one template per channel",
                )
            seen.add(template.channel)
            try:
                connection = self._delivery.connection(org_id, template.connection_id)
            except NotFoundError:
                raise ValidationError.for_field(
                    f"channels[{i}].connection_id", template.connection_id, "is not a connection of this org"
                ) from None
            if connection.channel != template.channel:
                raise ValidationError.for_field(
                    f"channels[{i}].connection_id",
                    template.connection_id,
                    f"is a {connection.platform} connection; it cannot send on {template.channel}",
                )
        kind = summary["type"]
        fresh = {**summary, "name": name.strip()}
        quiet = parse_quiet_hours(data.get("quiet_hours"))
        if quiet is not None and kind != "marketing":
            raise ValidationError.for_field(
                "quiet_hours", None, "applies to marketing broadcasts only (a transactional message goes at once)"
            )
        if kind == "marketing":
            if "rate_limit" in data and data["rate_limit"] is not None:
                raise ValidationError.for_field("rate_limit", None, "applies to transactional broadcasts only")
            if data.get("destination_rate_limit") is not None:
                raise ValidationError.for_field(
                    "destination_rate_limit", None, "applies to transactional broadcasts only"
                )
            segment_ids = data.get("segment_ids") or []
            if not isinstance(segment_ids, list) or len(segment_ids) > MAX_SEGMENTS:
                raise ValidationError.for_field(
                    "segment_ids", None, f"must be a list of at most {MAX_SEGMENTS} segment ids"
                )
            segment_ids = list(dict.fromkeys(segment_ids))
            for segment_id in segment_ids:
                if not isinstance(segment_id, str):
                    raise ValidationError.for_field("segment_ids", segment_id, "must be segment ids")
                try:
                    self._segments.get_segment(org_id, segment_id)
                except NotFoundError:
                    raise ValidationError.for_field("segment_ids", segment_id, "is not a segment of this org") from None
            audience_all = data.get("audience_all", False)
            if not isinstance(audience_all, bool):
                raise ValidationError.for_field("audience_all", audience_all, "must be true or false")
            if audience_all and segment_ids:
                raise ValidationError.for_field("audience_all", True, "cannot be combined with segment_ids")
            fresh["segment_ids"] = segment_ids
            fresh["audience_all"] = audience_all
            fresh.pop("rate_limit", None)
            fresh.pop("destination_rate_limit", None)
        else:
            if data.get("segment_ids") or data.get("audience_all"):
                raise ValidationError.for_field(
                    "segment_ids", None, "a transactional broadcast has no audience: it is sent one recipient per call"
                )
            fresh["rate_limit"] = _rate_limit(data.get("rate_limit"))
            fresh["destination_rate_limit"] = DestinationLimit.parse(data.get("destination_rate_limit")).as_dict()
            fresh.pop("segment_ids", None)
            fresh.pop("audience_all", None)
        content = {"channels": data.get("channels"), "properties": data.get("properties", [])}
        if quiet is not None:
            content["quiet_hours"] = quiet.as_dict()
        return fresh, content

    # -- marketing runs -------------------------------------------------------------------------------

    def schedule(self, org_id: str, broadcast_id: str, at: str | None) -> dict[str, Any]:
        summary = self._repo.summary(org_id, broadcast_id)
        target = models.transition(summary["type"], summary["status"], "schedule")
        when = _schedule_time(at)
        if not summary.get("segment_ids") and not summary.get("audience_all"):
            raise ValidationError.for_field(
                "segment_ids", None, "choose the audience first: segment_ids, or audience_all true for every contact"
            )
        locked: list[str] = []
        try:
            for segment_id in summary.get("segment_ids") or []:
                try:
                    self._segments.lock(org_id, segment_id, broadcast_id, summary["name"], target)
                except NotFoundError:
                    raise ValidationError.for_field(
                        "segment_ids", segment_id, "was deleted since the broadcast was written: edit its audience"
                    ) from None
                locked.append(segment_id)
            run = ids.ulid()
            moved = self._repo.move(
                org_id,
                broadcast_id,
                expected=[summary["status"]],
                changes={"status": target, "scheduled_at": when, "run": run, "updated_at": clock.now_iso()},
                remove=["error", "finished_at", "cancelled_at", "sending_started_at"],
            )
            if moved is None:
                raise ConflictError(f"broadcast {broadcast_id} changed meanwhile; read it again and retry")
            try:
                aws.client("stepfunctions").start_execution(
                    stateMachineArn=self._state_machine,
                    name=f"{broadcast_id}-{run}",
                    input=json.dumps(
                        {"org_id": org_id, "broadcast_id": broadcast_id, "run": run, "scheduled_at": when}
                    ),
                )
            except Exception:
                self._repo.move(org_id, broadcast_id, expected=[target], changes={"status": summary["status"]}, run=run)
                raise
        except Exception:
            # Nothing was scheduled: the segments it locked are free again.
            for segment_id in locked:
                self._segments.unlock(org_id, segment_id, broadcast_id)
            raise
        return self.get(org_id, broadcast_id)

    def cancel(self, org_id: str, broadcast_id: str) -> dict[str, Any]:
        summary = self._repo.summary(org_id, broadcast_id)
        target = models.transition(summary["type"], summary["status"], "cancel")
        moved = self._repo.move(
            org_id,
            broadcast_id,
            expected=[summary["status"]],
            changes={"status": target, "cancelled_at": clock.now_iso(), "updated_at": clock.now_iso()},
            run=summary.get("run"),
        )
        if moved is None:
            raise ConflictError(f"broadcast {broadcast_id} changed meanwhile; read it again and retry")
        self._stop(summary)
        release_segments(self._segments, org_id, broadcast_id, summary)
        return self.get(org_id, broadcast_id)

    def _stop(self, summary: dict[str, Any]) -> None:
        """Stop the run's execution (its wait, or its planning); harmless when it already ended."""
        if not summary.get("run") or summary["status"] not in ("SCHEDULED", "SENDING"):
            return
        arn = self._state_machine.replace(":stateMachine:", ":execution:") + f":{summary['id']}-{summary['run']}"
        try:
            aws.client("stepfunctions").stop_execution(executionArn=arn, cause="broadcast cancelled")
        except aws.client("stepfunctions").exceptions.ExecutionDoesNotExist:
            pass

    # -- transactional --------------------------------------------------------------------------------

    def set_active(self, org_id: str, broadcast_id: str, action: str) -> dict[str, Any]:
        summary = self._repo.summary(org_id, broadcast_id)
        target = models.transition(summary["type"], summary["status"], action)
        if (
            self._repo.move(
                org_id,
                broadcast_id,
                expected=[summary["status"]],
                changes={"status": target, "updated_at": clock.now_iso()},
            )
            is None
        ):
            raise ConflictError(f"broadcast {broadcast_id} changed meanwhile; read it again and retry")
        return self.get(org_id, broadcast_id)

    def send(
        self, org_id: str, broadcast_id: str, body: dict[str, Any], idempotency_key: str | None
    ) -> tuple[int, dict]:
        """One transactional send; (HTTP status, body). With an idempotency key, a repeated call returns
        the first call's answer without sending again."""
        summary = self._repo.summary(org_id, broadcast_id)
        if summary["type"] != "transactional":
            raise ConflictError("only a transactional broadcast is sent one recipient per call; schedule this one")
        if summary["status"] != "ACTIVE":
            raise ConflictError(f"this broadcast is {summary['status']}: activate it to send", status=summary["status"])
        # The send's id comes from the key's claim: a call that takes over a stopped one continues its send,
        # and a key used again after its record expired makes a new send.
        return once(
            self._repo,
            org_id,
            broadcast_id,
            idempotency_key,
            body,
            lambda send_id: self._send(org_id, summary, body, send_id=send_id, resumable=idempotency_key is not None),
            prefix="s",
        )

    def _send(
        self, org_id: str, summary: dict[str, Any], body: dict[str, Any], send_id: str, *, resumable: bool = False
    ) -> tuple[int, dict]:
        broadcast_id = summary["id"]
        content = self._repo.content(org_id, broadcast_id)
        templates = {c["channel"]: c for c in content.get("channels", [])}
        wanted = list(dict.fromkeys(body.get("template_ids") or templates))
        for name in wanted:
            if name not in templates:
                raise ValidationError.for_field(
                    "template_ids", name, f"is not a template of this broadcast (its templates: {', '.join(templates)})"
                )
        variables = body.get("variables") or {}
        declared = {p["name"] for p in content.get("properties", [])}
        for name, value in variables.items():
            if name not in declared:
                raise ValidationError.for_field(f"variables.{name}", None, "is not a property of the broadcast")
            if not isinstance(value, str) or len(value) > models.MAX_STATIC:
                raise ValidationError.for_field(
                    f"variables.{name}", None, f"must be text of at most {models.MAX_STATIC} characters"
                )
        contact = self._recipient(org_id, body)
        overrides = {k: body[k] for k in ("name", "phone", "email") if body.get(k)}
        for reason_check in ("blocked", "unsubscribed"):
            if contact.status.lower() == reason_check:
                raise ConflictError(
                    f"the contact is {contact.status}: nothing is sent to it",
                    contact_id=contact.id,
                    reason=reason_check,
                )
        rows = []
        now = clock.now_iso()
        shard = keys.shard_of(send_id)
        for channel in wanted:
            connection = self._delivery.connection(org_id, templates[channel]["connection_id"])
            from audience.broadcasts.delivery import sender_of

            decision = self._eligibility.decide(
                contact, self._eligibility.request(channel, "marketing", sender_of(connection))
            )
            if decision.reason == "do_not_contact":
                raise ConflictError(decision.detail, contact_id=contact.id, reason=decision.reason)
            to = address(contact, channel)
            if channel in ("whatsapp", "sms") and overrides.get("phone"):
                to = overrides["phone"] if channel == "sms" else overrides["phone"].removeprefix("+")
            if channel == "email" and overrides.get("email"):
                to = overrides["email"]
            if not to:
                if body.get("template_ids"):
                    raise ValidationError.for_field("template_ids", channel, f"the contact has no address on {channel}")
                continue
            rows.append(
                {
                    "pk": keys.recipient_pk(org_id, broadcast_id, shard),
                    "sk": keys.recipient_sk(send_id, channel),
                    "broadcast_id": broadcast_id,
                    "contact_id": contact.id,
                    "channel": channel,
                    "to": to,
                    "status": "PENDING",
                    "planned_at": now,
                    "properties": variables or None,
                    "overrides": overrides or None,
                    "gsi2pk": keys.contact_partition(org_id, contact.id),
                    "gsi2sk": f"{now}#{broadcast_id}#{send_id}#{channel}",
                }
            )
        if not rows:
            raise ConflictError(
                f"the contact has no address on any channel of this broadcast ({', '.join(wanted)})",
                contact_id=contact.id,
                reason="no_address",
            )
        deltas: dict[str, int] = {"total": len(rows), "pending": len(rows)}
        for row in rows:
            deltas[f"total_{row['channel']}"] = deltas.get(f"total_{row['channel']}", 0) + 1
        message = {
            "org_id": org_id,
            "broadcast_id": broadcast_id,
            "batch": send_id,
            "recipients": [[shard, row["sk"]] for row in rows],
        }
        # A call that takes over a stopped one (same idempotency key, same send) finds the rows it wrote:
        # that send was counted before they were written, so it is not counted again.
        counted = resumable and bool(
            self._repo.recipients(org_id, broadcast_id, [RecipientRef(shard, r["sk"]) for r in rows])
        )
        taken = None if counted else self._take(org_id, summary, rows, overrides)
        try:
            self._repo.put_recipients(rows)
            self._repo.mark_planned(org_id, broadcast_id, send_id, deltas, message)
        except Exception:
            # Nothing was planned, so nothing is sent: the call fails, its idempotency key is released, and
            # the retry (a new send) is counted instead. A call stopped outright keeps its count: a takeover
            # finds the rows it wrote.
            if taken is not None:
                self._destinations.release(taken)
            raise
        if body.get("background"):
            aws.client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))
            return 202, {"send_id": send_id, "contact_id": contact.id, "recipients": [_recipient_view(r) for r in rows]}
        try:
            ended = self._send_now(message)
        except BatchIncomplete:
            # The provider did not take it yet (a fault that outlasted the retries): it goes on in the
            # background, as with background true, rather than being left half-done.
            aws.client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))
            now_rows = self._repo.recipients(org_id, broadcast_id, [RecipientRef(shard, r["sk"]) for r in rows])
            return 202, {
                "send_id": send_id,
                "contact_id": contact.id,
                "recipients": [_recipient_view(r) for r in now_rows.values()],
            }
        return 200, {"send_id": send_id, "contact_id": contact.id, "recipients": [_recipient_view(r) for r in ended]}

    def _take(
        self, org_id: str, summary: dict[str, Any], rows: list[dict[str, Any]], overrides: dict[str, Any]
    ) -> Taken:
        """Count the send against the destination limit and the broadcast's rate limit (RateLimitedError,
        with nothing counted, when either is spent). One send counts once against each address it goes to;
        a phone given in the call counts as its E.164 number (read in the org's country) on WhatsApp and SMS
        alike, so no way of writing a number counts apart."""
        phone = None
        if overrides.get("phone"):
            phone = destination("sms", overrides["phone"], self._contacts.org_context(org_id)[1])
        addresses = [
            phone if phone and row["channel"] in PHONE_CHANNELS else destination(row["channel"], row["to"])
            for row in rows
        ]
        taken = self._destinations.take(
            org_id, summary["id"], addresses, DestinationLimit.parse(summary.get("destination_rate_limit"))
        )
        try:
            self._take_rate(org_id, summary)
        except Exception:
            self._destinations.release(taken)
            raise
        return taken

    def _take_rate(self, org_id: str, summary: dict[str, Any]) -> None:
        limit = summary.get("rate_limit") or {"limit": DEFAULT_RATE_LIMIT, "period_seconds": DEFAULT_RATE_PERIOD}
        period = int(limit["period_seconds"])
        moment = time.time()
        window = int(moment // period)
        if self._repo.count_send(org_id, summary["id"], window, int(limit["limit"]), (window + 2) * period) is None:
            retry_after = max(1, int((window + 1) * period - moment + 0.999))
            raise RateLimitedError(
                f"this broadcast sends at most {limit['limit']} messages per {period} s; retry after {retry_after} s",
                retry_after=retry_after,
                limit=int(limit["limit"]),
            )

    def _recipient(self, org_id: str, body: dict[str, Any]) -> Any:
        """The contact a send is for: contact_channel_id, else contact_id, else phone/email (found or created)."""
        channel_id = body.get("contact_channel_id")
        if channel_id:
            channel, _, user_id = str(channel_id).partition(":")
            if not user_id:
                raise ValidationError.for_field(
                    "contact_channel_id", channel_id, "must be <channel>:<user id>, for example telegram:123456789"
                )
            owner = self._contacts_repository.owners(org_id, [Identity(channel, user_id)]).get(
                Identity(channel, user_id)
            )
            if owner is None:
                raise NotFoundError(f"no contact has {channel} id {user_id}")
            return self._contacts_repository.get(org_id, owner)
        if body.get("contact_id"):
            return self._contacts_repository.get(org_id, str(body["contact_id"]))
        data = {k: body[k] for k in ("phone", "email") if body.get(k)}
        if not data:
            raise ValidationError.for_field(
                "contact_id", None, "name the recipient: contact_channel_id, contact_id, phone or email"
            )
        if body.get("name"):
            data["full_name"] = body["name"]
        outcome = self._contacts.create(org_id, data, upsert=True)
        if outcome.contact is None:
            raise ValidationError(outcome.message or "the recipient is not valid", outcome.errors)
        return outcome.contact

    # -- test sends -------------------------------------------------------------------------------------

    def test_send(self, org_id: str, broadcast_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Send the broadcast's messages once to a phone, an email or a channel id, in any status (a draft
        is tested before it is scheduled). An existing contact with that identity fills the template with
        its values; otherwise the given `name` does. Nothing is counted or recorded as a recipient."""
        summary = self._repo.summary(org_id, broadcast_id)
        content = self._repo.content(org_id, broadcast_id)
        templates = [c["channel"] for c in content.get("channels", [])]
        wanted = list(dict.fromkeys(body.get("template_ids") or templates))
        for name in wanted:
            if name not in templates:
                raise ValidationError.for_field(
                    "template_ids", name, f"is not a template of this broadcast (its templates: {', '.join(templates)})"
                )
        contact = self._test_contact(org_id, body)
        results: list[dict[str, Any]] = []
        for channel in wanted:
            to = address(contact, channel)
            if not to:
                results.append({"channel": channel, "status": "SKIPPED", "reason": "no_address"})
                continue
            assert self._send_test is not None
            variables = body.get("variables") or {}
            results.append(self._send_test(org_id, broadcast_id, summary["type"], channel, contact, to, variables))
        return results

    def _test_contact(self, org_id: str, body: dict[str, Any]) -> Contact:
        from audience.contacts.normalize import normalize_email, normalize_phone

        identities: list[Identity] = []
        channels: list[dict[str, str]] = []
        phone = email = None
        if body.get("contact_channel_id"):
            channel, _, user_id = str(body["contact_channel_id"]).partition(":")
            if channel not in models.CHANNELS or not user_id:
                raise ValidationError.for_field(
                    "contact_channel_id", body["contact_channel_id"], "must be <channel>:<user id>, like telegram:12345"
                )
            identities.append(Identity(channel, user_id))
            channels.append({"channel": channel, "user_id": user_id})
        if body.get("phone"):
            phone = normalize_phone(str(body["phone"]), self._contacts.org_context(org_id)[1]).e164
            identities.append(Identity("phone", phone))
        if body.get("email"):
            email = normalize_email(str(body["email"]))
            identities.append(Identity("email", email))
        if not identities:
            raise ValidationError.for_field("phone", None, "give a phone, an email or a contact_channel_id to send to")
        owners = self._contacts_repository.owners(org_id, identities)
        for identity in identities:
            if identity in owners:
                with contextlib.suppress(NotFoundError):
                    return self._contacts_repository.get(org_id, owners[identity])
        name = str(body.get("name") or "") or None
        return Contact(
            id="",
            org_id=org_id,
            first_name=name.split()[0] if name else None,
            full_name=name,
            phone=phone,
            email=email,
            channels=channels,
        )

    # -- one-click unsubscribe ------------------------------------------------------------------------

    def import_property_values(
        self, org_id: str, broadcast_id: str, content: bytes, *, file_name: str, key: str, dry_run: bool
    ) -> dict[str, Any]:
        """Per-recipient property values from a file (values.py): the report; unless `dry_run`, the values
        replace the broadcast's earlier upload."""
        summary = self._repo.summary(org_id, broadcast_id)
        if summary["type"] != "marketing":
            raise ValidationError.for_field(
                "broadcast",
                broadcast_id,
                "property values are uploaded to marketing broadcasts (a transactional send gives its own `variables`)",
            )
        if summary["status"] not in VALUES_STATUSES:
            raise ConflictError(f"the broadcast is {summary['status']}: property values cannot change now")
        properties = [p["name"] for p in self._repo.content(org_id, broadcast_id).get("properties", [])]
        values, report = read_values(
            content,
            file_name,
            key,
            properties,
            self._contacts.org_context(org_id)[1],
            lambda identities: self._contacts_repository.owners(org_id, identities),
        )
        answer = {"dry_run": dry_run, **report.as_dict()}
        if dry_run:
            return answer
        version = ids.ulid()
        self._repo.put_property_values(org_id, broadcast_id, version, values, int(time.time()) + VALUES_SECONDS)
        uploaded = {"version": version, "contacts": len(values), "uploaded_at": clock.now_iso()}
        if (
            self._repo.move(org_id, broadcast_id, expected=VALUES_STATUSES, changes={"property_values": uploaded})
            is None
        ):
            raise ConflictError("the broadcast started sending meanwhile: property values cannot change now")
        return answer

    def unsubscribe_link(self, token: str) -> dict[str, Any]:
        """What an unsubscribe link names (NotFoundError for a link that is unknown or expired)."""
        link = self._repo.unsubscribe_link(token, int(time.time()))
        if link is None:
            raise NotFoundError("this unsubscribe link is unknown or has expired")
        return link

    def unsubscribe(self, token: str) -> dict[str, Any]:
        """The one-click POST (RFC 8058): the contact opts out of marketing email. Repeating it is harmless."""
        link = self.unsubscribe_link(token)
        if self._record_consent is not None:
            # A deleted contact raises NotFoundError: nothing is sent to it any more.
            with contextlib.suppress(NotFoundError):
                self._record_consent(
                    link["org_id"],
                    link["contact_id"],
                    channel="email",
                    opted_in=False,
                    source="one_click_unsubscribe",
                    proof=f"List-Unsubscribe-Post from broadcast {link['broadcast_id']}",
                )
        return link

    # -- analytics ------------------------------------------------------------------------------------

    def recipients(
        self, org_id: str, broadcast_id: str, *, status: str | None, cursor: tuple[int, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
        self._repo.summary(org_id, broadcast_id)
        rows, after = self._repo.list_recipients(org_id, broadcast_id, status=status, after=cursor, limit=limit)
        return [_recipient_view(r) for r in rows], after

    def contact_broadcasts(self, org_id: str, contact_id: str) -> list[dict[str, Any]]:
        self._contacts_repository.get(org_id, contact_id)
        rows = self._repo.contact_broadcasts(org_id, contact_id)
        return [_recipient_view(r) for r in rows]


def _rate_limit(value: Any) -> dict[str, int]:
    if value is None:
        return {"limit": DEFAULT_RATE_LIMIT, "period_seconds": DEFAULT_RATE_PERIOD}
    if not isinstance(value, dict) or set(value) - {"limit", "period_seconds"}:
        raise ValidationError.for_field("rate_limit", None, "must be {limit, period_seconds}")
    limit = value.get("limit", DEFAULT_RATE_LIMIT)
    period = value.get("period_seconds", DEFAULT_RATE_PERIOD)
    for name, number, high in (("limit", limit, 100_000), ("period_seconds", period, 86_400)):
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= high:
            raise ValidationError.for_field(f"rate_limit.{name}", number, f"must be a whole number from 1 to {high:,}")
    return {"limit": limit, "period_seconds": period}


def _schedule_time(at: str | None) -> str:
    from datetime import timedelta

    now = clock.now()
    if at is None:
        return clock.iso(now)
    when = clock.parse_zoned(at)
    if when > now + timedelta(days=MAX_SCHEDULE_DAYS):
        raise ValidationError.for_field("at", at, f"must be within {MAX_SCHEDULE_DAYS} days")
    return clock.iso(max(when, now))


def _editable(summary: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": summary["name"],
        "channels": content.get("channels"),
        "properties": content.get("properties", []),
    }
    if summary["type"] == "marketing":
        data["segment_ids"] = summary.get("segment_ids") or []
        data["audience_all"] = bool(summary.get("audience_all"))
        data["quiet_hours"] = content.get("quiet_hours")
    else:
        data["rate_limit"] = summary.get("rate_limit")
        data["destination_rate_limit"] = summary.get("destination_rate_limit")
    return data


def stats(counters: dict[str, int], run: str | None = None) -> dict[str, Any]:
    """Analytics from the counters: every recipient once by where it is now, plus the cumulative view
    (a read message was also delivered and sent); `skipped_by_reason` the skipped recipients by reason;
    `excluded` counts the contacts the latest run left out."""
    total = counters.get("total", 0)
    read = counters.get("read", 0)
    delivered = counters.get("delivered", 0) + read
    sent = counters.get("sent", 0) + delivered

    def pct(n: int) -> float:
        return round(100.0 * n / total, 2) if total else 0.0

    return {
        "total": total,
        "by_status": {
            name: counters.get(name, 0)
            for name in ("pending", "sent", "delivered", "read", "failed", "skipped", "cancelled")
        },
        "sent": sent,
        "delivered": delivered,
        "read": read,
        "failed": counters.get("failed", 0),
        "skipped": counters.get("skipped", 0),
        "skipped_by_reason": {
            k.removeprefix("skipped#"): v for k, v in counters.items() if k.startswith("skipped#") and v
        },
        "cancelled": counters.get("cancelled", 0),
        "possible_duplicates": counters.get("possible_duplicates", 0),
        "sent_pct": pct(sent),
        "delivered_pct": pct(delivered),
        "read_pct": pct(read),
        "failed_pct": pct(counters.get("failed", 0)),
        "by_channel": {k.removeprefix("total_"): v for k, v in counters.items() if k.startswith("total_") and v},
        "excluded": {
            k.removeprefix(f"excluded#{run}#"): v for k, v in counters.items() if k.startswith(f"excluded#{run}#") and v
        },
    }


def _view(summary: dict[str, Any], content: dict[str, Any] | None, counters: dict[str, int] | None) -> dict[str, Any]:
    view = {k: v for k, v in summary.items() if k not in ("org_id",)}
    if content is not None and summary.get("type") == "transactional" and view.get("destination_rate_limit") is None:
        # Written before the limit existed. Only a full read (with content) has the field; the list's index
        # does not hold it, so a list leaves it out rather than show the default for a custom limit.
        view["destination_rate_limit"] = DestinationLimit().as_dict()
    if content is not None:
        view["channels"] = content.get("channels")
        view["properties"] = content.get("properties", [])
        view["quiet_hours"] = content.get("quiet_hours")
    if counters is not None:
        view["stats"] = stats(counters, summary.get("run"))
    return view


def _recipient_view(row: dict[str, Any]) -> dict[str, Any]:
    fields = (
        "broadcast_id",
        "contact_id",
        "channel",
        "status",
        "provider_message_id",
        "error_code",
        "error_title",
        "reason",
        "planned_at",
        "sending_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "skipped_at",
        "cancelled_at",
        "attempts",
        "possible_duplicate",
    )
    view = {k: row.get(k) for k in fields if row.get(k) is not None}
    view["id"] = row["sk"]
    return view
