"""Custom events of contacts: what event clauses of segment rules count."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter

from audience import container
from audience.api.deps import OrgId
from audience.api.segment_schemas import EventResult, RecordEventsRequest, RecordEventsResponse

router = APIRouter(prefix="/orgs/{org_id}/events", tags=["events"])


@router.post("", response_model=RecordEventsResponse, summary="Record events for contacts")
def record_events(org_id: OrgId, body: RecordEventsRequest) -> RecordEventsResponse:
    """Up to 100 events, each for a contact named by `contact_id`, `phone` or `email`. Give each event an
    `id` to make retries safe: an id recorded before answers `duplicate` and counts once."""
    results = container.event_service().record(org_id, body.events)
    counts = Counter(r["result"] for r in results)
    return RecordEventsResponse(
        summary={k: counts.get(k, 0) for k in ("recorded", "duplicate", "invalid", "not_found")},
        results=[EventResult(**r) for r in results],
    )
