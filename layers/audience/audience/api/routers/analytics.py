"""Org analytics: contacts by status and channel, contact growth, broadcast recipients over time, top
segments; all from maintained counters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from audience import container
from audience.analytics import Period
from audience.api.analytics_schemas import OrgAnalytics
from audience.api.deps import OrgId

router = APIRouter(prefix="/orgs/{org_id}/analytics", tags=["analytics"])


@router.get("", response_model=OrgAnalytics, summary="Org analytics over a date range")
def org_analytics(
    org_id: OrgId,
    from_: Annotated[str | None, Query(alias="from", max_length=10, description="First day, YYYY-MM-DD")] = None,
    to: Annotated[str | None, Query(max_length=10, description="Last day, YYYY-MM-DD (default: today, UTC)")] = None,
    interval: Annotated[Literal["day", "month"], Query(description="Bucket of broadcast_recipients")] = "day",
) -> OrgAnalytics:
    """Contacts now (by status and channel); contacts created per month of the range that still exist,
    with the total at each month's end; broadcast recipients per day or month (recipients whose send
    ended then: sent, failed, skipped, cancelled; by type of broadcast; messages sent by channel); the
    ten largest segments. The range defaults to the last 30 days and covers at most 731."""
    period = Period.parse(from_, to, interval)
    return OrgAnalytics.model_validate(container.analytics_service().overview(org_id, period))
