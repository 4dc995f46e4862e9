"""Plans a marketing broadcast's run (the tasks of BroadcastStateMachine) and ends it when nothing is left.

A run is one schedule of the broadcast (`run` on its summary): the state machine waits until the scheduled
time, `start` moves the broadcast SCHEDULED → SENDING (only if that run is still the current one), and
`plan` walks the audience (every contact, or the members of each segment) shard by shard, a page of 100
contacts at a time. Each page becomes a batch:

- the contacts are read and checked (blocked, unsubscribed, on the do-not-contact list for the channel and
  sender, opted out, or without an address on the channel: excluded, counted per reason);
- a recipient row is written per eligible contact and channel by a conditional write, so a contact in two
  segments gets one row, and a contact already sent to in an earlier run of the same broadcast none;
- the batch is recorded as planned with its counts (one transaction, once), then sent to SendQueue.

The page being planned is saved before its rows are written, so a retried task plans the same page as the
same batch. The cursor is saved after every page; a task stops before its time is up and the state machine
calls it again, so a run takes a handful of transitions whatever the audience size.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger

from audience import aws, clock
from audience.broadcasts import keys
from audience.broadcasts.delivery import Delivery, address, sender_of
from audience.broadcasts.repository import BroadcastsRepository
from audience.compliance.eligibility import EligibilityService
from audience.contacts.repository import ContactsRepository
from audience.errors import NotFoundError, ValidationError
from audience.segments.repository import SegmentsRepository

logger = Logger(child=True)

PAGE = 100


def finish_if_done(repo: BroadcastsRepository, segments: SegmentsRepository, org_id: str, broadcast_id: str) -> bool:
    """SENDING → SENT once the run is planned and every recipient has an outcome (no `pending` left).
    Called after each tally and when planning ends: whichever comes last sees both."""
    summary = repo.summary(org_id, broadcast_id)
    if summary["status"] != "SENDING":
        return False
    run = summary.get("run", "")
    if not repo.plan_cursor(org_id, broadcast_id, run).get("done"):
        return False
    if repo.counters(org_id, broadcast_id).get("pending", 0) > 0:
        return False
    moved = repo.move(
        org_id, broadcast_id, expected=["SENDING"], changes={"status": "SENT", "finished_at": clock.now_iso()}, run=run
    )
    if moved is not None:
        release_segments(segments, org_id, broadcast_id, summary)
    return moved is not None


def release_segments(segments: SegmentsRepository, org_id: str, broadcast_id: str, summary: dict[str, Any]) -> None:
    for segment_id in summary.get("segment_ids") or []:
        segments.unlock(org_id, segment_id, broadcast_id)


class Planner:
    def __init__(
        self,
        repo: BroadcastsRepository,
        contacts: ContactsRepository,
        segments: SegmentsRepository,
        eligibility: EligibilityService,
        delivery: Delivery,
        *,
        send_queue_url: str,
    ) -> None:
        self._repo = repo
        self._contacts = contacts
        self._segments = segments
        self._eligibility = eligibility
        self._delivery = delivery
        self._queue_url = send_queue_url

    def start(self, org_id: str, broadcast_id: str, run: str) -> dict[str, Any]:
        """SCHEDULED → SENDING for this run; {"go": False} when the run was cancelled or replaced."""
        moved = self._repo.move(
            org_id,
            broadcast_id,
            expected=["SCHEDULED"],
            changes={"status": "SENDING", "sending_started_at": clock.now_iso()},
            run=run,
        )
        if moved is None:
            logger.info("run no longer current", extra={"broadcast_id": broadcast_id, "run": run})
        return {"go": moved is not None}

    def fail(self, org_id: str, broadcast_id: str, run: str, error: Any) -> dict[str, Any]:
        """A task failed after its retries: SCHEDULED or SENDING → FAILED, with the error."""
        cause = error.get("Cause") if isinstance(error, dict) else str(error)
        summary = self._repo.move(
            org_id,
            broadcast_id,
            expected=["SCHEDULED", "SENDING"],
            changes={
                "status": "FAILED",
                "error": str(cause or "the run failed")[:1000],
                "finished_at": clock.now_iso(),
            },
            run=run,
        )
        if summary is not None:
            release_segments(self._segments, org_id, broadcast_id, summary)
        return {"failed": summary is not None}

    def plan(self, org_id: str, broadcast_id: str, run: str, *, deadline: float) -> dict[str, Any]:
        """Plan pages until the audience is done or `deadline` (epoch seconds) is near: {"done": bool}."""
        try:
            summary = self._repo.summary(org_id, broadcast_id)
        except NotFoundError:
            return {"done": True}
        if summary["status"] != "SENDING" or summary.get("run") != run:
            return {"done": True}  # cancelled (senders cancel what was planned) or replaced
        content = self._repo.content(org_id, broadcast_id)
        channels = [(c["channel"], c["connection_id"]) for c in content.get("channels", [])]
        sources = _sources(summary)
        values = (summary.get("property_values") or {}).get("version")
        cursor = self._repo.plan_cursor(org_id, broadcast_id, run) or {"source": 0, "shard": 0, "n": 0}
        pages = 0
        while not cursor.get("done"):
            if time.time() >= deadline:
                return {"done": False}
            if pages and pages % 20 == 0 and self._repo.summary(org_id, broadcast_id)["status"] != "SENDING":
                return {"done": True}
            if cursor["source"] >= len(sources):
                cursor["done"] = True
                self._repo.save_plan_cursor(org_id, broadcast_id, run, cursor)
                break
            page = cursor.get("page")
            if page is None:
                facet = sources[cursor["source"]]
                entries, more = self._contacts.shard_entries(
                    org_id, facet, cursor["shard"], after=cursor.get("after"), limit=PAGE
                )
                page = {"batch": f"{run}.{cursor['n']}", "ids": [cid for _, cid in entries]}
                if more:
                    page["next"] = {"after": entries[-1][0]}
                cursor["page"] = page
                self._repo.save_plan_cursor(org_id, broadcast_id, run, cursor)
            self._plan_page(org_id, broadcast_id, run, page, channels, values)
            cursor = _advance(cursor, page)
            self._repo.save_plan_cursor(org_id, broadcast_id, run, cursor)
            pages += 1
        finish_if_done(self._repo, self._segments, org_id, broadcast_id)
        return {"done": True}

    def _plan_page(
        self,
        org_id: str,
        broadcast_id: str,
        run: str,
        page: dict[str, Any],
        channels: list[tuple[str, str]],
        values: str | None,
    ) -> None:
        batch = page["batch"]
        message = self._repo.planned(org_id, broadcast_id, batch)
        if message is None:
            message, deltas = self._claim(org_id, broadcast_id, run, batch, page["ids"], channels, values)
            if not self._repo.mark_planned(org_id, broadcast_id, batch, deltas, message):
                message = self._repo.planned(org_id, broadcast_id, batch)
        if message and message["recipients"]:
            # Sent again when a retried task finds the batch planned: the sender tallies a batch once.
            aws.client("sqs").send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))

    def _claim(
        self,
        org_id: str,
        broadcast_id: str,
        run: str,
        batch: str,
        ids: list[str],
        channels: list[tuple[str, str]],
        values: str | None,
    ) -> tuple[dict[str, Any], dict[str, int]]:
        contacts = self._contacts.get_many(org_id, ids)
        # The uploaded per-recipient property values of these contacts (values.py), when there are any.
        properties = self._repo.property_values(org_id, broadcast_id, values, ids) if values else {}
        now = clock.now_iso()
        deltas: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        senders: dict[str, str | None] = {}
        for _, connection_id in channels:
            if connection_id not in senders:
                try:
                    senders[connection_id] = sender_of(self._delivery.connection(org_id, connection_id))
                except (NotFoundError, ValidationError):
                    senders[connection_id] = None
        for contact_id in ids:
            contact = contacts.get(contact_id)
            if contact is None:
                continue  # deleted since it was listed
            for channel, connection_id in channels:
                decision = self._eligibility.decide(
                    contact, self._eligibility.request(channel, "marketing", senders[connection_id])
                )
                if not decision.allowed:
                    name = f"excluded#{run}#{decision.reason}"  # per run: a run counts its own exclusions
                    deltas[name] = deltas.get(name, 0) + 1
                    continue
                shard = keys.shard_of(contact_id)
                rows.append(
                    {
                        "pk": keys.recipient_pk(org_id, broadcast_id, shard),
                        "sk": keys.recipient_sk(contact_id, channel),
                        "broadcast_id": broadcast_id,
                        "contact_id": contact_id,
                        "channel": channel,
                        "to": address(contact, channel),
                        **({"properties": properties.get(contact_id, {})} if values else {}),
                        "planned_at": now,
                        "gsi2pk": keys.contact_partition(org_id, contact_id),
                        "gsi2sk": f"{now}#{broadcast_id}#{contact_id}#{channel}",
                    }
                )
        claimed = self._repo.claim_rows(rows, run=run, batch=batch)
        for row in claimed:
            deltas["pending"] = deltas.get("pending", 0) + 1
            if row["planned_from"] == "CANCELLED":
                deltas["cancelled"] = deltas.get("cancelled", 0) - 1
            else:
                deltas["total"] = deltas.get("total", 0) + 1
                name = f"total_{row['channel']}"
                deltas[name] = deltas.get(name, 0) + 1
        message = {
            "org_id": org_id,
            "broadcast_id": broadcast_id,
            "batch": batch,
            "recipients": [[int(row["pk"].rsplit("#", 1)[1]), row["sk"]] for row in claimed],
        }
        return message, deltas


def _sources(summary: dict[str, Any]) -> list[tuple[str, str]]:
    segment_ids = summary.get("segment_ids") or []
    if segment_ids:
        return [("segment", segment_id) for segment_id in segment_ids]
    return [("all", "")]


def _advance(cursor: dict[str, Any], page: dict[str, Any]) -> dict[str, Any]:
    following = dict(cursor)
    following.pop("page", None)
    following["n"] = cursor["n"] + 1
    if "next" in page:
        following["after"] = page["next"]["after"]
        return following
    following.pop("after", None)
    if cursor["shard"] + 1 < keys.SHARDS:
        following["shard"] = cursor["shard"] + 1
    else:
        following["shard"] = 0
        following["source"] = cursor["source"] + 1
    return following
