"""Event history as rules read it: per-name counts by UTC day, plus an all-time count per name.

A contact's events are kept as buckets rather than replayed: `ALL` holds every event of a name, and one
bucket per UTC day holds that day's. A clause that looks back a few days reads a few day buckets, and one
that looks at all time (or at everything before a day) reads `ALL` minus the recent days, so no clause
ever needs the contact's whole history. Each bucket also counts events per distinct set of properties,
so that clauses with property conditions are answered from the same buckets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

ALL = "ALL"  # bucket key of the all-time aggregate ("ALL" sorts after every "YYYY-MM-DD" key)
ANY = "*"  # event name that counts every event, whatever its name

Properties = Mapping[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event; `at` is aware (any zone), `properties` hold scalar values only."""

    name: str
    at: datetime
    properties: Properties


@dataclass(slots=True)
class Bucket:
    """The events of one name on one UTC day (or of all time): how many, and how many per set of
    properties (keyed by `canonical_props`)."""

    n: int = 0
    props: dict[str, int] = field(default_factory=dict)


def canonical_props(properties: Properties) -> str:
    """One key per distinct set of properties, whatever order they came in."""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def bucket_keys(event: Event) -> list[tuple[str, str]]:
    """The (name, key) buckets an event counts in: its name and `ANY`, each for all time and its UTC day."""
    day = event.at.astimezone(UTC).date().isoformat()
    return [(event.name, ALL), (event.name, day), (ANY, ALL), (ANY, day)]


def aggregate(events: Iterable[Event]) -> dict[str, dict[str, Bucket]]:
    """Buckets (name -> ALL or day -> Bucket) for a list of events. `ANY` buckets count events only:
    property conditions cannot be used with `*`, so their per-properties counts would never be read."""
    buckets: dict[str, dict[str, Bucket]] = {}
    for event in events:
        props = canonical_props(event.properties)
        for name, key in bucket_keys(event):
            bucket = buckets.setdefault(name, {}).get(key)
            if bucket is None:
                bucket = buckets[name][key] = Bucket()
            bucket.n += 1
            if name != ANY:
                bucket.props[props] = bucket.props.get(props, 0) + 1
    return buckets


class BucketHistory:
    """Counts events from buckets; implements the rules' EventHistory.

    The buckets may be a subset of a contact's history: `ALL` plus the day buckets from some day on is
    enough for every window that `rules.event_ranges` asked for (a missing day bucket counts as zero).
    """

    __slots__ = ("_buckets", "_parsed")

    def __init__(self, buckets: Mapping[str, Mapping[str, Bucket]]) -> None:
        self._buckets = buckets
        # Each distinct set of properties is parsed once, however many buckets and clauses read it.
        self._parsed: dict[str, dict[str, Any]] = {}

    def count(
        self,
        name: str,
        first: date | None,
        last: date | None,
        where: Callable[[Mapping[str, Any]], bool] | None,
    ) -> int:
        """Events named `name` whose UTC day D is within first <= D <= last (None: unbounded) and whose
        properties satisfy `where` (None: every event)."""
        by_key = self._buckets.get(name)
        if not by_key:
            return 0
        if first is None:
            total = self._size(by_key.get(ALL), where)
            if last is not None:
                # Unbounded below: all time minus the days after `last`, which are the recent ones.
                after = last.isoformat()
                total -= sum(self._size(b, where) for key, b in by_key.items() if key != ALL and key > after)
            return total
        low, high = first.isoformat(), last.isoformat() if last is not None else None
        return sum(
            self._size(bucket, where)
            for key, bucket in by_key.items()
            if key != ALL and low <= key and (high is None or key <= high)
        )

    def _size(self, bucket: Bucket | None, where: Callable[[Mapping[str, Any]], bool] | None) -> int:
        if bucket is None:
            return 0
        if where is None:
            return bucket.n
        parsed = self._parsed
        total = 0
        for props, n in bucket.props.items():
            properties = parsed.get(props)
            if properties is None:
                properties = parsed[props] = json.loads(props)
            if where(properties):
                total += n
        return total
