"""Keeping dynamic segment membership current: evaluate a contact and write only what changed.

A decision is written against what it was based on (the contact's version, its event sequence and the
segment's version; see segments/repository.py), so evaluations that race (a stream record, a build
job, the daily refresh) can never leave a membership that contradicts the latest data: a stale one
writes nothing, and the change that made it stale is evaluated on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from audience.segments.history import BucketHistory, Event, aggregate
from audience.segments.models import BY_RULES, READY, MembershipChange, Segment
from audience.segments.repository import (
    STALE_SEGMENT,
    WRITTEN,
    ContactState,
    Guard,
    SegmentsRepository,
)
from audience.segments.rules import (
    QUALITY_ATTRIBUTES,
    Predicate,
    RuleSet,
    Subject,
    attribute_names,
    compile_rules,
    event_ranges,
    load_rules,
)


class ContactHistory:
    """The event history rules read: stored counts when a clause has no property conditions, and the
    contact's stored events (aggregated once, on first use) when it has."""

    __slots__ = ("_counts", "_detailed", "_events")

    def __init__(self, counts: Mapping[str, Any], events: list[Event]) -> None:
        self._counts = BucketHistory(counts)
        self._events = events
        self._detailed: BucketHistory | None = None

    def count(self, name: str, first: date | None, last: date | None, where: Any) -> int:
        if where is None:
            return self._counts.count(name, first, last, None)
        if self._detailed is None:
            self._detailed = BucketHistory(aggregate(self._events))
        return self._detailed.count(name, first, last, where)


def subject_of(state: ContactState) -> Subject:
    return Subject(state.contact, ContactHistory(state.counts, state.events))


def detailed_names(tree: Mapping[str, Any]) -> set[str]:
    """Event names used by clauses with property conditions (they need the events themselves)."""
    names: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if "rules" in node:
            stack.extend(node["rules"])
        elif node.get("event") and node.get("where"):
            names.add(node["event"])
    return names


@dataclass(slots=True)
class CompiledSegment:
    segment: Segment
    rules: RuleSet
    predicate: Predicate
    ranges: dict[str, date | None]
    detailed: set[str]


@dataclass(slots=True)
class Tally:
    """What an evaluation pass did, for logs, metrics and job results."""

    evaluated: int = 0
    added: int = 0
    removed: int = 0
    stale: int = 0
    missing: int = 0
    skipped: int = 0  # fact-only changes no segment reads (SegmentFunction)

    def merge(self, other: Tally) -> None:
        for name in ("evaluated", "added", "removed", "stale", "missing", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in ("evaluated", "added", "removed", "stale", "missing")}


@dataclass(slots=True)
class RuleBook:
    """An org's dynamic segments compiled for one moment."""

    segments: list[CompiledSegment] = field(default_factory=list)

    @classmethod
    def of(cls, segments: Iterable[Segment], now: datetime) -> RuleBook:
        compiled = []
        for segment in segments:
            if not segment.dynamic or segment.rules is None or segment.state not in (READY, "building"):
                continue
            rules = load_rules(segment.rules)
            ranges = event_ranges(rules, now=now)
            compiled.append(
                CompiledSegment(
                    segment,
                    rules,
                    compile_rules(rules, now=now, timezone=segment.timezone),
                    {name: first for name, (first, _last) in ranges.items()},
                    detailed_names(segment.rules),
                )
            )
        return cls(compiled)

    def count_ranges(self) -> dict[str, date | None]:
        """Per event name, the earliest day bucket any segment needs (None: the all-time count only)."""
        merged: dict[str, date | None] = {}
        for compiled in self.segments:
            for name, first in compiled.ranges.items():
                if name not in merged:
                    merged[name] = first
                elif first is not None:
                    current = merged[name]
                    merged[name] = first if current is None else min(current, first)
        return merged

    def detailed(self) -> set[str]:
        return set().union(*(c.detailed for c in self.segments)) if self.segments else set()

    def reads_quality(self) -> bool:
        """Whether any segment reads an attribute that reachability or engagement facts change."""
        return any(attribute_names(c.rules.tree) & QUALITY_ATTRIBUTES for c in self.segments)


class StaleRulesError(Exception):
    """A segment changed since its rules were read: read them again and evaluate again."""


class SegmentEvaluator:
    """Evaluates contacts against an org's dynamic segments and writes the membership changes."""

    def __init__(self, repository: SegmentsRepository) -> None:
        self._repository = repository

    def evaluate(self, org_id: str, contact_id: str, book: RuleBook) -> Tally:
        """Read the contact as the rules need it (strongly consistent), then apply the changes."""
        tally = Tally()
        if not book.segments:
            return tally
        state = self._repository.load_state(
            org_id, contact_id, count_ranges=book.count_ranges(), detailed=book.detailed()
        )
        if state is None:
            tally.missing += 1
            return tally
        return self.apply(org_id, state, book)

    def apply(self, org_id: str, state: ContactState, book: RuleBook) -> Tally:
        """Write the membership changes `book` decides for `state`. Raises StaleRulesError when a
        segment changed since `book` was compiled (after writing the decisions that were current)."""
        tally = Tally(evaluated=1)
        subject = subject_of(state)
        contact = state.contact
        guard_base = Guard(contact_version=contact.version, events_seen=state.events_seen)
        stale_rules = False
        for compiled in book.segments:
            segment = compiled.segment
            wanted = compiled.predicate(subject)
            present = state.memberships.get(segment.id) == BY_RULES
            if wanted == present:
                continue
            change = MembershipChange(segment.id, contact.id, contact.created_at, wanted, BY_RULES)
            guard = Guard(guard_base.contact_version, guard_base.events_seen, segment.version)
            result = self._repository.write_membership(org_id, change, guard)
            if result == WRITTEN:
                if wanted:
                    tally.added += 1
                else:
                    tally.removed += 1
            elif result == STALE_SEGMENT:
                stale_rules = True
            elif result != "unchanged":
                tally.stale += 1
                break  # the contact changed: its own change is evaluated next
        if stale_rules:
            raise StaleRulesError(f"a segment of org {org_id} changed during evaluation")
        return tally


def partitions_by_org(
    partitions: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    for contact_item, items in partitions:
        yield contact_item["org_id"], contact_item, items
