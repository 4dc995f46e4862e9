"""Response models of the org analytics route."""

from __future__ import annotations

from pydantic import Field

from audience.api.schemas import Model


class ContactTotals(Model):
    total: int
    by_status: dict[str, int]
    by_channel: dict[str, int]


class GrowthMonth(Model):
    month: str
    created: int
    total: int


class RecipientsPeriod(Model):
    period: str
    recipients: int
    sent: int
    failed: int
    skipped: int
    skipped_by_reason: dict[str, int] = Field(description="Skipped recipients by reason (`frequency_cap`, ...)")
    cancelled: int
    marketing: int
    transactional: int
    sent_by_channel: dict[str, int]


class SegmentSize(Model):
    id: str
    name: str
    type: str
    contacts: int


class OrgAnalytics(Model):
    from_: str = Field(alias="from")
    to: str
    interval: str
    contacts: ContactTotals
    contact_growth: list[GrowthMonth]
    broadcast_recipients: list[RecipientsPeriod]
    top_segments: list[SegmentSize]
