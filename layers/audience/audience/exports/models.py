"""An export: what to write (contacts, optionally filtered, or the do-not-contact list) and how far it got."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = ("contacts", "do_not_contact")
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATUSES: tuple[str, ...] = (QUEUED, RUNNING, DONE, FAILED)
FILTER_FIELDS: tuple[str, ...] = ("status", "tag", "channel", "created_from", "created_to")
# The file and the export's record live 7 days (the bucket's lifecycle rule, the item's TTL).
RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a run handed over to its continuation: everything before `cursor` is in the uploaded parts."""

    cursor: str | None = None
    rows: int = 0
    upload_id: str | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)  # [{"n": part number, "etag": ...}]


@dataclass(frozen=True, slots=True)
class Export:
    id: str
    org_id: str
    kind: str
    status: str
    created_at: str
    expires_at: int
    segment_id: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    rows: int | None = None
    object_key: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    # The current run (a fresh start gets a new one) and its step (each continuation claims the next).
    run: str | None = None
    step: int = 0
    columns: list[str] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
