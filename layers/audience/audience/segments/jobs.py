"""Segment jobs: long membership passes split into parts that Step Functions runs in parallel.

A job is one of:
- `build`: evaluate every contact of an org against one dynamic segment (after a create or a rule change);
- `copy`: add every member of a segment to a static segment (duplicate);
- `purge`: remove every member of a deleted segment, then the segment itself;
- `refresh`: one pass over the whole table re-evaluating every contact against its org's dynamic
  segments (the daily refresh of rules that depend on today; it also heals anything missed);
- `tag`: add or remove a tag on every member of a segment, or rename or delete a tag on every contact
  that has it (audience/tags/service.py says what a batch of contacts gets).

Parts are the sixteen contact shards (or parallel-scan segments for `refresh`). A part runs until done or
until its time budget is spent, and returns a cursor the state machine passes back (statemachines/
segment_jobs.asl.yaml). Every step is idempotent, so a retried or repeated part changes nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from audience import aws, clock
from audience.contacts import keys
from audience.contacts.repository import ContactsRepository, decode_cursor, encode_cursor
from audience.errors import ConfigurationError, NotFoundError
from audience.segments.evaluation import RuleBook, SegmentEvaluator, StaleRulesError, Tally
from audience.segments.models import BUILDING, BY_CLIENT, DELETING, READY, MembershipChange
from audience.segments.repository import Guard, SegmentsRepository, state_from_items

BUILD, COPY, PURGE, REFRESH, TAG = "build", "copy", "purge", "refresh", "tag"
KINDS = (BUILD, COPY, PURGE, REFRESH, TAG)
PAGE = 100


def job_parts(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The state machine's input for `job`: one item per part."""
    count = int(job.get("parts", keys.SHARDS))
    return [{"job": job, "part": part, "cursor": None} for part in range(count)]


def execution_name(job: dict[str, Any]) -> str:
    """A name unique to the job's intent, so a repeated start never runs it twice."""
    kind = job["kind"]
    if kind == REFRESH:
        return f"refresh-{job.get('day') or clock.now_iso()[:10]}"
    if kind == TAG:  # tag names may hold any character; the job id is unique to the request
        return f"tag-{job['op']}-{job['job_id']}"
    name = f"{kind}-{job['segment_id']}-v{job.get('version', 0)}"
    if kind == COPY:
        name = f"copy-{job['source_id']}-{job['segment_id']}"
    return name[:80]


class JobStarter:
    """Starts jobs on the segment jobs state machine."""

    def __init__(self, state_machine_arn: str) -> None:
        self._arn = state_machine_arn

    def start(self, job: dict[str, Any]) -> None:
        client = aws.client("stepfunctions")
        # The same job already running or run: starting it again must not repeat it.
        with contextlib.suppress(client.exceptions.ExecutionAlreadyExists):
            client.start_execution(stateMachineArn=self._arn, name=execution_name(job), input=json.dumps({"job": job}))


class TagJobs(Protocol):
    """What runs `tag` jobs (audience.tags.service.TagService)."""

    def job_step(self, job: dict[str, Any]) -> Callable[[list[str]], Tally] | None: ...

    def finish_job(self, job: dict[str, Any]) -> None: ...


class JobRunner:
    """Runs one part of a job for at most `budget` seconds."""

    def __init__(
        self,
        contacts: ContactsRepository,
        segments: SegmentsRepository,
        tags: Callable[[], TagJobs] | None = None,
    ) -> None:
        self._contacts = contacts
        self._segments = segments
        self._evaluator = SegmentEvaluator(segments)
        self._tags = tags

    def run(self, job: dict[str, Any], part: int, cursor: str | None, *, budget: float) -> dict[str, Any]:
        deadline = time.monotonic() + budget
        kind = job.get("kind")
        if kind == REFRESH:
            cursor, tally = self._refresh(part, int(job.get("parts", keys.SHARDS)), cursor, deadline)
        elif kind in (BUILD, COPY, PURGE, TAG):
            cursor, tally = self._shard_pass(job, part, cursor, deadline)
        else:
            raise ValueError(f"unknown segment job kind {kind!r}; expected one of {', '.join(KINDS)}")
        return {"job": job, "part": part, "cursor": cursor, "done": cursor is None, "tally": tally.as_dict()}

    def complete(self, job: dict[str, Any]) -> dict[str, Any]:
        """Finish a job once every part is done."""
        kind = job["kind"]
        if kind == BUILD:
            self._segments.set_state(job["org_id"], job["segment_id"], READY, version=job["version"])
        elif kind == COPY:
            self._segments.set_state(job["org_id"], job["segment_id"], READY)
        elif kind == PURGE:
            self._segments.drop_counter(job["org_id"], job["segment_id"])
            self._segments.delete_segment_item(job["org_id"], job["segment_id"])
        elif kind == TAG:
            self._tag_jobs().finish_job(job)
        return {"job": job, "completed": True}

    # -- build, copy, purge: one contact shard of an org ---------------------------------------------

    def _shard_pass(
        self, job: dict[str, Any], shard: int, cursor: str | None, deadline: float
    ) -> tuple[str | None, Tally]:
        org_id, segment_id = job["org_id"], job.get("segment_id")
        kind = job["kind"]
        facet = ("all", "") if kind == BUILD else ("segment", job["source_id"] if kind == COPY else segment_id)
        if kind == TAG:  # a segment's members, or the contacts that have the tag
            facet = ("segment", segment_id) if job["source"] == "segment" else ("tag", job["tag"])
        steps = {BUILD: self._build_step, COPY: self._copy_step, PURGE: self._purge_step, TAG: self._tag_step}
        step = steps[kind](job)
        if step is None:
            return None, Tally()  # the segment is gone or superseded: nothing left to do
        tally = Tally()
        after = decode_cursor(cursor)
        while time.monotonic() < deadline:
            entries, more = self._contacts.shard_entries(org_id, facet, shard, after=after, limit=PAGE)
            if entries:
                tally.merge(step([cid for _, cid in entries]))
                after = entries[-1][0]
            if not more:
                return None, tally
        return encode_cursor(after) if after else None, tally

    def _build_step(self, job: dict[str, Any]) -> Callable[[list[str]], Tally] | None:
        org_id = job["org_id"]
        state: dict[str, RuleBook] = {}

        def load() -> RuleBook | None:
            try:
                segment = self._segments.get_segment(org_id, job["segment_id"])
            except NotFoundError:
                return None
            if segment.version != job["version"] or segment.state not in (BUILDING, READY):
                return None  # a newer rule change started its own build
            return RuleBook.of([segment], clock.now())

        book = load()
        if book is None:
            return None
        state["book"] = book

        def step(contact_ids: list[str]) -> Tally:
            tally = Tally()
            for contact_id in contact_ids:
                try:
                    tally.merge(self._evaluator.evaluate(org_id, contact_id, state["book"]))
                except StaleRulesError:
                    fresh = load()
                    if fresh is None:
                        return tally
                    state["book"] = fresh
            return tally

        return step

    def _copy_step(self, job: dict[str, Any]) -> Callable[[list[str]], Tally] | None:
        org_id, target = job["org_id"], job["segment_id"]

        def step(contact_ids: list[str]) -> Tally:
            tally = Tally()
            contacts = self._contacts.get_many(org_id, contact_ids)
            for contact in contacts.values():
                change = MembershipChange(target, contact.id, contact.created_at, True, BY_CLIENT)
                if self._segments.write_membership(org_id, change, Guard(), static=True) == "written":
                    tally.added += 1
            return tally

        return step

    def _purge_step(self, job: dict[str, Any]) -> Callable[[list[str]], Tally] | None:
        org_id, segment_id = job["org_id"], job["segment_id"]

        def step(contact_ids: list[str]) -> Tally:
            tally = Tally()
            for contact_id in contact_ids:
                change = MembershipChange(segment_id, contact_id, "", False, BY_CLIENT)
                if self._segments.write_membership(org_id, change, Guard()) == "written":
                    tally.removed += 1
            return tally

        return step

    def _tag_step(self, job: dict[str, Any]) -> Callable[[list[str]], Tally] | None:
        return self._tag_jobs().job_step(job)

    def _tag_jobs(self) -> TagJobs:
        if self._tags is None:
            raise ConfigurationError("this job runner was built without tags; it cannot run tag jobs")
        return self._tags()

    # -- refresh: one parallel-scan segment of the table ---------------------------------------------

    def _refresh(self, part: int, parts: int, cursor: str | None, deadline: float) -> tuple[str | None, Tally]:
        now = clock.now()
        books: dict[str, RuleBook] = {}
        tally = Tally()
        start = json.loads(cursor) if cursor else None
        resume: dict[str, Any] | None = start
        for partitions, resume in self._segments.scan_partitions(part, parts, start=start):
            for contact_item, items in partitions:
                org_id = contact_item["org_id"]
                book = books.get(org_id)
                if book is None:
                    book = books[org_id] = self._book(org_id, now)
                state = state_from_items(contact_item, items)
                try:
                    tally.merge(self._evaluator.apply(org_id, state, book))
                except StaleRulesError:
                    books[org_id] = self._book(org_id, now)
                    tally.merge(self._evaluator.evaluate(org_id, state.contact.id, books[org_id]))
            if resume is None:
                return None, tally
            if time.monotonic() >= deadline:
                return json.dumps(resume), tally
        return None, tally

    def _book(self, org_id: str, now: Any) -> RuleBook:
        segments = [s for s in self._segments.list_segments(org_id) if s.state != DELETING]
        return RuleBook.of(segments, now)
