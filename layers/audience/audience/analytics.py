"""Org-level analytics, all from counters the writes keep (no scans): contacts by status and channel, contact
growth by month, broadcast recipients over time, and the largest segments.

- Contacts: the contacts table's sharded counter items (`total`, `s#{status}`, `c#{channel}`, `g#{segment}`,
  and `m#{YYYY-MM}`, the contacts created that month that still exist: a deleted contact leaves the month
  it was created in, so the months always add up to the total).
- Broadcast recipients: the broadcasts table's activity items, one per org, day and shard, moved by the
  same transaction that tallies a batch of recipients (by outcome, skipped ones also by reason, by type of
  broadcast, and messages sent by channel). Delivered and read are per broadcast (its stats); a day's
  figures are the recipients whose send ended that day (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from audience import clock
from audience.broadcasts.repository import BroadcastsRepository
from audience.contacts import keys
from audience.contacts.models import CHANNELS, STATUSES
from audience.contacts.repository import ContactsRepository
from audience.errors import ValidationError
from audience.segments.models import DELETING
from audience.segments.repository import SegmentsRepository

INTERVALS = ("day", "month")
DEFAULT_DAYS = 30
MAX_DAYS = 731  # two years of days; months cover the same span
TOP_SEGMENTS = 10
OUTCOMES = ("sent", "failed", "skipped", "cancelled")


@dataclass(frozen=True, slots=True)
class Period:
    first: date
    last: date
    interval: str

    @classmethod
    def parse(cls, first: str | None, last: str | None, interval: str) -> Period:
        if interval not in INTERVALS:
            raise ValidationError.for_field("interval", interval, f"must be one of {', '.join(INTERVALS)}")
        end = _day("to", last) if last else clock.now().date()
        start = _day("from", first) if first else end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise ValidationError.for_field("from", first, "must not be after `to`")
        if (end - start).days >= MAX_DAYS:
            raise ValidationError.for_field("from", first, f"the range may cover at most {MAX_DAYS} days")
        return cls(start, end, interval)

    def label(self, day: date) -> str:
        return day.isoformat()[:7] if self.interval == "month" else day.isoformat()

    def labels(self) -> list[str]:
        found: dict[str, None] = {}
        day = self.first
        while day <= self.last:
            found[self.label(day)] = None
            day += timedelta(days=1)
        return list(found)


def _day(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError.for_field(name, value, "must be a date, YYYY-MM-DD") from None


class AnalyticsService:
    def __init__(
        self, contacts: ContactsRepository, broadcasts: BroadcastsRepository, segments: SegmentsRepository
    ) -> None:
        self._contacts = contacts
        self._broadcasts = broadcasts
        self._segments = segments

    def overview(self, org_id: str, period: Period) -> dict[str, Any]:
        counters = self._contacts.counters(org_id)
        return {
            "from": period.first.isoformat(),
            "to": period.last.isoformat(),
            "interval": period.interval,
            "contacts": {
                "total": counters.get("total", 0),
                "by_status": {s.lower(): counters.get(f"s#{s}", 0) for s in STATUSES},
                "by_channel": {c: counters.get(f"c#{c}", 0) for c in CHANNELS},
            },
            "contact_growth": _growth(counters, period),
            "broadcast_recipients": self._recipients(org_id, period),
            "top_segments": self._top_segments(org_id, counters),
        }

    def _recipients(self, org_id: str, period: Period) -> list[dict[str, Any]]:
        days = self._broadcasts.activity(org_id, period.first.isoformat(), period.last.isoformat())
        rows = {label: _empty_row(label) for label in period.labels()}
        for day, counts in days.items():
            row = rows.get(period.label(date.fromisoformat(day)))
            if row is None:
                continue
            for name, value in counts.items():
                if name.startswith("ch#"):
                    channel = name[3:]
                    row["sent_by_channel"][channel] = row["sent_by_channel"].get(channel, 0) + value
                elif name.startswith("skipped#"):
                    reason = name.removeprefix("skipped#")
                    row["skipped_by_reason"][reason] = row["skipped_by_reason"].get(reason, 0) + value
                elif name in row:
                    row[name] += value
        for row in rows.values():
            row["recipients"] = sum(row[o] for o in OUTCOMES)
        return list(rows.values())

    def _top_segments(self, org_id: str, counters: dict[str, int]) -> list[dict[str, Any]]:
        segments = [s for s in self._segments.list_segments(org_id) if s.state != DELETING]
        sized = [
            {"id": s.id, "name": s.name, "type": s.type, "contacts": counters.get(keys.segment_counter(s.id), 0)}
            for s in segments
        ]
        sized.sort(key=lambda s: (-s["contacts"], s["name"], s["id"]))
        return sized[:TOP_SEGMENTS]


def _empty_row(label: str) -> dict[str, Any]:
    return {
        "period": label,
        "recipients": 0,
        **dict.fromkeys(OUTCOMES, 0),
        "skipped_by_reason": {},
        "marketing": 0,
        "transactional": 0,
        "sent_by_channel": {},
    }


def _growth(counters: dict[str, int], period: Period) -> list[dict[str, Any]]:
    """Per month of the period: contacts created that month (that still exist) and the total at its end."""
    created = {
        name.removeprefix(keys.GROWTH_PREFIX): value
        for name, value in counters.items()
        if name.startswith(keys.GROWTH_PREFIX)
    }
    months = list(dict.fromkeys(Period(period.first, period.last, "month").labels()))
    later = sum(v for m, v in created.items() if m > months[-1])
    total = counters.get("total", 0) - later  # the total at the end of the last month
    rows = []
    for month in reversed(months):
        rows.append({"month": month, "created": created.get(month, 0), "total": total})
        total -= created.get(month, 0)
    return rows[::-1]
